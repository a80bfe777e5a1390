#include "acp/launch/agent_env.hpp"

#include <gtest/gtest.h>

#include <algorithm>

namespace {

using acp::launch::AgentEnvSettings;
using acp::launch::build_agent_env;
using acp::launch::env_lookup;
using acp::launch::env_to_map;

size_t count_key(const std::vector<std::string>& env, const std::string& key) {
  return std::count_if(env.begin(), env.end(),
                       [&](const std::string& e) { return e.rfind(key + "=", 0) == 0; });
}

TEST(LaunchAgentEnv, PointsEveryProxyVariableAtTheProxy) {
  AgentEnvSettings s{"http://127.0.0.1:8443", "s1", nullptr, {}};
  auto env = build_agent_env({"HTTP_PROXY=http://corp:3128", "https_proxy=http://corp:3128"}, s);
  for (const char* k :
       {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"}) {
    EXPECT_EQ(env_lookup(env, k), "http://127.0.0.1:8443") << k;
    EXPECT_EQ(count_key(env, k), 1u) << k;
  }
}

TEST(LaunchAgentEnv, DropsNoProxySoEveryRequestMeetsTheProxy) {
  AgentEnvSettings s{"http://127.0.0.1:8443", "s1", nullptr, {}};
  auto env = build_agent_env({"NO_PROXY=*", "no_proxy=localhost,10.0.0.0/8", "A=1"}, s);
  EXPECT_EQ(env_lookup(env, "NO_PROXY"), std::nullopt);
  EXPECT_EQ(env_lookup(env, "no_proxy"), std::nullopt);
  EXPECT_EQ(env_lookup(env, "A"), "1");
}

TEST(LaunchAgentEnv, MarksTheSandboxAndTheSession) {
  AgentEnvSettings s{"http://127.0.0.1:8443", "20261123-abc", nullptr, {}};
  auto env = build_agent_env({"ACP_SANDBOX=0"}, s);
  EXPECT_EQ(env_lookup(env, "ACP_SANDBOX"), "1");
  EXPECT_EQ(env_lookup(env, "ACP_SESSION"), "20261123-abc");
  EXPECT_EQ(count_key(env, "ACP_SANDBOX"), 1u);
}

TEST(LaunchAgentEnv, SetsTheTargetUsersIdentity) {
  acp::launch::TargetUser u{1000, 1000, {1000}, "alice", "/home/alice", "/bin/zsh"};
  AgentEnvSettings s{"http://127.0.0.1:8443", "s1", &u, {}};
  // As under sudo: root's HOME and the caller's USER must not leak into the agent.
  auto env = build_agent_env({"HOME=/root", "USER=root", "LOGNAME=root", "SHELL=/bin/bash"}, s);
  EXPECT_EQ(env_lookup(env, "HOME"), "/home/alice");
  EXPECT_EQ(env_lookup(env, "USER"), "alice");
  EXPECT_EQ(env_lookup(env, "LOGNAME"), "alice");
  EXPECT_EQ(env_lookup(env, "SHELL"), "/bin/zsh");
}

TEST(LaunchAgentEnv, KeepsEverythingElseInOrder) {
  AgentEnvSettings s{"http://127.0.0.1:8443", "s1", nullptr, {}};
  std::vector<std::string> parent{"PATH=/usr/bin:/bin", "LD_LIBRARY_PATH=/opt/lib",
                                  "LD_PRELOAD=/opt/x.so", "TERM=xterm", "SUDO_USER=alice"};
  auto env = build_agent_env(parent, s);
  ASSERT_GE(env.size(), parent.size());
  // The parent's variables keep their relative order at the front.
  for (size_t i = 0; i < parent.size(); ++i) EXPECT_EQ(env[i], parent[i]);
}

TEST(LaunchAgentEnv, DuplicateKeysCollapseToTheLastValue) {
  AgentEnvSettings s{"http://127.0.0.1:8443", "s1", nullptr, {}};
  auto env = build_agent_env({"X=1", "Y=2", "X=3"}, s);
  EXPECT_EQ(count_key(env, "X"), 1u);
  EXPECT_EQ(env_lookup(env, "X"), "3");
  EXPECT_EQ(env[0], "X=3");
}

TEST(LaunchAgentEnv, ExtraIsAppliedLastAndWins) {
  AgentEnvSettings s{"http://127.0.0.1:8443", "s1", nullptr, {{"ACP_CONTAINED", "1"}, {"A", "b"}}};
  auto env = build_agent_env({"A=a"}, s);
  EXPECT_EQ(env_lookup(env, "ACP_CONTAINED"), "1");
  EXPECT_EQ(env_lookup(env, "A"), "b");
}

TEST(LaunchAgentEnv, EnvToMapAndLookup) {
  std::vector<std::string> env{"A=1", "B==x", "NOEQUALS", "A=2", "EMPTY="};
  auto m = env_to_map(env);
  EXPECT_EQ(m.at("A"), "2");
  EXPECT_EQ(m.at("B"), "=x");
  EXPECT_EQ(m.at("EMPTY"), "");
  EXPECT_EQ(m.count("NOEQUALS"), 0u);
  EXPECT_EQ(env_lookup(env, "B"), "=x");
  EXPECT_EQ(env_lookup(env, "NOEQUALS"), std::nullopt);
  EXPECT_EQ(env_lookup(env, "A"), "2");
}

TEST(LaunchAgentEnv, CurrentEnvironmentSeesSetenv) {
  setenv("ACP_TEST_CURRENT_ENV", "yes", 1);
  EXPECT_EQ(env_lookup(acp::launch::current_environment(), "ACP_TEST_CURRENT_ENV"), "yes");
  unsetenv("ACP_TEST_CURRENT_ENV");
}

}  // namespace

namespace {

TEST(LaunchAgentEnv, TlsInspectionHandsTheAgentTheBundle) {
  const char* keys[] = {"SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE",
                        "CURL_CA_BUNDLE"};
  AgentEnvSettings off{"http://127.0.0.1:8443", "s1", nullptr, {}};
  auto env = build_agent_env({"SSL_CERT_FILE=/mine.pem"}, off);
  EXPECT_EQ(env_lookup(env, "SSL_CERT_FILE"), "/mine.pem");  // untouched without inspection
  EXPECT_EQ(env_lookup(env, "CURL_CA_BUNDLE"), std::nullopt);

  AgentEnvSettings on = off;
  on.extra = acp::launch::trust_env("/var/lib/acp/ca/bundle.pem");
  env = build_agent_env({"SSL_CERT_FILE=/mine.pem"}, on);
  for (const char* k : keys) {
    EXPECT_EQ(env_lookup(env, k), "/var/lib/acp/ca/bundle.pem") << k;
    EXPECT_EQ(count_key(env, k), 1u) << k;
  }
}

}  // namespace
