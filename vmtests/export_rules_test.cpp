// acp export's host-firewall rule sets, applied for real: in a fresh network namespace (so
// nothing outside it changes, and everything vanishes with it), load the nftables or
// iptables output confining uid 65534 and attack it with the C probe run as that user.
// Each attempt has its control: the same attempt before the rules (reachable) and as root
// (not confined, still reachable). Needs root: unshare -n, nft, iptables-restore.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

namespace {

namespace fs = std::filesystem;

struct Run {
  int status = -1;
  std::string out;
};

Run sh(const std::string& cmd) {
  Run r;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// The scenario, run by python3 inside `unshare --net`: loopback up, listeners on 127.0.0.1
// and ::1 (TCP 18443 = the proxy, TCP 19000 = another service, UDP 19053), the probe as
// uid 65534 before and after loading the rules, and as root after.
constexpr const char* kScenario = R"PY(
import os, socket, subprocess, sys
probe, load = sys.argv[1], sys.argv[2:]
subprocess.run(['ip', 'link', 'set', 'lo', 'up'], check=True)
keep = []
for fam, addr in ((socket.AF_INET, '127.0.0.1'), (socket.AF_INET6, '::1')):
    for port in (18443, 19000):
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.bind((addr, port)); s.listen(64); keep.append(s)
    u = socket.socket(fam, socket.SOCK_DGRAM); u.bind((addr, 19053)); keep.append(u)
def attempt(tag, uid, op, addr, port):
    cmd = [probe, op, addr, str(port)]
    if uid:
        cmd = ['setpriv', '--reuid=%d' % uid, '--regid=%d' % uid, '--clear-groups'] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    res = [l for l in out.splitlines() if l.startswith('result=')]
    print('%s %s %s %s %s' % (tag, op, addr, port, res[0] if res else 'result=NONE:' + out))
cases = [('tcp', '127.0.0.1', 19000), ('tcp', '::1', 19000), ('tcp', '::ffff:127.0.0.1', 19000),
         ('udp-sendto', '127.0.0.1', 19053), ('udp-sendto', '::1', 19053),
         ('tcp', '127.0.0.1', 18443), ('tcp', '::1', 18443)]
for c in cases: attempt('before', 65534, *c)
subprocess.run(load, check=True, shell=False)
for c in cases: attempt('after', 65534, *c)
for c in cases: attempt('root', 0, *c)
)PY";

class ExportRules : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (unshare -n, nft, iptables-restore)";
    if (sh("unshare --net true").status != 0) GTEST_SKIP() << "cannot make a network namespace";
    std::string tmpl = (fs::temp_directory_path() / "acp-export-vm-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    fs::permissions(dir_, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
    // The probe runs as uid 65534: give it a copy it can reach whatever the build dir allows.
    probe_ = dir_ + "/probe";
    fs::copy_file(ACP_VM_CLIENT, probe_);
    fs::permissions(probe_, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec |
                                fs::perms::group_read | fs::perms::others_read);
    std::ofstream(dir_ + "/scenario.py") << kScenario;
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }

  // Exports `args` into a file, runs the scenario with `load` + the file, returns its output.
  std::string scenario(const std::string& args, const std::string& load) {
    std::string rules = dir_ + "/rules";
    auto e = sh("'" + std::string(ACP_BINARY) + "' export " + args + " -o '" + rules + "'");
    EXPECT_EQ(e.status, 0) << e.out;
    auto r = sh("unshare --net python3 '" + dir_ + "/scenario.py' '" + probe_ + "' " + load + " '" +
                rules + "'");
    EXPECT_EQ(r.status, 0) << r.out;
    return r.out;
  }

  void expect_wall(const std::string& out) {
    // Controls: everything is reachable before the rules, and for root after them.
    for (const char* tag : {"before", "root"}) {
      for (const char* c : {"tcp 127.0.0.1 19000", "tcp ::1 19000", "tcp ::ffff:127.0.0.1 19000",
                            "udp-sendto 127.0.0.1 19053", "udp-sendto ::1 19053",
                            "tcp 127.0.0.1 18443", "tcp ::1 18443"})
        EXPECT_TRUE(contains(out, std::string(tag) + " " + c + " result=OK")) << tag << c << out;
    }
    // The wall: only the proxy, over IPv4 and IPv6; the rest refused (TCP by a reset, so at
    // once: a hang here would mean the SYN was only dropped).
    EXPECT_TRUE(contains(out, "after tcp 127.0.0.1 18443 result=OK")) << out;
    EXPECT_TRUE(contains(out, "after tcp ::1 18443 result=OK")) << out;
    for (const char* c : {"tcp 127.0.0.1 19000", "tcp ::1 19000", "tcp ::ffff:127.0.0.1 19000",
                          "udp-sendto 127.0.0.1 19053", "udp-sendto ::1 19053"}) {
      EXPECT_TRUE(contains(out, std::string("after ") + c + " result=E")) << c << out;
      EXPECT_FALSE(contains(out, std::string("after ") + c + " result=OK")) << c << out;
    }
  }

  std::string dir_, probe_;
};

TEST_F(ExportRules, NftablesRulesConfineTheUser) {
  if (sh("command -v nft").status != 0) GTEST_SKIP() << "nft is not installed";
  expect_wall(scenario("--format=nftables --uid=65534 --proxy-port=18443", "nft -f"));
}

TEST_F(ExportRules, IptablesRulesConfineTheUser) {
  if (sh("command -v iptables-restore").status != 0) GTEST_SKIP() << "iptables is not installed";
  // Both families: the scenario loads the IPv4 file; the IPv6 one goes in first, through a
  // second export run inside the same namespace.
  std::string rules6 = dir_ + "/rules6";
  auto e = sh("'" + std::string(ACP_BINARY) +
              "' export --format=ip6tables --uid=65534 --proxy-port=18443 -o '" + rules6 + "'");
  ASSERT_EQ(e.status, 0) << e.out;
  std::ofstream(dir_ + "/load.sh") << "#!/bin/sh\nset -e\nip6tables-restore --noflush < '" +
                                          rules6 + "'\niptables-restore --noflush < \"$1\"\n";
  expect_wall(
      scenario("--format=iptables --uid=65534 --proxy-port=18443", "sh '" + dir_ + "/load.sh'"));
}

}  // namespace
