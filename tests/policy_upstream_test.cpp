// Every upstream policy file loads unchanged and behaves as its comments say (with upstream's
// first-match order, which makes default.yml's `rm -rf /` denies unreachable; see
// docs/policy.md).
#include <gtest/gtest.h>

#include "acp/proxy/policy.hpp"

namespace acp::policy {
namespace {

Policy upstream(const std::string& name) {
  auto p = Policy::load_file(std::string(ACP_SOURCE_DIR) + "/compat/upstream-policies/" + name);
  EXPECT_TRUE(p.ok()) << (p.ok() ? "" : p.error().message());
  return std::move(p).value();
}

Verdict http(const Policy& p, const std::string& host) {
  Action a;
  a.host = host;
  a.port = 443;
  a.method = "CONNECT";
  return p.decide(a).verdict;
}

PolicyDecision shell(const Policy& p, const std::string& name, const std::string& args = "") {
  Action a;
  a.kind = "shell";
  a.name = name;
  a.args = args;
  return p.decide(a);
}

TEST(PolicyUpstream, DefaultYml) {
  Policy p = upstream("default.yml");
  EXPECT_EQ(p.rule_count(), 23u);
  EXPECT_EQ(p.default_verdict(), Verdict::Ask);
  EXPECT_EQ(p.wrap().size(), 13u);
  EXPECT_EQ(http(p, "api.anthropic.com"), Verdict::Allow);
  EXPECT_EQ(http(p, "api.openai.com"), Verdict::Allow);
  EXPECT_EQ(http(p, "storage.googleapis.com"), Verdict::Allow);
  EXPECT_EQ(http(p, "api.github.com"), Verdict::Allow);
  EXPECT_EQ(http(p, "github.com"), Verdict::Ask);  // default
  EXPECT_EQ(http(p, "anthropic.com"), Verdict::Ask);
  EXPECT_EQ(shell(p, "cat").verdict, Verdict::Allow);
  EXPECT_EQ(shell(p, "gh", "pr list --state=open").verdict, Verdict::Allow);
  auto d = shell(p, "gh", "pr create --fill");
  EXPECT_EQ(d.verdict, Verdict::Ask);
  EXPECT_EQ(d.timeout, std::chrono::seconds(120));
  EXPECT_EQ(shell(p, "git", "push origin main").verdict, Verdict::Ask);
  EXPECT_EQ(shell(p, "curl").verdict, Verdict::Ask);
  // Upstream's order: `rm: ask` (rule 20) comes first, so the denies never apply.
  d = shell(p, "rm", "-rf /");
  EXPECT_EQ(d.verdict, Verdict::Ask);
  EXPECT_EQ(d.rule_index, 19);
  auto warnings = p.shadowed_rules();
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_NE(warnings[0].find("default.yml:74: rule 22 (deny) never applies: rule 20 (line 68"),
            std::string::npos)
      << warnings[0];
}

TEST(PolicyUpstream, DevelopmentYml) {
  Policy p = upstream("development.yml");
  EXPECT_EQ(p.default_verdict(), Verdict::Allow);
  EXPECT_EQ(shell(p, "rm", "-rf /*").verdict, Verdict::Deny);
  EXPECT_EQ(shell(p, "rm", "-rf /").verdict, Verdict::Deny);
  EXPECT_EQ(shell(p, "rm", "notes.txt").verdict, Verdict::Ask);
  EXPECT_EQ(http(p, "api.stripe.com"), Verdict::Ask);
  EXPECT_EQ(http(p, "www.paypal.com"), Verdict::Ask);
  EXPECT_EQ(http(p, "pypi.org"), Verdict::Allow);
}

TEST(PolicyUpstream, OpenclawYml) {
  Policy p = upstream("openclaw.yml");
  EXPECT_EQ(http(p, "api.telegram.org"), Verdict::Allow);
  EXPECT_EQ(http(p, "core.telegram.org"), Verdict::Allow);
  EXPECT_EQ(http(p, "api.search.brave.com"), Verdict::Allow);
  EXPECT_EQ(http(p, "api.anthropic.com"), Verdict::Allow);
  Action stripe;
  stripe.host = "api.stripe.com";
  auto d = p.decide(stripe);
  EXPECT_EQ(d.verdict, Verdict::Ask);
  EXPECT_EQ(d.timeout, std::chrono::seconds(120));
  EXPECT_EQ(http(p, "example.com"), Verdict::Ask);
  EXPECT_EQ(shell(p, "rm", "-rf /").verdict, Verdict::Deny);
  EXPECT_EQ(shell(p, "git", "diff HEAD").verdict, Verdict::Allow);
  EXPECT_EQ(shell(p, "python3").verdict, Verdict::Ask);
}

TEST(PolicyUpstream, StrictYml) {
  Policy p = upstream("strict.yml");
  EXPECT_EQ(p.wrap().size(), 22u);
  EXPECT_EQ(http(p, "x.evil.com"), Verdict::Deny);
  EXPECT_EQ(http(p, "API.OpenAI.com."), Verdict::Allow);
  EXPECT_EQ(http(p, "example.com"), Verdict::Ask);
  EXPECT_EQ(shell(p, "cat").verdict, Verdict::Allow);
  EXPECT_EQ(shell(p, "git", "status").verdict, Verdict::Ask);
  EXPECT_EQ(shell(p, "rm", "-rf /home").verdict, Verdict::Deny);
}

}  // namespace
}  // namespace acp::policy
