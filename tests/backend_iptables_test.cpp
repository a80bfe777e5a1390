// The iptables backend's rules as text: what iptables-restore is given to install and remove a
// session's chains, and how `iptables -S` output is read back. (The real tools run in
// vmtests/iptables_backend_test.cpp.)
#include <gtest/gtest.h>

#include "acp/backend/iptables_wall.hpp"

namespace {

using acp::backend::ChainSpec;
using acp::backend::IpFamily;
using acp::backend::render_install;

acp::kernel::Endpoint ep(const std::string& s) {
  auto r = acp::kernel::parse_endpoint(s);
  EXPECT_TRUE(r.ok()) << s;
  return r.ok() ? *r : acp::kernel::Endpoint{};
}

ChainSpec session_spec() {
  return {"ACP-0123456789ab",
          "acp/0123456789ab",
          {ep("127.0.0.1:8443"), ep("[::1]:8443"), ep("10.0.0.5:5432"), ep("[fd00::1]:53/udp"),
           ep("127.0.0.1:8443")}};
}

TEST(IptablesRules, Ipv4ChainAcceptsOnlyTheIpv4EndpointsAndRejectsTheRest) {
  auto text = render_install(session_spec(), IpFamily::kV4);
  ASSERT_TRUE(text.ok()) << text.error().message();
  EXPECT_EQ(*text,
            "*filter\n"
            ":ACP-0123456789ab - [0:0]\n"
            "-A ACP-0123456789ab -m addrtype ! --src-type LOCAL -j DROP\n"
            "-A ACP-0123456789ab -d 127.0.0.1/32 -p tcp -m tcp --dport 8443 -j ACCEPT\n"
            "-A ACP-0123456789ab -d 10.0.0.5/32 -p tcp -m tcp --dport 5432 -j ACCEPT\n"
            "-A ACP-0123456789ab -p tcp -j REJECT --reject-with tcp-reset\n"
            "-A ACP-0123456789ab -j REJECT --reject-with icmp-port-unreachable\n"
            "-I OUTPUT 1 -m cgroup --path acp/0123456789ab -j ACP-0123456789ab\n"
            "COMMIT\n");
}

TEST(IptablesRules, Ipv6ChainHoldsTheIpv6EndpointsWithTheirProtocol) {
  auto text = render_install(session_spec(), IpFamily::kV6);
  ASSERT_TRUE(text.ok()) << text.error().message();
  EXPECT_EQ(*text,
            "*filter\n"
            ":ACP-0123456789ab - [0:0]\n"
            "-A ACP-0123456789ab -m addrtype ! --src-type LOCAL -j DROP\n"
            "-A ACP-0123456789ab -d ::1/128 -p tcp -m tcp --dport 8443 -j ACCEPT\n"
            "-A ACP-0123456789ab -d fd00::1/128 -p udp -m udp --dport 53 -j ACCEPT\n"
            "-A ACP-0123456789ab -p tcp -j REJECT --reject-with tcp-reset\n"
            "-A ACP-0123456789ab -j REJECT --reject-with icmp6-port-unreachable\n"
            "-I OUTPUT 1 -m cgroup --path acp/0123456789ab -j ACP-0123456789ab\n"
            "COMMIT\n");
}

// The transparent door (docs/transparent.md, "The iptables backend"): the filter chain lets the
// session reach the door and its DNS on loopback (the destination nat OUTPUT made); the nat
// chain leaves what the wall allows alone and leads other TCP and UDP port 53 there.
TEST(IptablesRules, TheDoorRedirectsOtherTcpAndDnsAndTheWallAcceptsOnlyItsLoopbackPorts) {
  ChainSpec s = session_spec();
  s.door_port4 = 40001;
  s.dns_port4 = 40002;
  s.door_port6 = 40003;
  s.dns_port6 = 40004;
  auto filter4 = render_install(s, IpFamily::kV4);
  ASSERT_TRUE(filter4.ok()) << filter4.error().message();
  EXPECT_NE(filter4->find("-A ACP-0123456789ab -m addrtype ! --src-type LOCAL -j DROP\n"
                          "-A ACP-0123456789ab -d 127.0.0.1/32 -p tcp -m tcp --dport 40001 -j "
                          "ACCEPT\n-A ACP-0123456789ab -d 127.0.0.1/32 -p udp -m udp --dport 40002 "
                          "-j ACCEPT\n"),
            std::string::npos)
      << *filter4;
  auto nat4 = acp::backend::render_install_nat(s, IpFamily::kV4);
  ASSERT_TRUE(nat4.ok()) << nat4.error().message();
  EXPECT_EQ(*nat4,
            "*nat\n"
            ":ACP-0123456789ab - [0:0]\n"
            "-A ACP-0123456789ab -d 127.0.0.1/32 -p tcp -m tcp --dport 8443 -j RETURN\n"
            "-A ACP-0123456789ab -d 10.0.0.5/32 -p tcp -m tcp --dport 5432 -j RETURN\n"
            "-A ACP-0123456789ab -p tcp -j REDIRECT --to-ports 40001\n"
            "-A ACP-0123456789ab -p udp -m udp --dport 53 -j REDIRECT --to-ports 40002\n"
            "-I OUTPUT 1 -m cgroup --path acp/0123456789ab -j ACP-0123456789ab\n"
            "COMMIT\n");
  auto nat6 = acp::backend::render_install_nat(s, IpFamily::kV6);
  ASSERT_TRUE(nat6.ok());
  EXPECT_NE(
      nat6->find("-A ACP-0123456789ab -d fd00::1/128 -p udp -m udp --dport 53 -j RETURN\n"
                 "-A ACP-0123456789ab -p tcp -j REDIRECT --to-ports 40003\n"
                 "-A ACP-0123456789ab -p udp -m udp --dport 53 -j REDIRECT --to-ports 40004\n"),
      std::string::npos)
      << *nat6;
  // Without a door (or without IPv6 loopback for the door): no nat chain, nothing led anywhere.
  s.door_port6 = 0;
  EXPECT_EQ(*acp::backend::render_install_nat(s, IpFamily::kV6), "");
  EXPECT_EQ(*acp::backend::render_install_nat(session_spec(), IpFamily::kV4), "");
  EXPECT_EQ(render_install(session_spec(), IpFamily::kV4)->find("40001"), std::string::npos);
}

TEST(IptablesRules, MappedAddressesBelongToIpv4) {
  ChainSpec s{"ACP-x", "acp/x", {ep("[::ffff:127.0.0.1]:9000")}};
  auto v4 = render_install(s, IpFamily::kV4);
  auto v6 = render_install(s, IpFamily::kV6);
  ASSERT_TRUE(v4.ok() && v6.ok());
  EXPECT_NE(v4->find("-d 127.0.0.1/32 -p tcp -m tcp --dport 9000 -j ACCEPT"), std::string::npos);
  EXPECT_EQ(v6->find("ACCEPT"), std::string::npos) << *v6;
}

TEST(IptablesRules, NamesThatCouldInjectRulesAreRefused) {
  for (const char* chain : {"", "ACP x", "ACP-\n-F OUTPUT", "ACP-0123456789abcdef0123456789ab"}) {
    ChainSpec s{chain, "acp/x", {}};
    EXPECT_FALSE(render_install(s, IpFamily::kV4).ok()) << chain;
  }
  for (const char* path : {"", "/acp/x", "acp/x -j ACCEPT", "acp/x\n-F OUTPUT", "a\"b"}) {
    ChainSpec s{"ACP-x", path, {}};
    EXPECT_FALSE(render_install(s, IpFamily::kV4).ok()) << path;
  }
}

TEST(IptablesRules, RemovalDeletesEachJumpThenTheChain) {
  EXPECT_EQ(
      acp::backend::render_remove(
          "ACP-0123456789ab", {"-A OUTPUT -m cgroup --path acp/0123456789ab -j ACP-0123456789ab"}),
      "*filter\n"
      "-D OUTPUT -m cgroup --path acp/0123456789ab -j ACP-0123456789ab\n"
      "-F ACP-0123456789ab\n"
      "-X ACP-0123456789ab\n"
      "COMMIT\n");
  EXPECT_EQ(acp::backend::render_remove("ACP-a", {}), "*filter\n-F ACP-a\n-X ACP-a\nCOMMIT\n");
  EXPECT_EQ(acp::backend::render_remove("ACP-a", {}, "nat"), "*nat\n-F ACP-a\n-X ACP-a\nCOMMIT\n");
}

constexpr const char* kListing =
    "-P INPUT ACCEPT\n"
    "-P OUTPUT ACCEPT\n"
    "-N ACP-0123456789ab\n"
    "-N ACP-0123456789abX\n"
    "-N DOCKER\n"
    "-A OUTPUT -m cgroup --path acp/0123456789ab -j ACP-0123456789ab\n"
    "-A OUTPUT -m cgroup --path acp/0123456789abX -j ACP-0123456789abX\n"
    "-A OUTPUT -d 10.0.0.1/32 -j ACCEPT\n"
    "-A ACP-0123456789ab -p tcp -j REJECT --reject-with tcp-reset\n";

TEST(IptablesListing, FindsOurChainsAndOnlyTheJumpsToOne) {
  EXPECT_EQ(acp::backend::chains_in_listing(kListing, "ACP-"),
            (std::vector<std::string>{"ACP-0123456789ab", "ACP-0123456789abX"}));
  EXPECT_EQ(acp::backend::jumps_in_listing(kListing, "ACP-0123456789ab"),
            (std::vector<std::string>{
                "-A OUTPUT -m cgroup --path acp/0123456789ab -j ACP-0123456789ab"}));
}

TEST(IptablesNames, SessionChainsMapToSessionIds) {
  EXPECT_EQ(acp::backend::session_chain_name("0123456789ab"), "ACP-0123456789ab");
  EXPECT_EQ(acp::backend::session_id_of_chain("ACP-0123456789ab"), "0123456789ab");
  EXPECT_FALSE(acp::backend::session_id_of_chain("ACPT-0123456789ab").has_value());
  EXPECT_FALSE(acp::backend::session_id_of_chain("ACP-probe").has_value());
  EXPECT_FALSE(acp::backend::session_id_of_chain("DOCKER").has_value());
}

TEST(IptablesNames, CgroupPathIsRelativeToTheCgroup2Mount) {
  auto p = acp::backend::cgroup_match_path("/sys/fs/cgroup/unified/acp/0123456789ab",
                                           "/sys/fs/cgroup/unified");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(*p, "acp/0123456789ab");
  auto q = acp::backend::cgroup_match_path("/sys/fs/cgroup/acp/x", "/sys/fs/cgroup/");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(*q, "acp/x");
  EXPECT_FALSE(
      acp::backend::cgroup_match_path("/sys/fs/cgroup/unifiedX/a", "/sys/fs/cgroup/unified").ok());
  EXPECT_FALSE(
      acp::backend::cgroup_match_path("/sys/fs/cgroup/unified", "/sys/fs/cgroup/unified").ok());
}

}  // namespace
