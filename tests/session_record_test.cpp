#include "acp/session/session_record.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "acp/util/session_id.hpp"

namespace {

TEST(SessionId, IsTwelveHexDigitsAndRandom) {
  auto a = acp::new_session_id(), b = acp::new_session_id();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(acp::valid_session_id(*a));
  EXPECT_NE(*a, *b);
}

TEST(SessionId, RejectsAnythingThatCouldWalkAPath) {
  EXPECT_FALSE(acp::valid_session_id("../../etc/pa"));
  EXPECT_FALSE(acp::valid_session_id("ABCDEF012345"));
  EXPECT_FALSE(acp::valid_session_id("abc"));
  EXPECT_TRUE(acp::valid_session_id("0123456789ab"));
  EXPECT_EQ(acp::session_id_number("0000000000ff"), 255u);
}

TEST(SessionRecord, RoundTripsThroughDisk) {
  auto dir = std::filesystem::temp_directory_path() /
             ("acp-rec-" + std::to_string(getpid()) + "/sessions");
  acp::SessionRecord r;
  r.id = *acp::new_session_id();
  r.acp_pid = getpid();
  r.acp_start_time = acp::process_start_time(getpid());
  r.agent_pid = 42;
  r.user = "nobody";
  r.command = {"python3", "agent.py"};
  r.proxy = {"127.0.0.1:8443", "[::1]:8443"};
  ASSERT_TRUE(acp::write_session_record(dir, r).ok());
  auto back = acp::read_session_record(dir, r.id);
  ASSERT_TRUE(back.ok()) << back.error().message();
  EXPECT_EQ(back->command, r.command);
  EXPECT_EQ(back->proxy, r.proxy);
  EXPECT_TRUE(acp::session_owner_alive(*back));
  ASSERT_TRUE(acp::remove_session_record(dir, r.id).ok());
  EXPECT_FALSE(acp::read_session_record(dir, r.id).ok());
  std::filesystem::remove_all(dir.parent_path());
}

// A write that died between create and rename leaves <id>.json.tmp.XXXXXX: listed for gc,
// and removed with the record of that id (another session's is left alone).
TEST(SessionRecord, RemoveTakesTheTemporaryFilesOfDeadWritesToo) {
  auto dir = std::filesystem::temp_directory_path() /
             ("acp-rec-tmp-" + std::to_string(getpid()) + "/sessions");
  acp::SessionRecord r;
  r.id = "0123456789ab";
  ASSERT_TRUE(acp::write_session_record(dir, r).ok());
  const std::string mine = dir / "0123456789ab.json.tmp.Ab12Cd";
  const std::string other = dir / "ba9876543210.json.tmp.Ef34Gh";
  std::ofstream(mine) << "{\"half\":";
  std::ofstream(other) << "{\"half\":";
  std::ofstream(dir / "notanid.json.tmp.Xy56Zw") << "";
  auto temps = acp::list_record_temp_files(dir);
  std::set<std::string> listed;
  for (const auto& t : temps) listed.insert(t.id + " " + t.path);
  EXPECT_EQ(listed, (std::set<std::string>{"0123456789ab " + mine, "ba9876543210 " + other}));
  ASSERT_TRUE(acp::remove_session_record(dir, r.id).ok());
  EXPECT_FALSE(std::filesystem::exists(mine));
  EXPECT_FALSE(std::filesystem::exists(dir / "0123456789ab.json"));
  EXPECT_TRUE(std::filesystem::exists(other));
  std::filesystem::remove_all(dir.parent_path());
}

TEST(SessionRecord, DaemonOwnershipRoundTripsAndOldRecordsAreAcpRuns) {
  acp::SessionRecord r;
  r.id = "0123456789ab";
  r.acp_pid = 7;
  r.owner = "daemon";
  r.runner_pid = 42;
  r.config = "/etc/acp/config.yml";
  auto back = acp::session_record_from_json(acp::to_json(r));
  ASSERT_TRUE(back.ok()) << back.error().message();
  EXPECT_EQ(back->owner, "daemon");
  EXPECT_EQ(back->runner_pid, 42);
  EXPECT_EQ(back->config, "/etc/acp/config.yml");
  // A record written before the daemon existed: a standalone acp run's.
  auto old = acp::session_record_from_json(nlohmann::json{{"id", "0123456789ab"}, {"acp_pid", 7}});
  ASSERT_TRUE(old.ok());
  EXPECT_EQ(old->owner, "run");
  EXPECT_EQ(old->runner_pid, 0);
}

TEST(SessionRecord, ReusedPidIsNotTheOwner) {
  acp::SessionRecord r;
  r.id = "0123456789ab";
  r.acp_pid = getpid();
  r.acp_start_time = acp::process_start_time(getpid()) + 1;  // a different process, same pid
  EXPECT_FALSE(acp::session_owner_alive(r));
  r.acp_pid = 0;
  EXPECT_FALSE(acp::session_owner_alive(r));
}

TEST(SessionRecord, MalformedJsonIsAnErrorNotACrash) {
  EXPECT_FALSE(acp::session_record_from_json(nlohmann::json{{"id", 3}}).ok());
  EXPECT_FALSE(acp::session_record_from_json(nlohmann::json{{"id", "../x"}, {"acp_pid", 1}}).ok());
}

}  // namespace
