// The loader refuses what upstream silently accepted: every error names the file and the line.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "acp/proxy/policy.hpp"

namespace acp::policy {
namespace {

std::string error_of(const std::string& yaml) {
  auto p = Policy::parse(yaml, "policy.yml");
  if (p.ok()) return "(loaded)";
  return p.error().message();
}

TEST(PolicyLoader, UnknownFieldInMatchNamesLineAndSuggests) {
  std::string e = error_of(R"(default: ask
rules:
  - match: { kind: http, host: "a.example" }
    action: allow
  - match: { kind: http, hots: "b.example" }
    action: allow
)");
  EXPECT_EQ(e,
            "policy.yml:5: unknown field 'hots' in match (expected kind, host, method, name, "
            "args, port, path, tool or server; did you mean 'host'?)");
}

TEST(PolicyLoader, UnknownFieldsElsewhere) {
  EXPECT_EQ(error_of("default: ask\nrule: []\n"),
            "policy.yml:2: unknown field 'rule' at the top level (expected default, wrap or "
            "rules; did you mean 'rules'?)");
  EXPECT_EQ(error_of("rules:\n  - match: {}\n    actoin: allow\n"),
            "policy.yml:3: unknown field 'actoin' in rule 1 (expected match, action or timeout; "
            "did you mean 'action'?)");
}

TEST(PolicyLoader, UnknownActionDefaultAndKind) {
  EXPECT_EQ(error_of("rules:\n  - match: { name: x }\n    action: permit\n"),
            "policy.yml:3: unknown action 'permit' (expected allow, ask or deny)");
  EXPECT_EQ(error_of("default: maybe\n"),
            "policy.yml:1: unknown default 'maybe' (expected allow, ask or deny)");
  EXPECT_EQ(error_of("rules:\n  - match: { kind: htpp }\n    action: deny\n"),
            "policy.yml:2: unknown kind 'htpp' (expected http, shell or mcp)");
  EXPECT_EQ(error_of("rules:\n  - match: { name: x }\n"),
            "policy.yml:2: rule 1 has no action (expected action: allow, ask or deny)");
}

TEST(PolicyLoader, WrongTypes) {
  EXPECT_EQ(error_of("rules:\n  - match: { host: [a, b] }\n    action: deny\n"),
            "policy.yml:2: 'host' must be a string, not a list");
  EXPECT_EQ(error_of("rules:\n  - match: { name: x }\n    action: ask\n    timeout: \"60\"\n"),
            "policy.yml:4: 'timeout' must be a number, not the string \"60\"");
  EXPECT_EQ(error_of("rules:\n  - match: { name: x }\n    action: ask\n    timeout: 1.5\n"),
            "policy.yml:4: 'timeout' must be a whole number, not '1.5'");
  EXPECT_EQ(error_of("rules:\n  - match: { host: a, port: 70000 }\n    action: deny\n"),
            "policy.yml:2: 'port' 70000 is out of range (1 to 65535)");
  EXPECT_EQ(error_of("rules:\n  - match: { host: \"a.example:443\" }\n    action: deny\n"),
            "policy.yml:2: host 'a.example:443' includes a port; write the port apart, e.g. "
            "port: 443");
  EXPECT_EQ(error_of("rules: allow\n"),
            "policy.yml:1: 'rules' must be a list of rules, not a value");
  EXPECT_EQ(error_of("rules:\n  - allow\n"),
            "policy.yml:2: rule 1 must be a mapping with match and action, not a value");
  EXPECT_EQ(error_of("rules:\n  - match: { host: \"\" }\n    action: deny\n"),
            "policy.yml:2: 'host' is empty; leave the field out to match anything");
  EXPECT_EQ(error_of("rules:\n  - match:\n      host:\n    action: deny\n"),
            "policy.yml:3: 'host' must be a string, not empty");
  EXPECT_EQ(error_of("default: ask\ndefault: deny\n"), "policy.yml:2: duplicate field 'default'");
  EXPECT_EQ(error_of("- a\n- b\n"),
            "policy.yml:1: a policy is a mapping with default, wrap and rules, not a list");
  EXPECT_EQ(error_of(""), "policy.yml: empty policy (expected default, rules)");
}

TEST(PolicyLoader, BadYamlAndTabs) {
  std::string e = error_of("default: ask\nrules:\n  - match: { host: \"a\"\n    action: deny\n");
  EXPECT_EQ(e.rfind("policy.yml:", 0), 0u) << e;
  EXPECT_NE(e.find("YAML syntax error"), std::string::npos) << e;
  EXPECT_EQ(error_of("default: ask\nrules:\n\t- match: { host: a }\n"),
            "policy.yml:3: tab character in indentation; YAML indents with spaces only");
  e = error_of("rules:\n  - match: { host: *.example.com }\n    action: allow\n");
  EXPECT_EQ(e.rfind("policy.yml:2: ", 0), 0u) << e;
  EXPECT_NE(e.find("must be quoted"), std::string::npos) << e;
  e = error_of("a: &x 1\nb: *x\n");
  EXPECT_EQ(e.rfind("policy.yml:2: YAML aliases (*x) are not supported", 0), 0u) << e;
  e = error_of("default: ask\n---\ndefault: deny\n");
  EXPECT_EQ(e, "policy.yml:2: a policy file holds one YAML document, not more");
}

// The general (libyaml) path accepts the YAML forms the fast path leaves to it.
TEST(PolicyLoader, GeneralYamlForms) {
  auto p = Policy::parse(R"(---
default: "deny"
rules:
- match:
    host: >-
      api.example.com
    port: [443,
           8443]
  action: allow
- {match: {name: rm, args: -rf /}, action: deny}
)",
                         "policy.yml");
  ASSERT_TRUE(p.ok()) << p.error().message();
  Action a;
  a.host = "api.example.com";
  a.port = 8443;
  EXPECT_EQ(p->decide(a).verdict, Verdict::Allow);
  EXPECT_EQ(p->decide(a).rule_line, 4);
  a.kind = "shell";
  a.host.clear();
  a.name = "rm";
  a.args = "-rf /";
  EXPECT_EQ(p->decide(a).verdict, Verdict::Deny);
}

// Running as root, a policy others can write is refused with the fix in the message.
TEST(PolicyLoader, RefusesFilesOthersCanWriteWhenRoot) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root: the check only applies to a root process";
  char dir_template[] = "/tmp/acp-policy-perm-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  const std::string file = dir + "/policy.yml";
  FILE* f = std::fopen(file.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs("default: deny\n", f);
  std::fclose(f);
  ASSERT_EQ(chmod(file.c_str(), 0644), 0);
  EXPECT_TRUE(Policy::load_file(file).ok());

  ASSERT_EQ(chmod(file.c_str(), 0666), 0);
  auto p = Policy::load_file(file);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.error().message().find("writable by others"), std::string::npos);
  EXPECT_NE(p.error().message().find("chmod o-w " + file), std::string::npos);

  ASSERT_EQ(chmod(file.c_str(), 0644), 0);
  ASSERT_EQ(chown(file.c_str(), 65534, 0), 0);
  p = Policy::load_file(file);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.error().message().find("owned by uid 65534"), std::string::npos);
  EXPECT_NE(p.error().message().find("chown root:root " + file), std::string::npos);

  ASSERT_EQ(chown(file.c_str(), 0, 0), 0);
  ASSERT_EQ(chmod(dir.c_str(), 0777), 0);
  p = Policy::load_file(file);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.error().message().find("policy directory " + dir + " is writable by others"),
            std::string::npos)
      << p.error().message();

  std::remove(file.c_str());
  rmdir(dir.c_str());
}

TEST(PolicyLoader, MissingFile) {
  auto p = Policy::load_file("/nonexistent/acp/policy.yml");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().message(),
            "open policy /nonexistent/acp/policy.yml: No such file or directory");
}

}  // namespace
}  // namespace acp::policy
