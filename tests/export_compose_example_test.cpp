// deploy/compose/docker-compose.yml, the docker-compose example of network-isolation-early.md,
// is kept working: it is exactly what `acp export --format=compose --agent-image=
// acp-agent:latest` prints (so the example and the exporter never drift apart), and the compose
// tool accepts it (`docker compose config`, else Debian's docker-compose v1; both offline).
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

namespace {

struct Run {
  int status = -1;
  std::string out;
};

Run sh(const std::string& cmd) {
  Run r;
  std::string full = "cd '" + std::string(ACP_SOURCE_DIR) + "' && " + cmd + " 2>&1";
  FILE* p = ::popen(full.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
  return r;
}

const std::string kExample = std::string(ACP_SOURCE_DIR) + "/deploy/compose/docker-compose.yml";

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(ComposeExample, IsWhatAcpExportPrints) {
  auto r = sh("'" + std::string(ACP_BINARY) +
              "' export --format=compose --agent-image=acp-agent:latest");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(slurp(kExample), r.out)
      << "regenerate: acp export --format=compose --agent-image=acp-agent:latest > "
         "deploy/compose/docker-compose.yml";
}

TEST(ComposeExample, TheComposeToolAcceptsIt) {
  std::string tool;
  if (sh("docker compose version >/dev/null").status == 0)
    tool = "docker compose";
  else if (sh("docker-compose version >/dev/null").status == 0)
    tool = "docker-compose";
  else
    GTEST_SKIP() << "neither `docker compose` nor docker-compose is installed "
                    "(scripts/install-deps.sh adds docker-compose)";
  auto r = sh(tool + " -f '" + kExample + "' config");
  EXPECT_EQ(r.status, 0) << r.out;
  // What the example is for: the agent only on the internal network.
  EXPECT_NE(r.out.find("internal: true"), std::string::npos) << r.out;
}

}  // namespace
