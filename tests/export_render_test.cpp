// acp export, as the built binary: every format against its golden file (byte for byte),
// then checked by the tool that consumes it where this machine has one (nft -c,
// iptables-restore --test, a YAML parser, docker compose config), the JSON formats parsed
// back for the fields a user relies on, and bad input refused with a clear message.
//
// Regenerate the golden files after an intended change:
//   ACP_UPDATE_GOLDEN=1 ./build/tests/acp_unit_tests --gtest_filter='Export*'
// and review the diff under tests/golden/export/.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

struct Run {
  int status = -1;
  std::string out;
};

// Runs a shell command from the source tree (so --policy paths, and the file names the
// output quotes, are relative and the golden files do not depend on the checkout's path).
Run sh(const std::string& cmd, bool merge_stderr = true) {
  std::string full = "cd '" + std::string(ACP_SOURCE_DIR) + "' && " + cmd;
  if (merge_stderr) full += " 2>&1";
  Run r;
  FILE* p = ::popen(full.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

Run acp_export(const std::string& args) {
  return sh("'" + std::string(ACP_BINARY) + "' export " + args, false);
}

bool has_tool(const std::string& name) {
  return sh("command -v " + name + " >/dev/null").status == 0;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct GoldenCase {
  const char* file;  // under tests/golden/export/
  const char* args;
};

const std::vector<GoldenCase>& cases() {
  static const std::vector<GoldenCase> c = {
      {"nftables-cgroup.nft", "--format=nftables"},
      {"nftables-uid.nft",
       "--format=nftables --uid=1000 --proxy-port=9443 --allow=10.0.0.53:53/udp "
       "--allow=[2001:db8::5]:443"},
      {"iptables-cgroup.rules", "--format=iptables --allow=10.0.0.53:53/udp"},
      {"iptables-uid.rules", "--format=iptables --uid=1000 --allow=10.0.0.53:53/udp"},
      {"ip6tables-cgroup.rules",
       "--format=ip6tables --cgroup=system.slice/agent.service --allow=[2001:db8::5]:443"},
      {"pf-anchor.conf", "--format=pf --uid=501 --allow=192.168.1.10:5432"},
      {"aws-sg.json",
       "--format=aws-sg --proxy-address=10.0.0.5 --proxy-address=2001:db8::5 "
       "--allow=10.0.1.7:5432 --allow=10.0.0.2:53/udp"},
      {"azure-nsg.json",
       "--format=azure-nsg --proxy-address=10.0.0.5 --allow=10.0.1.7:5432 --name=agents"},
      {"gcp-firewall.json",
       "--format=gcp-firewall --proxy-address=10.0.0.5 --proxy-address=2001:db8::5 "
       "--allow=10.0.1.7:5432"},
      {"compose.yml",
       "--format=compose --policy=compat/upstream-policies/default.yml "
       "--agent-image=my-agent:1"},
  };
  return c;
}

std::string golden_path(const GoldenCase& c) {
  return std::string(ACP_SOURCE_DIR) + "/tests/golden/export/" + c.file;
}

const GoldenCase& find_case(const std::string& file) {
  for (const auto& c : cases())
    if (file == c.file) return c;
  std::abort();
}

// The output for a case, and a copy in a scratch file for the tools that read files.
class ExportOutput : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "acp-export-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  // Renders `file`'s case into the scratch dir; returns the path.
  std::string render(const std::string& file) {
    const auto& c = find_case(file);
    auto r = acp_export(std::string(c.args) + " -o '" + dir_ + "/" + c.file + "'");
    EXPECT_EQ(r.status, 0) << c.args << "\n" << r.out;
    return dir_ + "/" + c.file;
  }
  std::string dir_;
};

TEST(ExportGolden, EveryFormatMatchesItsGoldenFile) {
  const bool update = std::getenv("ACP_UPDATE_GOLDEN") != nullptr;
  for (const auto& c : cases()) {
    auto r = acp_export(c.args);
    ASSERT_EQ(r.status, 0) << c.args << "\n" << r.out;
    if (update) {
      fs::create_directories(fs::path(golden_path(c)).parent_path());
      std::ofstream(golden_path(c), std::ios::binary) << r.out;
      continue;
    }
    ASSERT_TRUE(fs::exists(golden_path(c)))
        << golden_path(c) << " is missing; regenerate with ACP_UPDATE_GOLDEN=1";
    EXPECT_EQ(r.out, read_file(golden_path(c)))
        << c.file << " differs from `acp export " << c.args
        << "`; if the change is intended, regenerate with ACP_UPDATE_GOLDEN=1";
  }
}

TEST_F(ExportOutput, OutputFileHoldsExactlyWhatStdoutGets) {
  for (const auto& c : cases()) {
    std::string path = render(c.file);
    EXPECT_EQ(read_file(path), acp_export(c.args).out) << c.file;
  }
}

TEST_F(ExportOutput, NftAcceptsTheRuleSets) {
  if (!has_tool("nft")) GTEST_SKIP() << "nft is not installed (scripts/install-deps.sh adds it)";
  if (::geteuid() != 0) GTEST_SKIP() << "nft -c needs root (CAP_NET_ADMIN) to check a rule set";
  auto r = sh("nft -c -f '" + render("nftables-uid.nft") + "'");
  EXPECT_EQ(r.status, 0) << r.out;
  // nft resolves `socket cgroupv2` paths under /sys/fs/cgroup when it parses; the rule set
  // checks only where that is the cgroup2 mount (not on hybrid hosts) and the path exists.
  if (sh("stat -f -c %T /sys/fs/cgroup | grep -qx cgroup2fs && test -d /sys/fs/cgroup/acp")
          .status == 0) {
    auto rc = sh("nft -c -f '" + render("nftables-cgroup.nft") + "'");
    EXPECT_EQ(rc.status, 0) << rc.out;
  }
}

TEST_F(ExportOutput, IptablesRestoreAcceptsTheRuleSets) {
  if (::geteuid() != 0) GTEST_SKIP() << "iptables-restore --test needs root";
  if (!has_tool("iptables-restore") || !has_tool("ip6tables-restore"))
    GTEST_SKIP() << "iptables is not installed";
  for (const char* f : {"iptables-uid.rules", "iptables-cgroup.rules"}) {
    auto r = sh("iptables-restore --test --noflush < '" + render(f) + "'");
    EXPECT_EQ(r.status, 0) << f << "\n" << r.out;
  }
  auto r6 = sh("ip6tables-restore --test --noflush < '" + render("ip6tables-cgroup.rules") + "'");
  EXPECT_EQ(r6.status, 0) << r6.out;
}

TEST_F(ExportOutput, AwsPermissionsHoldTheProxyAndTheAllowEntries) {
  json j = json::parse(read_file(render("aws-sg.json")));
  ASSERT_TRUE(j.is_array());
  auto find = [&](const std::string& proto, int port) -> json {
    for (const auto& p : j)
      if (p["IpProtocol"] == proto && p["FromPort"] == port) return p;
    return json();
  };
  json proxy = find("tcp", 8443);
  ASSERT_FALSE(proxy.is_null()) << j.dump(2);
  EXPECT_EQ(proxy["ToPort"], 8443);
  EXPECT_EQ(proxy["IpRanges"][0]["CidrIp"], "10.0.0.5/32");
  EXPECT_EQ(proxy["Ipv6Ranges"][0]["CidrIpv6"], "2001:db8::5/128");
  json pg = find("tcp", 5432);
  ASSERT_FALSE(pg.is_null());
  EXPECT_EQ(pg["IpRanges"][0]["CidrIp"], "10.0.1.7/32");
  EXPECT_FALSE(pg.contains("Ipv6Ranges"));
  json dns = find("udp", 53);
  ASSERT_FALSE(dns.is_null());
  EXPECT_EQ(dns["IpRanges"][0]["CidrIp"], "10.0.0.2/32");
  EXPECT_EQ(j.size(), 3u) << "nothing but these three may be let out";
  for (const auto& p : j) {
    EXPECT_NE(p["IpProtocol"], "-1") << "an all-protocols permission opens everything";
    for (const auto& r : p.value("IpRanges", json::array())) EXPECT_NE(r["CidrIp"], "0.0.0.0/0");
  }
}

TEST_F(ExportOutput, AzureGroupAllowsTheProxyThenDeniesAllOutbound) {
  json t = json::parse(read_file(render("azure-nsg.json")));
  ASSERT_EQ(t["resources"].size(), 1u);
  const json& nsg = t["resources"][0];
  EXPECT_EQ(nsg["type"], "Microsoft.Network/networkSecurityGroups");
  EXPECT_EQ(t["parameters"]["nsgName"]["defaultValue"], "agents");
  const json& rules = nsg["properties"]["securityRules"];
  ASSERT_EQ(rules.size(), 3u);
  const json& proxy = rules[0]["properties"];
  EXPECT_EQ(proxy["access"], "Allow");
  EXPECT_EQ(proxy["direction"], "Outbound");
  EXPECT_EQ(proxy["protocol"], "Tcp");
  EXPECT_EQ(proxy["destinationAddressPrefix"], "10.0.0.5");
  EXPECT_EQ(proxy["destinationPortRange"], "8443");
  EXPECT_EQ(rules[1]["properties"]["destinationAddressPrefix"], "10.0.1.7");
  const json& deny = rules[2]["properties"];
  EXPECT_EQ(deny["access"], "Deny");
  EXPECT_EQ(deny["direction"], "Outbound");
  EXPECT_EQ(deny["destinationAddressPrefix"], "*");
  EXPECT_EQ(deny["protocol"], "*");
  // Azure evaluates lower numbers first; the deny must sit below every allow and above the
  // built-in AllowVnetOutBound (65000) and AllowInternetOutBound (65001).
  for (size_t i = 0; i + 1 < rules.size(); i++)
    EXPECT_LT(rules[i]["properties"]["priority"], deny["priority"]);
  EXPECT_LE(deny["priority"], 4096);
}

TEST_F(ExportOutput, GcpRulesAllowTheProxyAndDenyBothFamilies) {
  json j = json::parse(read_file(render("gcp-firewall.json")));
  ASSERT_TRUE(j.is_array());
  int allows = 0;
  std::vector<std::string> denied;
  for (const auto& r : j) {
    EXPECT_EQ(r["direction"], "EGRESS");
    EXPECT_EQ(r["targetTags"], json::array({"acp-agent"}));
    std::string name = r["name"];
    EXPECT_LE(name.size(), 63u);
    if (r.contains("allowed")) {
      allows++;
      EXPECT_EQ(r["priority"], 1000);
    } else {
      ASSERT_TRUE(r.contains("denied"));
      EXPECT_EQ(r["denied"][0]["IPProtocol"], "all");
      EXPECT_EQ(r["priority"], 65534);
      denied.push_back(r["destinationRanges"][0]);
    }
  }
  EXPECT_EQ(allows, 3);
  EXPECT_EQ(denied, (std::vector<std::string>{"0.0.0.0/0", "::/0"}));
  EXPECT_EQ(j[0]["destinationRanges"][0], "10.0.0.5/32");
  EXPECT_EQ(j[0]["allowed"][0]["IPProtocol"], "tcp");
  EXPECT_EQ(j[0]["allowed"][0]["ports"][0], "8443");
  EXPECT_EQ(j[1]["destinationRanges"][0], "2001:db8::5/128");
}

TEST_F(ExportOutput, ComposeParsesAndIsolatesTheAgent) {
  std::string file = render("compose.yml");
  auto r =
      sh("python3 -c 'import json, sys, yaml; "
         "print(json.dumps(yaml.safe_load(open(sys.argv[1]))))' '" +
         file + "'");
  ASSERT_EQ(r.status, 0) << "python3 with PyYAML (python3-yaml) parses the file: " << r.out;
  json c = json::parse(r.out);
  EXPECT_EQ(c["networks"]["isolated"]["internal"], true);
  const json& agent = c["services"]["agent"];
  EXPECT_EQ(agent["networks"], json::array({"isolated"}))
      << "the agent must not be on a network out";
  EXPECT_EQ(agent["image"], "my-agent:1");
  EXPECT_EQ(agent["environment"]["HTTPS_PROXY"], "http://acp:8443");
  EXPECT_EQ(agent["environment"]["ACP_CONTAINED"], "1");
  EXPECT_EQ(agent["environment"]["ACP_SANDBOX"], "1");
  EXPECT_EQ(agent["read_only"], true);
  EXPECT_EQ(agent["cap_drop"], json::array({"ALL"}));
  EXPECT_EQ(agent["security_opt"], json::array({"no-new-privileges:true"}));
  EXPECT_EQ(agent["tmpfs"], json::array({"/tmp", "/home"}));
  EXPECT_EQ(agent["pids_limit"], 256);
  EXPECT_EQ(agent["mem_limit"], "2g");
  const json& acp = c["services"]["acp"];
  EXPECT_EQ(acp["networks"], json::array({"isolated", "internet"}));
  EXPECT_EQ(acp["volumes"][0], "./compat/upstream-policies/default.yml:/etc/acp/policy.yml:ro");
}

TEST_F(ExportOutput, DockerComposeConfigAcceptsIt) {
  // The compose plugin (`docker compose`) where it exists, else Debian's docker-compose
  // (v1): both check the schema offline, without a Docker daemon.
  std::string tool;
  if (sh("docker compose version >/dev/null").status == 0)
    tool = "docker compose";
  else if (sh("docker-compose version >/dev/null").status == 0)
    tool = "docker-compose";
  else
    GTEST_SKIP() << "neither `docker compose` nor docker-compose is installed "
                    "(scripts/install-deps.sh adds docker-compose); the YAML is still checked "
                    "by ComposeParsesAndIsolatesTheAgent";
  auto r = sh(tool + " -f '" + render("compose.yml") + "' config -q");
  EXPECT_EQ(r.status, 0) << r.out;
  // The control: the same tool refuses a file with a wrong type, so it really validates.
  std::ofstream(dir_ + "/bad.yml") << "services:\n  a:\n    image: x\n    read_only: maybe\n";
  EXPECT_NE(sh(tool + " -f '" + dir_ + "/bad.yml' config -q").status, 0) << tool;
}

TEST(ExportErrors, BadInputIsRefusedWithTheValueNamed) {
  struct Bad {
    const char* args;
    const char* says;  // part of the message
  };
  for (const Bad& b : std::vector<Bad>{
           {"--format=nft", "--format=nft: unknown format; expected one of nftables"},
           {"--format=nftables --proxy-port=0", "--proxy-port=0"},
           {"--format=nftables --proxy-port=70000", "--proxy-port=70000"},
           {"--format=nftables --allow=localhost:80", "localhost:80"},
           {"--format=nftables --allow=10.0.0.1:0", "out of range"},
           {"--format=nftables --allow=10.0.0.1:53/icmp", "not tcp or udp"},
           {"--format=nftables --proxy-address=example.com", "--proxy-address=example.com"},
           {"--format=nftables --uid=1000 --cgroup=acp", "not both"},
           {"--format=nftables --cgroup=../x", "--cgroup=../x"},
           {"--format=nftables --uid=no-such-user-acp", "no such user"},
           {"--format=pf", "pf needs --uid"},
           {"--format=pf --uid=501 --cgroup=acp", "not both"},
           {"--format=aws-sg", "needs --proxy-address"},
           {"--format=aws-sg --proxy-address=127.0.0.1", "never sees loopback"},
           {"--format=gcp-firewall --proxy-address=10.0.0.5 --allow=127.0.0.1:5432",
            "never sees loopback"},
           {"--format=azure-nsg --proxy-address=10.0.0.5 --uid=1000", "does not apply"},
           {"--format=gcp-firewall --proxy-address=10.0.0.5 --name=Bad_Name", "--name=Bad_Name"},
           {"--format=compose --allow=10.0.0.1:80", "compose cannot express it"},
           {"--format=iptables --agent-image=x", "compose only"},
           {"--format=compose --policy=/nonexistent/policy.yml", "/nonexistent/policy.yml"},
       }) {
    auto r = sh("'" + std::string(ACP_BINARY) + "' export " + b.args);
    EXPECT_NE(r.status, 0) << b.args << "\n" << r.out;
    EXPECT_NE(r.out.find(b.says), std::string::npos) << b.args << "\n" << r.out;
  }
  auto unwritable =
      sh("'" + std::string(ACP_BINARY) + "' export --format=nftables -o /nonexistent/x");
  EXPECT_NE(unwritable.status, 0);
  EXPECT_NE(unwritable.out.find("/nonexistent/x"), std::string::npos) << unwritable.out;
  auto missing = sh("'" + std::string(ACP_BINARY) + "' export");
  EXPECT_NE(missing.status, 0);
  EXPECT_NE(missing.out.find("--format"), std::string::npos) << missing.out;
}

}  // namespace
