// acp pending/approve/deny and acp audit verify, as the built binary, against a live control
// socket in a temporary ACP_RUN_DIR.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdio>
#include <future>
#include <thread>

#include "acp/proxy/audit_log.hpp"
#include "acp/proxy/control.hpp"
#include "consent_test_support.hpp"

namespace {

namespace asio = boost::asio;
using acp::consent::ConsentOutcome;
using acp::testing::TempDir;
using nlohmann::json;

struct Run {
  int status;
  std::string out;  // stdout and stderr
};

Run acp_cli(const std::string& run_dir, const std::string& args) {
  std::string cmd = "ACP_RUN_DIR='" + run_dir + "' '" + ACP_BINARY + "' " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  Run r{-1, {}};
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

struct Session : acp::testing::GateSession {
  explicit Session(const TempDir& dir) : GateSession(dir, "cafe00000001", "run/control.sock") {}
  std::future<ConsentOutcome> ask(const std::string& host, const std::string& path = "/") {
    acp::Action a;
    a.host = host;
    a.port = 80;
    a.method = "GET";
    a.path = path;
    return GateSession::ask(a, "{kind: http}");
  }
  std::string wait_one_pending() {
    auto r = wait_pending(1);
    if (r.is_null()) {
      ADD_FAILURE() << "no pending request appeared";
      return "";
    }
    return r["pending"][0]["id"];
  }
};

TEST(ConsentCli, PendingListsAndApproveReleases) {
  TempDir dir;
  Session s(dir);
  auto outcome = s.ask("api.example", "/v1/x");
  std::string id = s.wait_one_pending();
  std::string run = dir / "run";

  auto table = acp_cli(run, "pending");
  EXPECT_EQ(table.status, 0) << table.out;
  EXPECT_NE(table.out.find("ID"), std::string::npos);
  EXPECT_NE(table.out.find("EXPIRES IN"), std::string::npos);
  EXPECT_NE(table.out.find(id), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("api.example:80"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("/v1/x"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("cafe00000001"), std::string::npos) << table.out;

  auto js = acp_cli(run, "pending --json");
  ASSERT_EQ(js.status, 0) << js.out;
  auto j = json::parse(js.out);
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(j[0]["id"], id);

  auto bad = acp_cli(run, "approve " + id + " --for=1z");
  EXPECT_EQ(bad.status, 2) << bad.out;
  auto ok = acp_cli(run, "approve " + id + " --for=10m");
  EXPECT_EQ(ok.status, 0) << ok.out;
  auto o = outcome.get();
  EXPECT_TRUE(o.approved);
  EXPECT_EQ(o.scope, "duration");

  auto none = acp_cli(run, "pending");
  EXPECT_EQ(none.status, 0);
  EXPECT_NE(none.out.find("No pending requests."), std::string::npos) << none.out;
}

// Issue 13: `acp pending` cut arguments at 40 bytes, hiding "path":"/etc/shadow" behind an
// innocent start. Now a long cell says how much it hides and --full (or the ID) shows it all;
// escapes the agent put in are shown as text.
TEST(ConsentCli, PendingNeverHidesTheEndOfLongArgumentsAndShowsEscapes) {
  TempDir dir;
  Session s(dir);
  acp::Action a;
  a.kind = "mcp";
  a.host = "127.0.0.1";
  a.port = 3000;
  a.method = "POST";
  a.path = "/mcp";
  a.server = "files";
  a.tool = "read_file\x1b[2K\rlist_dir";
  a.args = "{\"0\":\"read-only: list README.md in the workspace, nothing else" +
           std::string(120, ' ') + "\",\"path\":\"/etc/shadow\"}";
  ASSERT_GE(a.args.size(), 200u);
  auto outcome = s.GateSession::ask(a, "{kind: mcp}");
  std::string id = s.wait_one_pending();
  std::string run = dir / "run";

  auto table = acp_cli(run, "pending");
  ASSERT_EQ(table.status, 0) << table.out;
  EXPECT_EQ(table.out.find('\x1b'), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("read_file\\x1b[2K\\rlist_dir"), std::string::npos) << table.out;
  // Cut, and says so: how many bytes and the flag that shows them.
  const bool whole = table.out.find("\"path\":\"/etc/shadow\"") != std::string::npos;
  const bool says = table.out.find("bytes hidden: acp pending --full]") != std::string::npos;
  EXPECT_TRUE(whole || says) << table.out;

  for (const std::string& args : std::vector<std::string>{"pending --full", "pending " + id}) {
    auto full = acp_cli(run, args);
    ASSERT_EQ(full.status, 0) << full.out;
    EXPECT_NE(
        full.out.find("wants:  MCP tool read_file\\x1b[2K\\rlist_dir on files with " + a.args),
        std::string::npos)
        << full.out;
    EXPECT_EQ(full.out.find("hidden"), std::string::npos) << full.out;
    EXPECT_EQ(full.out.find('\x1b'), std::string::npos) << full.out;
    // What each answer would let through.
    EXPECT_NE(full.out.find("acp approve ID --session: every call of MCP tool"), std::string::npos)
        << full.out;
  }
  auto unknown = acp_cli(run, "pending 00000000");
  EXPECT_EQ(unknown.status, 1);
  EXPECT_NE(unknown.out.find("unknown request id 00000000"), std::string::npos) << unknown.out;

  ASSERT_EQ(acp_cli(run, "deny " + id).status, 0);
  EXPECT_FALSE(outcome.get().approved);
}

TEST(ConsentCli, DenyWithReasonAndClearErrors) {
  TempDir dir;
  Session s(dir);
  auto outcome = s.ask("evil.example");
  std::string id = s.wait_one_pending();
  std::string run = dir / "run";

  auto unknown = acp_cli(run, "deny 00000000");
  EXPECT_EQ(unknown.status, 1);
  EXPECT_NE(unknown.out.find("unknown request id 00000000"), std::string::npos) << unknown.out;

  auto d = acp_cli(run, "deny " + id + " --reason='looks wrong'");
  EXPECT_EQ(d.status, 0) << d.out;
  auto o = outcome.get();
  EXPECT_FALSE(o.approved);
  EXPECT_EQ(o.reason, "denied by operator: looks wrong");

  auto nobody = acp_cli(dir / "empty", "pending");
  EXPECT_EQ(nobody.status, 1);
  EXPECT_NE(nobody.out.find("no running session"), std::string::npos) << nobody.out;
}

TEST(ConsentCli, AuditVerifyFindsTheBrokenLine) {
  TempDir dir;
  std::string path = dir / "audit.jsonl";
  {
    auto log = acp::audit::AuditLog::open(path);
    ASSERT_TRUE(log.ok());
    for (int i = 0; i < 3; ++i) ASSERT_TRUE((*log)->append({{"verdict", "allow"}, {"i", i}}).ok());
  }
  auto good = acp_cli(dir.path(), "audit verify " + path);
  EXPECT_EQ(good.status, 0) << good.out;
  EXPECT_NE(good.out.find("3 lines, hash chain intact"), std::string::npos) << good.out;

  auto lines = acp::testing::read_lines(path);
  lines[1].replace(lines[1].find("allow"), 5, "deny!");
  acp::testing::write_lines(path, lines);
  auto bad = acp_cli(dir.path(), "audit verify " + path);
  EXPECT_EQ(bad.status, 1) << bad.out;
  EXPECT_NE(bad.out.find("line 2 is broken"), std::string::npos) << bad.out;

  auto missing = acp_cli(dir.path(), "audit verify " + dir / "nope.jsonl");
  EXPECT_EQ(missing.status, 2) << missing.out;
}

}  // namespace
