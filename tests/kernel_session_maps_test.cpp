#include "acp/kernel/session_maps.hpp"

#include <gtest/gtest.h>

#include "acp/kernel/pinned_session.hpp"

namespace {

TEST(KernelSessionMaps, CountersJsonNamesEverySlot) {
  acp::kernel::Counters c;
  c.allowed[ACP_FAM_INET][ACP_PRO_TCP] = 3;
  c.allowed[ACP_FAM_INET6][ACP_PRO_UDP] = 1;
  c.denied[ACP_FAM_OTHER][ACP_PRO_OTHER] = 2;
  c.denied[ACP_FAM_INET][ACP_PRO_TCP] = 5;
  EXPECT_EQ(c.total_allowed(), 4u);
  EXPECT_EQ(c.total_denied(), 7u);
  auto j = acp::kernel::counters_to_json(c);
  EXPECT_EQ(j["allowed"]["inet"]["tcp"], 3u);
  EXPECT_EQ(j["allowed"]["inet6"]["udp"], 1u);
  EXPECT_EQ(j["denied"]["other"]["other"], 2u);
  EXPECT_EQ(j["denied"]["inet"]["tcp"], 5u);
  EXPECT_EQ(j["denied"]["inet6"]["tcp"], 0u);
  EXPECT_EQ(j["total_allowed"], 4u);
  EXPECT_EQ(j["total_denied"], 7u);
}

TEST(KernelSessionMaps, LinkInfoJson) {
  acp::kernel::LinkInfo l{7, 9, "acp_connect4", "cgroup_inet4_connect", 1234, "link_connect4"};
  auto j = acp::kernel::link_info_to_json(l);
  EXPECT_EQ(j["pin"], "link_connect4");
  EXPECT_EQ(j["link_id"], 7u);
  EXPECT_EQ(j["prog_id"], 9u);
  EXPECT_EQ(j["prog"], "acp_connect4");
  EXPECT_EQ(j["attach_type"], "cgroup_inet4_connect");
  EXPECT_EQ(j["cgroup_id"], 1234u);
}

TEST(KernelSessionMaps, BadFdsAreErrorsNotCrashes) {
  EXPECT_FALSE(acp::kernel::read_counters(-1).ok());
  EXPECT_FALSE(acp::kernel::read_allow_entries(-1).ok());
  EXPECT_FALSE(acp::kernel::read_config(-1).ok());
  auto peer = acp::kernel::parse_endpoint("127.0.0.1:40000");
  ASSERT_TRUE(peer.ok());
  auto orig = acp::kernel::original_destination(-1, *peer);
  ASSERT_FALSE(orig.ok());
  EXPECT_NE(orig.error().message().find("127.0.0.1:40000/tcp"), std::string::npos)
      << orig.error().message();
  auto udp = acp::kernel::parse_endpoint("127.0.0.1:40000/udp");
  ASSERT_TRUE(udp.ok());
  auto not_tcp = acp::kernel::original_destination(-1, *udp);
  ASSERT_FALSE(not_tcp.ok());
  EXPECT_NE(not_tcp.error().message().find("only TCP"), std::string::npos);
  auto st = acp::kernel::write_mode(-1, 9);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message().find("not enforce (0) or audit (1)"), std::string::npos);
}

TEST(KernelSessionMaps, OpeningAMissingPinDirNamesThePin) {
  auto s = acp::kernel::PinnedSession::open("/nonexistent/acp-session");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find("/nonexistent/acp-session/map_"), std::string::npos);
  EXPECT_TRUE(acp::kernel::detach_and_unpin("/nonexistent/acp-session").ok());
}

}  // namespace
