// Policy semantics: first match, anchored globs, host normalization, default, timeout, the new
// port/path/tool/server fields, and that the host indexes never change which rule wins.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "acp/proxy/policy.hpp"

namespace acp::policy {
namespace {

Policy load(const std::string& yaml) {
  auto p = Policy::parse(yaml, "test.yml");
  EXPECT_TRUE(p.ok()) << (p.ok() ? "" : p.error().message());
  return std::move(p).value();
}

Action http(std::string host, uint16_t port = 443, std::string method = "CONNECT",
            std::string path = "") {
  Action a;
  a.kind = "http";
  a.host = std::move(host);
  a.port = port;
  a.method = std::move(method);
  a.path = std::move(path);
  return a;
}

Action shell(std::string name, std::string args = "") {
  Action a;
  a.kind = "shell";
  a.name = std::move(name);
  a.args = std::move(args);
  return a;
}

TEST(PolicyGlob, AnchoredStarAndQuestion) {
  EXPECT_TRUE(glob_match("*.anthropic.com", "api.anthropic.com"));
  EXPECT_TRUE(glob_match("*.anthropic.com", "a.b.anthropic.com"));  // * crosses dots (upstream)
  EXPECT_FALSE(glob_match("*.anthropic.com", "anthropic.com"));
  EXPECT_FALSE(glob_match("*.anthropic.com", "api.anthropic.com.evil.net"));  // anchored end
  EXPECT_FALSE(glob_match("api.github.com", "xapi.github.com"));              // anchored start
  EXPECT_FALSE(glob_match("*.example.com", "apiexampleXcom"));                // dot is literal
  EXPECT_TRUE(glob_match("ca?", "cat"));
  EXPECT_FALSE(glob_match("ca?", "cats"));
  EXPECT_FALSE(glob_match("ca?", "ca"));
  EXPECT_TRUE(glob_match("ca?", "ca\xc3\xa9"));  // ? is one UTF-8 character
  EXPECT_TRUE(glob_match("*", ""));
  EXPECT_TRUE(glob_match("**", "anything"));
  EXPECT_TRUE(glob_match("pr list*", "pr list --state=open"));
  EXPECT_TRUE(glob_match("-rf /*", "-rf /home"));
  EXPECT_TRUE(glob_match("a*b*c", "aXbYbZc"));
  EXPECT_FALSE(glob_match("a*b*c", "aXbYbZ"));
  EXPECT_FALSE(glob_match("", "x"));
}

TEST(PolicyEngine, FirstMatchWins) {
  auto p = load(R"(default: ask
rules:
  - match: { name: "rm", args: "-rf /*" }
    action: deny
  - match: { name: "rm" }
    action: ask
  - match: { kind: http, host: "api.example.com" }
    action: deny
  - match: { kind: http, host: "*.example.com" }
    action: allow
)");
  EXPECT_EQ(p.decide(shell("rm", "-rf /*")).verdict, Verdict::Deny);
  EXPECT_EQ(p.decide(shell("rm", "temp.txt")).verdict, Verdict::Ask);
  auto d = p.decide(http("api.example.com"));
  EXPECT_EQ(d.verdict, Verdict::Deny);
  EXPECT_EQ(d.rule_index, 2);
  EXPECT_EQ(d.rule_line, 7);
  EXPECT_TRUE(d.host_named);
  d = p.decide(http("www.example.com"));
  EXPECT_EQ(d.verdict, Verdict::Allow);
  EXPECT_EQ(d.rule_index, 3);
  EXPECT_FALSE(d.host_named);
  EXPECT_EQ(d.rule_text, "match: { kind: http, host: \"*.example.com\" }, action: allow");
}

TEST(PolicyEngine, IndexesKeepFileOrder) {
  // A glob before an exact host must still win, and an exact host before a suffix rule too.
  auto p = load(R"(default: deny
rules:
  - match: { host: "*.internal.example" }
    action: ask
  - match: { host: "db.internal.example" }
    action: allow
  - match: { host: "api.example.com" }
    action: allow
  - match: { host: "*.example.com" }
    action: deny
  - match: { host: "a?i.example.com" }
    action: ask
  - match: { host: "api.example.com", port: 8443 }
    action: deny
)");
  EXPECT_EQ(p.decide(http("db.internal.example")).rule_index, 0);
  EXPECT_EQ(p.decide(http("api.example.com")).rule_index, 2);
  EXPECT_EQ(p.decide(http("aqi.example.com")).rule_index, 3);
  EXPECT_EQ(p.decide(http("nothing.else")).rule_index, -1);
}

TEST(PolicyEngine, ExactRuleWithOtherFieldsFallsThroughToLaterRules) {
  auto p = load(R"(rules:
  - match: { host: "api.github.com", method: "GET" }
    action: allow
  - match: { host: "api.github.com", method: "POST" }
    action: ask
  - match: { host: "*" }
    action: deny
)");
  EXPECT_EQ(p.decide(http("api.github.com", 443, "get")).verdict, Verdict::Allow);  // any case
  EXPECT_EQ(p.decide(http("api.github.com", 443, "POST")).verdict, Verdict::Ask);
  EXPECT_EQ(p.decide(http("api.github.com", 443, "DELETE")).rule_index, 2);
}

TEST(PolicyEngine, HostsCaseInsensitiveWithoutTrailingDotOrBrackets) {
  auto p = load(R"(default: deny
rules:
  - match: { host: "API.GitHub.com." }
    action: allow
  - match: { host: "*.Anthropic.COM" }
    action: allow
  - match: { host: "[::1]" }
    action: ask
)");
  EXPECT_EQ(p.decide(http("api.github.com")).verdict, Verdict::Allow);
  EXPECT_EQ(p.decide(http("Api.GitHub.Com.")).verdict, Verdict::Allow);
  EXPECT_EQ(p.decide(http("API.ANTHROPIC.COM")).verdict, Verdict::Allow);
  EXPECT_EQ(p.decide(http("x.anthropic.com.")).verdict, Verdict::Allow);
  EXPECT_EQ(p.decide(http("::1")).verdict, Verdict::Ask);
  EXPECT_EQ(p.decide(http("[::1]")).verdict, Verdict::Ask);
  EXPECT_EQ(p.decide(http("github.com")).verdict, Verdict::Deny);
}

// A literal host or path means one host or path however the rule or the request spells it:
// the loader writes the rule in the proxy's canonical form (request_target.hpp).
TEST(PolicyEngine, LiteralHostsAndPathsAreCanonical) {
  auto p = load(R"(default: allow
rules:
  - match: { host: "127.1" }
    action: deny
  - match: { host: "[::ffff:10.0.0.1]" }
    action: deny
  - match: { host: "0x0a000002" }
    action: deny
  - match: { host: "B)"
                "\xc3\xbc"
                R"(cher.DE." }
    action: deny
  - match: { host: "[2001:DB8:0::1]" }
    action: deny
  - match: { host: "api.example", path: "/./%61dmin//x/../y" }
    action: deny
  - match: { host: "*.B)"
                "\xc3\xbc"
                R"(cher.de" }
    action: ask
)");
  for (const char* h : {"127.0.0.1", "127.1", "2130706433", "0x7f.0.0.1", "0177.0.0.1",
                        "[::ffff:127.0.0.1]", "::ffff:7f00:1", "127.0.0.1."}) {
    auto d = p.decide(http(h));
    EXPECT_EQ(d.verdict, Verdict::Deny) << h;
    EXPECT_EQ(d.rule_index, 0) << h;
    EXPECT_TRUE(d.host_named) << h;
  }
  EXPECT_EQ(p.decide(http("10.0.0.1")).rule_index, 1);
  EXPECT_EQ(p.decide(http("10.0.0.2")).rule_index, 2);
  EXPECT_EQ(p.decide(http("10.2")).rule_index, 2);
  EXPECT_EQ(p.decide(http("xn--bcher-kva.de")).rule_index, 3);
  EXPECT_EQ(p.decide(http("2001:db8::1")).rule_index, 4);
  EXPECT_EQ(p.decide(http("api.example", 80, "GET", "/admin/y")).rule_index, 5);
  EXPECT_EQ(p.decide(http("www.xn--bcher-kva.de")).rule_index, 6);
  EXPECT_EQ(p.decide(http("127.0.0.2")).verdict, Verdict::Allow);
  EXPECT_NE(p.rule_text(0).find("host: \"127.0.0.1\""), std::string::npos) << p.rule_text(0);
  EXPECT_NE(p.rule_text(5).find("path: \"/admin/y\""), std::string::npos) << p.rule_text(5);
}

TEST(PolicyEngine, HostsAndPathsThatNoRequestHasAreLoadErrors) {
  auto bad = [](const std::string& match) {
    auto p = Policy::parse("rules:\n  - match: " + match + "\n    action: deny\n", "t.yml");
    EXPECT_FALSE(p.ok()) << match;
    return p.ok() ? std::string() : p.error().message();
  };
  EXPECT_NE(bad(R"({ host: "1.2.3.256" })").find("t.yml:2: host '1.2.3.256' ends in a number"),
            std::string::npos);
  EXPECT_NE(bad(R"({ host: "example.123" })").find("ends in a number"), std::string::npos);
  EXPECT_NE(bad(R"({ host: "[fe80::1%25lo]" })").find("zone"), std::string::npos);
  EXPECT_NE(bad(R"({ host: "a b" })").find("holds ' '"), std::string::npos);
  EXPECT_NE(bad(R"({ path: "/a%2Fb" })")
                .find("t.yml:2: path '/a%2Fb' never matches a request: the path holds an "
                      "encoded '/'"),
            std::string::npos);
  EXPECT_NE(bad(R"({ path: "admin" })").find("does not start with '/'"), std::string::npos);
  EXPECT_NE(bad(R"({ path: "/a;b" })").find("';'"), std::string::npos);
}

// `acp policy check`'s path warnings: a glob that no canonical path has, and a path rule that
// a CONNECT to its host passes by.
TEST(PolicyEngine, PathWarnings) {
  auto p = load(R"(default: deny
rules:
  - match: { host: "ok.example", path: "/admin/*" }
    action: deny
  - match: { host: "ok.example" }
    action: deny
  - match: { host: "odd.example", path: "/%61dmin/*" }
    action: deny
  - match: { host: "dots.example", path: "/a/../b*" }
    action: deny
  - match: { host: "tunnel.example", path: "/admin/*" }
    action: deny
  - match: { host: "*.tunnel.example", port: [8443], path: "/x*" }
    action: ask
  - match: { host: "*tunnel.example" }
    action: allow
  - match: { host: "allowed.example", path: "/pub/*" }
    action: allow
  - match: { path: "*/admin*" }
    action: deny
)");
  auto w = p.path_warnings();
  std::string all;
  for (const auto& s : w) all += s + "\n";
  EXPECT_EQ(w.size(), 4u) << all;
  EXPECT_EQ(all.find("rule 1 "), std::string::npos) << all;
  EXPECT_NE(all.find("test.yml:7: rule 3 (deny) path \"/%61dmin/*\" is not in canonical form"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("(\"/admin/*\")"), std::string::npos) << all;
  EXPECT_NE(all.find("test.yml:9: rule 4 (deny) path \"/a/../b*\" is not in canonical form"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("test.yml:11: rule 5 (deny) matches paths, but a CONNECT to "
                     "tunnel.example:443 is allow (rule 7)"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("rule 6 (ask) matches paths, but a CONNECT to a.tunnel.example:443 is allow"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("--inspect-tls"), std::string::npos) << all;
}

TEST(PolicyEngine, DefaultAndTimeout) {
  auto p = load(R"(default: deny
rules:
  - match: { host: "slow.example" }
    action: ask
    timeout: 30
  - match: { host: "plain.example" }
    action: ask
)");
  auto d = p.decide(http("slow.example"));
  EXPECT_EQ(d.timeout, std::chrono::seconds(30));
  EXPECT_EQ(p.decide(http("plain.example")).timeout, std::chrono::seconds(120));
  d = p.decide(http("other.example"));
  EXPECT_EQ(d.verdict, Verdict::Deny);
  EXPECT_EQ(d.rule_index, -1);
  EXPECT_EQ(d.rule_line, 0);
  EXPECT_EQ(d.timeout, std::chrono::seconds(120));
  EXPECT_FALSE(d.host_named);
  // Without `default`, upstream asks.
  EXPECT_EQ(load("rules: []\n").decide(http("x")).verdict, Verdict::Ask);
}

TEST(PolicyEngine, PortAndPath) {
  auto p = load(R"(default: deny
rules:
  - match: { host: "api.example.com", port: [80, 8080], path: "/v1/*" }
    action: allow
  - match: { host: "api.example.com", port: 443 }
    action: ask
)");
  EXPECT_EQ(p.decide(http("api.example.com", 8080, "GET", "/v1/items?x=1")).verdict,
            Verdict::Allow);
  EXPECT_EQ(p.decide(http("api.example.com", 80, "GET", "/v2/items")).verdict, Verdict::Deny);
  EXPECT_EQ(p.decide(http("api.example.com", 81, "GET", "/v1/items")).verdict, Verdict::Deny);
  EXPECT_EQ(p.decide(http("api.example.com", 443)).verdict, Verdict::Ask);
  // A CONNECT tunnel has no path: a path rule does not match it.
  EXPECT_EQ(p.decide(http("api.example.com", 80, "CONNECT")).verdict, Verdict::Deny);
}

TEST(PolicyEngine, KindSeparatesShellFromHttp) {
  auto p = load(R"(default: deny
rules:
  - match: { kind: http, host: "*.example.com" }
    action: allow
  - match: { name: "curl" }
    action: ask
)");
  EXPECT_EQ(p.decide(shell("curl")).verdict, Verdict::Ask);
  EXPECT_EQ(p.decide(shell("wget")).verdict, Verdict::Deny);
  EXPECT_EQ(p.decide(http("api.example.com")).verdict, Verdict::Allow);
  Action mcp_action = shell("anything");
  mcp_action.kind = "mcp";
  EXPECT_EQ(p.decide(mcp_action).verdict, Verdict::Deny);
}

TEST(PolicyEngine, ToolAndServer) {
  auto p = load(R"(default: ask
rules:
  - match: { kind: mcp, server: "github", tool: "list_*" }
    action: allow
  - match: { kind: mcp, tool: "delete_*" }
    action: deny
)");
  Action a;
  a.kind = "mcp";
  a.server = "github";
  a.tool = "list_issues";
  EXPECT_EQ(p.decide(a).verdict, Verdict::Allow);
  a.tool = "delete_repo";
  EXPECT_EQ(p.decide(a).verdict, Verdict::Deny);
  a.tool = "create_issue";
  EXPECT_EQ(p.decide(a).verdict, Verdict::Ask);
}

TEST(PolicyEngine, RuleWithoutMatchMatchesEverything) {
  auto p = load("default: deny\nrules:\n  - action: allow\n");
  EXPECT_EQ(p.decide(http("x.example")).verdict, Verdict::Allow);
  EXPECT_EQ(p.decide(shell("anything")).verdict, Verdict::Allow);
  EXPECT_EQ(p.rule_text(0), "match: {}, action: allow");
}

TEST(PolicyEngine, ManyHostsStillFirstMatch) {
  std::string y =
      "default: deny\nrules:\n  - match: { host: \"*.blocked.example\" }\n"
      "    action: deny\n";
  for (int i = 0; i < 2000; ++i)
    y += "  - match: { host: \"h" + std::to_string(i) + ".blocked.example\" }\n    action: allow\n";
  for (int i = 0; i < 2000; ++i)
    y += "  - match: { host: \"h" + std::to_string(i) + ".ok.example\" }\n    action: allow\n";
  y += "  - match: { host: \"*.ok.example\" }\n    action: ask\n";
  auto p = load(y);
  EXPECT_EQ(p.rule_count(), 4002u);
  EXPECT_EQ(p.decide(http("h7.blocked.example")).rule_index, 0);
  EXPECT_EQ(p.decide(http("h1999.ok.example")).rule_index, 2000 + 1999 + 1);
  EXPECT_EQ(p.decide(http("h5000.ok.example")).verdict, Verdict::Ask);
}

TEST(PolicyEngine, BuiltinDefault) {
  Policy p = Policy::builtin_default();
  EXPECT_EQ(p.source(), "<built-in>");
  EXPECT_EQ(p.default_verdict(), Verdict::Ask);
  EXPECT_EQ(p.decide(http("api.anthropic.com")).verdict, Verdict::Allow);
  EXPECT_EQ(p.decide(http("api.github.com")).verdict, Verdict::Allow);
  EXPECT_EQ(p.decide(http("example.com")).verdict, Verdict::Ask);
  EXPECT_EQ(p.decide(shell("rm", "-rf /")).verdict, Verdict::Deny);  // fixed order (docs)
  EXPECT_EQ(p.decide(shell("rm", "x")).verdict, Verdict::Ask);
  // Only the harmless redundancy of `-rf /` after `-rf /*` (a `*` also matches nothing).
  auto warnings = p.shadowed_rules();
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("rule 2 (deny) is redundant"), std::string::npos) << warnings[0];
  EXPECT_EQ(p.wrap().size(), 13u);
}

TEST(PolicyStore, ReloadKeepsOldPolicyOnError) {
  char dir_template[] = "/tmp/acp-policy-store-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  const std::string file = dir + "/policy.yml";
  auto write = [&](const std::string& text) {
    FILE* f = std::fopen(file.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs(text.c_str(), f);
    std::fclose(f);
  };
  write("default: deny\n");
  auto first = Policy::load_file(file);
  ASSERT_TRUE(first.ok()) << first.error().message();
  PolicyStore store(std::move(first).value(), file);
  auto before = store.current();
  EXPECT_EQ(before->decide(http("x")).verdict, Verdict::Deny);

  write("default: allow\n");
  ASSERT_TRUE(store.reload().ok());
  EXPECT_EQ(store.current()->decide(http("x")).verdict, Verdict::Allow);
  EXPECT_EQ(before->decide(http("x")).verdict, Verdict::Deny);  // holders keep theirs

  write("default: maybe\n");
  auto s = store.reload();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find("policy.yml:1: unknown default 'maybe'"), std::string::npos)
      << s.error().message();
  EXPECT_EQ(store.current()->decide(http("x")).verdict, Verdict::Allow);

  PolicyStore builtin(Policy::builtin_default(), std::nullopt);
  EXPECT_TRUE(builtin.reload().ok());
  EXPECT_EQ(builtin.current()->source(), "<built-in>");
  std::remove(file.c_str());
  rmdir(dir.c_str());
}

}  // namespace
}  // namespace acp::policy
