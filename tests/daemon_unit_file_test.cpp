// deploy/systemd/acp.service: the fields the daemon relies on (readiness protocol, the
// capabilities that BPF needs, the sandbox with its writable paths), and systemd's own check of
// the file when systemd-analyze is installed.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace {

const std::string kUnit = std::string(ACP_SOURCE_DIR) + "/deploy/systemd/acp.service";

// [Service] key -> values (a repeated key collects every value).
std::multimap<std::string, std::string> service_section() {
  std::multimap<std::string, std::string> out;
  std::ifstream in(kUnit);
  std::string line, section;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line[0] == '[') {
      section = line;
      continue;
    }
    auto eq = line.find('=');
    if (section == "[Service]" && eq != std::string::npos)
      out.emplace(line.substr(0, eq), line.substr(eq + 1));
  }
  return out;
}

std::string one(const std::multimap<std::string, std::string>& m, const std::string& key) {
  auto it = m.find(key);
  return it == m.end() ? "<absent>" : it->second;
}

std::vector<std::string> words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

TEST(SystemdUnit, IsTypeNotifyAndRunsTheDaemon) {
  auto s = service_section();
  EXPECT_EQ(one(s, "Type"), "notify");
  EXPECT_EQ(one(s, "ExecStart"), "/usr/sbin/acp daemon");
  EXPECT_EQ(one(s, "ExecReload"), "/bin/kill -HUP $MAINPID");
  // The session records in /run/acp are how a restarted daemon finds what to re-adopt.
  EXPECT_EQ(one(s, "RuntimeDirectory"), "acp");
  EXPECT_EQ(one(s, "RuntimeDirectoryPreserve"), "yes");
}

TEST(SystemdUnit, KeepsTheCapabilitiesBpfNeedsAndNoOthers) {
  auto caps = words(one(service_section(), "CapabilityBoundingSet"));
  for (const char* c : {"CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"})
    EXPECT_NE(std::find(caps.begin(), caps.end(), c), caps.end()) << c;
  for (const auto& c : caps)
    EXPECT_TRUE(c == "CAP_BPF" || c == "CAP_PERFMON" || c == "CAP_NET_ADMIN" ||
                c == "CAP_SYS_ADMIN" || c == "CAP_KILL" || c == "CAP_DAC_READ_SEARCH")
        << c << " is not explained in docs/daemon.md";
}

TEST(SystemdUnit, IsSandboxedWithWritablePathsForItsState) {
  auto s = service_section();
  EXPECT_EQ(one(s, "ProtectSystem"), "strict");
  EXPECT_EQ(one(s, "NoNewPrivileges"), "yes");
  EXPECT_NE(one(s, "ProtectHome"), "<absent>");
  EXPECT_NE(one(s, "ProtectHome"), "no");
  auto rw = words(one(s, "ReadWritePaths"));
  for (const char* p :
       {"/run/acp", "/var/log/acp", "/var/lib/acp", "/sys/fs/bpf", "/sys/fs/cgroup"})
    EXPECT_NE(std::find(rw.begin(), rw.end(), p), rw.end()) << p;
  // These would make bpffs or the cgroup tree read-only: the daemon could not build walls.
  EXPECT_EQ(s.count("ProtectKernelTunables"), 0u);
  EXPECT_EQ(s.count("ProtectControlGroups"), 0u);
}

TEST(SystemdUnit, SystemdAnalyzeVerifyAcceptsIt) {
  if (system("command -v systemd-analyze >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "systemd-analyze is not installed";
  char tmpl[] = "/tmp/acp-unit.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  // verify checks that ExecStart exists: the installed path is not there in a build tree.
  std::ifstream in(kUnit);
  std::stringstream text;
  text << in.rdbuf();
  std::string unit = text.str();
  auto pos = unit.find("/usr/sbin/acp daemon");
  ASSERT_NE(pos, std::string::npos);
  unit.replace(pos, std::string("/usr/sbin/acp").size(), ACP_BINARY);
  std::ofstream(dir + "/acp.service") << unit;
  std::string cmd = "systemd-analyze verify " + dir + "/acp.service > " + dir + "/out 2>&1";
  int rc = system(cmd.c_str());
  std::ifstream out(dir + "/out");
  std::stringstream o;
  o << out.rdbuf();
  std::filesystem::remove_all(dir);
  EXPECT_EQ(rc, 0) << o.str();
  EXPECT_EQ(o.str(), "") << "systemd-analyze verify complained";
}

}  // namespace
