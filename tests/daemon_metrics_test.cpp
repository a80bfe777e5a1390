// What `acp daemon --metrics` writes (acp/daemon/daemon_metrics.hpp): every family is in
// docs/daemon.md's table with its type, and the table names nothing the daemon does not write;
// counters end in _total and durations are histograms in seconds.
#include "acp/daemon/daemon_metrics.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>

namespace {

std::map<std::string, std::string> families_written(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# TYPE ", 0) != 0) continue;
    auto sp = line.find(' ', 7);
    out[line.substr(7, sp - 7)] = line.substr(sp + 1);
  }
  return out;
}

std::map<std::string, std::string> families_documented() {
  std::ifstream f(std::string(ACP_SOURCE_DIR) + "/docs/daemon.md");
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string doc = ss.str();
  const auto from = doc.find("## Metrics");
  const auto to = doc.find("\n## ", from + 1);
  std::map<std::string, std::string> out;
  const std::regex row(R"(\| `(acp_[a-z_]+)` \| (counter|gauge|histogram) \|)");
  const std::string section = doc.substr(from, to - from);
  for (std::sregex_iterator it(section.begin(), section.end(), row), end; it != end; ++it)
    out[(*it)[1]] = (*it)[2];
  return out;
}

TEST(DaemonMetrics, EveryFamilyIsDocumentedWithItsType) {
  acp::daemon::DaemonMetrics m;
  const auto written = families_written(acp::daemon::render_daemon_metrics(m));
  const auto documented = families_documented();
  ASSERT_FALSE(written.empty());
  EXPECT_EQ(written, documented) << "docs/daemon.md (## Metrics) and render_daemon_metrics() "
                                    "disagree";
  for (const auto& [name, type] : written) {
    if (type == "counter") {
      EXPECT_TRUE(name.ends_with("_total")) << name;
    }
    if (type == "histogram") {
      EXPECT_TRUE(name.ends_with("_seconds")) << name;
    }
  }
}

TEST(DaemonMetrics, EventsCountByHookAndMode) {
  acp::daemon::DaemonMetrics m;
  acp_event e{};
  e.hook = ACP_HOOK_CONNECT6;
  e.verdict = ACP_VERDICT_DENY;
  m.count_event(e);
  m.count_event(e);
  e.verdict = ACP_VERDICT_AUDIT_DENY;
  m.count_event(e);
  e.verdict = ACP_VERDICT_ALLOW;  // not a denial
  m.count_event(e);
  e.hook = ACP_HOOK_MAX;  // from a newer kernel side: not counted under a wrong name
  e.verdict = ACP_VERDICT_DENY;
  m.count_event(e);
  const std::string text = acp::daemon::render_daemon_metrics(m);
  EXPECT_NE(text.find("acp_kernel_denials_total{hook=\"connect6\",mode=\"enforce\"} 2\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("acp_kernel_denials_total{hook=\"connect6\",mode=\"audit\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("acp_kernel_denials_total{hook=\"connect4\",mode=\"enforce\"} 0\n"),
            std::string::npos);
}

}  // namespace
