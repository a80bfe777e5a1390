// The docker backend's pure parts: the exact `docker run` command line (hardening, proxy
// variables, workspace, passed variables), what acp contain refuses, the session firewall's
// rules, the subnet choice. The real daemon, network and firewall: vmtests/docker_contain_test.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "acp/backend/docker_wall.hpp"

namespace {

using acp::backend::ContainerSpec;
using acp::backend::DockerCli;
using acp::backend::IpFamily;

bool has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

ContainerSpec spec() {
  ContainerSpec s;
  s.session_id = "0123456789ab";
  s.image = "acp-agent:latest";
  s.proxy_url = "http://10.231.0.1:8443";
  s.command = {"python3", "agent.py", "--flag"};
  return s;
}

TEST(DockerRunArgv, HardenedExactlyAsTheOriginDocsList) {
  auto a = acp::backend::docker_run_argv(DockerCli{"/usr/bin/docker", ""}, spec());
  ASSERT_GE(a.size(), 3u);
  EXPECT_EQ(a[0], "/usr/bin/docker");
  EXPECT_EQ(a[1], "run");
  for (const char* flag :
       {"--read-only", "--cap-drop=ALL", "--security-opt=no-new-privileges", "--tmpfs=/tmp",
        "--tmpfs=/home", "--pids-limit=256", "--memory=2g", "--rm", "--network=acp-0123456789ab",
        "--name=acp-0123456789ab", "--label=acp.session=0123456789ab"})
    EXPECT_TRUE(has(a, flag)) << flag;
  for (const char* kv : {"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"})
    EXPECT_TRUE(has(a, std::string("--env=") + kv + "=http://10.231.0.1:8443")) << kv;
  EXPECT_TRUE(has(a, "--env=NO_PROXY="));
  EXPECT_TRUE(has(a, "--env=no_proxy="));
  EXPECT_TRUE(has(a, "--env=ACP_CONTAINED=1"));
  EXPECT_TRUE(has(a, "--env=ACP_SANDBOX=1"));
  // Nothing that loosens it.
  for (const auto& x : a) {
    EXPECT_EQ(x.find("--privileged"), std::string::npos) << x;
    EXPECT_EQ(x.find("--cap-add"), std::string::npos) << x;
    EXPECT_EQ(x.find("--network=host"), std::string::npos) << x;
  }
  // Image, then the command untouched, at the end.
  const size_t n = a.size();
  EXPECT_EQ(a[n - 4], "acp-agent:latest");
  EXPECT_EQ(a[n - 3], "python3");
  EXPECT_EQ(a[n - 1], "--flag");
  EXPECT_FALSE(has(a, "--tty"));
}

// The embedded DNS forwards only to the session's responder, else nowhere: never to the
// host's resolvers (which docker uses when --dns is absent).
TEST(DockerRunArgv, DnsPointsAtTheSessionsResponderElseNowhere) {
  auto none = acp::backend::docker_run_argv(DockerCli{"/usr/bin/docker", ""}, spec());
  EXPECT_TRUE(has(none, "--dns=0.0.0.0"));
  auto s = spec();
  s.dns = "10.231.0.1";
  auto a = acp::backend::docker_run_argv(DockerCli{"/usr/bin/docker", ""}, s);
  EXPECT_TRUE(has(a, "--dns=10.231.0.1"));
  EXPECT_EQ(std::count_if(a.begin(), a.end(),
                          [](const std::string& x) { return x.rfind("--dns", 0) == 0; }),
            1);
}

TEST(DockerRunArgv, WorkspaceReadOnlyUnlessWritableAndEnvByName) {
  auto s = spec();
  s.workspace = "/home/me/project";
  s.pass_env = {"OPENAI_API_KEY"};
  auto ro = acp::backend::docker_run_argv(DockerCli{"/usr/bin/docker", "unix:///x.sock"}, s);
  EXPECT_EQ(ro[1], "-H");
  EXPECT_EQ(ro[2], "unix:///x.sock");
  EXPECT_TRUE(has(ro, "--mount=type=bind,source=/home/me/project,target=/workspace,readonly"));
  EXPECT_TRUE(has(ro, "--workdir=/workspace"));
  EXPECT_TRUE(has(ro, "--env=OPENAI_API_KEY"));  // the value stays out of argv
  s.writable = true;
  auto rw = acp::backend::docker_run_argv(DockerCli{"/usr/bin/docker", ""}, s);
  EXPECT_TRUE(has(rw, "--mount=type=bind,source=/home/me/project,target=/workspace"));
}

TEST(ContainerSpec, RefusesWhatWouldLoosenOrBreakTheCommandLine) {
  EXPECT_TRUE(acp::backend::validate_container_spec(spec()).ok());
  auto s = spec();
  s.pass_env = {"HTTPS_PROXY"};
  EXPECT_FALSE(acp::backend::validate_container_spec(s).ok());
  s.pass_env = {"no_proxy"};
  EXPECT_FALSE(acp::backend::validate_container_spec(s).ok());
  s.pass_env = {"A=B"};
  EXPECT_FALSE(acp::backend::validate_container_spec(s).ok());
  s = spec();
  s.image = "--privileged";
  EXPECT_FALSE(acp::backend::validate_container_spec(s).ok());
  s = spec();
  s.workspace = "relative/dir";
  EXPECT_FALSE(acp::backend::validate_container_spec(s).ok());
  s.workspace = "/tmp,readonly=false";
  EXPECT_FALSE(acp::backend::validate_container_spec(s).ok());
  s.workspace = "/nonexistent-acp-dir";
  EXPECT_FALSE(acp::backend::validate_container_spec(s).ok());
  s = spec();
  s.command.clear();
  EXPECT_FALSE(acp::backend::validate_container_spec(s).ok());
}

TEST(DockerFirewall, OnlyTheProxyOnTheGatewayNothingForwarded) {
  acp::backend::DockerFirewallSpec fw{"ACPD-0123456789ab", "acp0123456789ab", "10.231.0.1", 8443};
  auto v4 = acp::backend::render_docker_firewall(fw, IpFamily::kV4);
  ASSERT_TRUE(v4.ok()) << v4.error().message();
  EXPECT_EQ(*v4,
            "*filter\n"
            ":ACPD-0123456789ab - [0:0]\n"
            "-A ACPD-0123456789ab -d 10.231.0.1/32 -p tcp -m tcp --dport 8443 -j ACCEPT\n"
            "-A ACPD-0123456789ab -d 10.231.0.1/32 -p udp -m udp --dport 53 -j ACCEPT\n"
            "-A ACPD-0123456789ab -d 10.231.0.1/32 -p tcp -m tcp --dport 53 -j ACCEPT\n"
            "-A ACPD-0123456789ab -p tcp -j REJECT --reject-with tcp-reset\n"
            "-A ACPD-0123456789ab -j REJECT --reject-with icmp-port-unreachable\n"
            "-I INPUT 1 -i acp0123456789ab -j ACPD-0123456789ab\n"
            "-I FORWARD 1 -i acp0123456789ab -j ACPD-0123456789ab\n"
            "-I FORWARD 1 -o acp0123456789ab -j ACPD-0123456789ab\n"
            "COMMIT\n");
  auto v6 = acp::backend::render_docker_firewall(fw, IpFamily::kV6);
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->find("ACCEPT"), std::string::npos) << "IPv6 from the bridge: nothing accepted";
  EXPECT_NE(v6->find("icmp6-port-unreachable"), std::string::npos);
  auto bad = fw;
  bad.bridge = "eth0 -j ACCEPT";
  EXPECT_FALSE(acp::backend::render_docker_firewall(bad, IpFamily::kV4).ok());
  bad = fw;
  bad.chain = "INPUT";
  EXPECT_FALSE(acp::backend::render_docker_firewall(bad, IpFamily::kV4).ok());
  bad = fw;
  bad.gateway = "10.0.0.1/0";
  EXPECT_FALSE(acp::backend::render_docker_firewall(bad, IpFamily::kV4).ok());
}

// With the transparent door: the wall (filter) accepts the door's port too, and a nat chain,
// committed after it, leads the bridge's other TCP to the door and its DNS to the gateway's
// responder; what the wall lets through goes where it was going. IPv6 gets no nat chain.
TEST(DockerFirewall, TheDoorLeadsOtherTcpAndDnsToTheGateway) {
  acp::backend::DockerFirewallSpec fw{"ACPD-0123456789ab", "acp0123456789ab", "10.231.0.1", 8443,
                                      40001};
  auto v4 = acp::backend::render_docker_firewall(fw, IpFamily::kV4);
  ASSERT_TRUE(v4.ok()) << v4.error().message();
  const std::string& t = *v4;
  const auto nat = t.find("*nat\n");
  ASSERT_NE(nat, std::string::npos) << t;
  EXPECT_LT(t.find("*filter\n"), nat) << "the wall is committed first";
  EXPECT_NE(t.find("-A ACPD-0123456789ab -d 10.231.0.1/32 -p tcp -m tcp --dport 40001 -j ACCEPT\n"),
            std::string::npos)
      << t;
  const std::string n = t.substr(nat);
  EXPECT_EQ(n,
            "*nat\n"
            ":ACPD-0123456789ab - [0:0]\n"
            "-A ACPD-0123456789ab -d 10.231.0.1/32 -p tcp -m tcp --dport 8443 -j RETURN\n"
            "-A ACPD-0123456789ab -d 10.231.0.1/32 -p tcp -m tcp --dport 53 -j RETURN\n"
            "-A ACPD-0123456789ab -d 10.231.0.1/32 -p udp -m udp --dport 53 -j RETURN\n"
            "-A ACPD-0123456789ab -p tcp -j DNAT --to-destination 10.231.0.1:40001\n"
            "-A ACPD-0123456789ab -p udp -m udp --dport 53 -j DNAT --to-destination "
            "10.231.0.1:53\n"
            "-I PREROUTING 1 -i acp0123456789ab -j ACPD-0123456789ab\n"
            "COMMIT\n");
  auto v6 = acp::backend::render_docker_firewall(fw, IpFamily::kV6);
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->find("*nat"), std::string::npos);
  // Without the door: no nat chain at all.
  fw.door_port = 0;
  EXPECT_EQ(acp::backend::render_docker_firewall(fw, IpFamily::kV4)->find("*nat"),
            std::string::npos);
}

TEST(DockerFirewall, JumpsAreFoundForRemoval) {
  const std::string listing =
      "-P INPUT ACCEPT\n-N ACPD-0123456789ab\n-N ACPD-aaaaaaaaaaaa\n"
      "-A INPUT -i acp0123456789ab -j ACPD-0123456789ab\n"
      "-A INPUT -i acpaaaaaaaaaaaa -j ACPD-aaaaaaaaaaaa\n"
      "-A FORWARD -o acp0123456789ab -j ACPD-0123456789ab\n"
      "-A FORWARD -i acp0123456789ab -j ACPD-0123456789ab\n"
      "-A OUTPUT -j ACPD-0123456789ab\n";
  auto j = acp::backend::docker_jumps_in_listing(listing, "ACPD-0123456789ab");
  EXPECT_EQ(j, (std::vector<std::string>{"-A INPUT -i acp0123456789ab -j ACPD-0123456789ab",
                                         "-A FORWARD -o acp0123456789ab -j ACPD-0123456789ab",
                                         "-A FORWARD -i acp0123456789ab -j ACPD-0123456789ab"}));
  EXPECT_EQ(acp::backend::session_id_of_docker_chain("ACPD-0123456789ab"), "0123456789ab");
  EXPECT_FALSE(acp::backend::session_id_of_docker_chain("ACP-0123456789ab").has_value());
  EXPECT_FALSE(acp::backend::session_id_of_docker_chain("ACPD-xyz").has_value());
}

TEST(DockerNetwork, NamesFitTheKernelAndSubnetsStayInThePool) {
  EXPECT_EQ(acp::backend::docker_bridge_name("0123456789ab").size(), 15u);  // IFNAMSIZ - 1
  auto c = acp::backend::candidate_subnets("0123456789ab", 5000);
  for (const auto& s : c) {
    EXPECT_EQ(s.rfind("10.231.", 0), 0u) << s;
    EXPECT_EQ(s.substr(s.size() - 3), "/28") << s;
  }
  std::sort(c.begin(), c.end());
  EXPECT_EQ(std::unique(c.begin(), c.end()) - c.begin(), 4096) << "the pool has 4096 /28s";
  EXPECT_EQ(acp::backend::candidate_subnets("0123456789ab", 3),
            acp::backend::candidate_subnets("0123456789ab", 3));
}

TEST(DockerNetwork, SubnetsThatHostRoutesUseAreSkipped) {
  // /proc/net/route: a default route, 10.231.5.0/24 on eth1, 192.168.1.0/24.
  const std::string routes =
      "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
      "eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
      "eth1\t0005E70A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
      "eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
  EXPECT_TRUE(acp::backend::subnet_overlaps_routes("10.231.5.16/28", routes));
  EXPECT_FALSE(acp::backend::subnet_overlaps_routes("10.231.6.16/28", routes));
  EXPECT_FALSE(acp::backend::subnet_overlaps_routes("10.231.4.240/28", routes));
  // A route wider than the subnet (10.0.0.0/8) covers it too.
  const std::string wide = routes + "eth2\t0000000A\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0\n";
  EXPECT_TRUE(acp::backend::subnet_overlaps_routes("10.231.6.16/28", wide));
}

}  // namespace
