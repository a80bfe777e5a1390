// deploy/debian/config.yml and policy.yml, which the Debian package installs as the conffiles
// /etc/acp/config.yml and /etc/acp/policy.yml: each loads as acp run loads it, and says what
// `acp init` would write (the same config values; the built-in policy under a longer header).
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "acp/proxy/acp_config.hpp"
#include "acp/proxy/policy.hpp"

namespace {

const std::string kDir = std::string(ACP_SOURCE_DIR) + "/deploy/debian";

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(DebianConffiles, ConfigLoadsAndHoldsTheDefaultsAcpInitWrites) {
  auto c = acp::config::parse_config(slurp(kDir + "/config.yml"), kDir + "/config.yml");
  ASSERT_TRUE(c.ok()) << c.error().message();
  // `acp init` with no options: the web page on, everything else off, the policy beside it.
  acp::config::Config init;
  init.policy = "/etc/acp/policy.yml";
  EXPECT_EQ(acp::config::render_config(*c), acp::config::render_config(init));
}

TEST(DebianConffiles, PolicyIsTheBuiltInOneUnderACommentHeader) {
  const std::string text = slurp(kDir + "/policy.yml");
  const std::string builtin(acp::policy::Policy::builtin_default_text());
  ASSERT_GT(text.size(), builtin.size());
  EXPECT_EQ(text.substr(text.size() - builtin.size()), builtin)
      << "deploy/debian/policy.yml must end with the built-in policy, unchanged";
  std::istringstream header(text.substr(0, text.size() - builtin.size()));
  for (std::string line; std::getline(header, line);)
    EXPECT_TRUE(!line.empty() && line[0] == '#') << "not a comment: " << line;
  auto p = acp::policy::Policy::parse(text, kDir + "/policy.yml");
  ASSERT_TRUE(p.ok()) << p.error().message();
}

}  // namespace
