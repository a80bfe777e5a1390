// kind: mcp rules: server, tool and args (a glob over the canonical JSON of the arguments), the
// loader's errors for fields an MCP tool call never has, and HTTP rules never deciding a call.
#include <gtest/gtest.h>

#include "acp/proxy/mcp.hpp"
#include "acp/proxy/policy.hpp"

namespace acp::policy {
namespace {

std::string error_of(const std::string& yaml) {
  auto p = Policy::parse(yaml, "policy.yml");
  if (p.ok()) return "(loaded)";
  return p.error().message();
}

Action tool_call(const std::string& server, const std::string& tool, const std::string& args_json) {
  mcp::ToolCall c;
  c.tool = tool;
  c.args = mcp::canonical_json(nlohmann::json::parse(args_json));
  return mcp::tool_action(c, server, "s1");
}

TEST(PolicyMcp, RulesMatchServerToolAndCanonicalArgs) {
  auto p = Policy::parse(R"(default: deny
rules:
  - match: { host: "mcp.example.com" }
    action: allow
  - match: { kind: mcp, server: "*.example.com", tool: read_* }
    action: allow
  - match: { kind: mcp, tool: delete_file, args: '{"path":"/tmp/*"}' }
    action: ask
    timeout: 30
  - match: { kind: mcp, server: files, tool: "*" }
    action: deny
)",
                         "policy.yml");
  ASSERT_TRUE(p.ok()) << p.error().message();
  // A rule naming only a host is an HTTP rule in effect: a tool call has no host.
  auto d = p->decide(tool_call("mcp.example.com", "write_file", "{}"));
  EXPECT_EQ(d.verdict, Verdict::Deny);
  EXPECT_EQ(d.rule_index, -1);
  EXPECT_EQ(p->decide(tool_call("mcp.example.com", "read_file", R"({"path":"/x"})")).rule_index, 1);
  // args match the canonical form: key order and whitespace as sent do not matter.
  auto ask = p->decide(tool_call("any", "delete_file", R"({ "path" : "/tmp/a" })"));
  EXPECT_EQ(ask.verdict, Verdict::Ask);
  EXPECT_EQ(ask.timeout, std::chrono::seconds(30));
  EXPECT_EQ(
      ask.rule_text,
      R"(match: { kind: mcp, args: "{\"path\":\"/tmp/*\"}", tool: "delete_file" }, action: ask, timeout: 30)");
  // Another key after "path" makes the anchored glob fail: the canonical form is exact.
  EXPECT_EQ(p->decide(tool_call("any", "delete_file", R"({"path":"/etc","z":1})")).verdict,
            Verdict::Deny);
  EXPECT_EQ(p->decide(tool_call("files", "echo", "{}")).rule_index, 3);
}

TEST(PolicyMcp, FieldsAToolCallNeverHasAreLoadErrors) {
  EXPECT_EQ(error_of("rules:\n  - match: { kind: mcp, host: \"x\" }\n    action: allow\n"),
            "policy.yml:2: 'host' never matches kind: mcp (an MCP tool call has server, tool and "
            "args; the server is the MCP server's host or command)");
  EXPECT_EQ(error_of("rules:\n  - match:\n      kind: mcp\n      method: POST\n    action: deny\n"),
            "policy.yml:4: 'method' never matches kind: mcp (an MCP tool call has server, tool "
            "and args; the server is the MCP server's host or command)");
  EXPECT_EQ(error_of("rules:\n  - match: { kind: mcp, port: 443 }\n    action: deny\n"),
            "policy.yml:2: 'port' never matches kind: mcp (an MCP tool call has server, tool and "
            "args)");
  EXPECT_EQ(error_of("rules:\n  - match:\n      kind: http\n      tool: x\n    action: deny\n"),
            "policy.yml:4: 'tool' only matches kind: mcp, not kind: http");
  EXPECT_EQ(error_of("rules:\n  - match: { kind: shell, server: x }\n    action: deny\n"),
            "policy.yml:2: 'server' only matches kind: mcp, not kind: shell");
  // Without a kind, tool and server are fine (the rule applies to whatever has them).
  EXPECT_EQ(error_of("rules:\n  - match: { tool: x }\n    action: deny\n"), "(loaded)");
}

}  // namespace
}  // namespace acp::policy

namespace acp::policy {
namespace {

TEST(PolicyInsideRules, PathMethodAndMcpRulesAreFoundByHostAndPort) {
  auto p = Policy::parse(R"(default: ask
rules:
  - match: { host: "api.example.com" }
    action: allow
  - match: { host: "*.internal", port: [8080], path: "/admin/*" }
    action: deny
  - match: { host: "git.example.com", method: DELETE }
    action: deny
  - match: { host: "any.example.com", path: "*", method: "*" }
    action: allow
  - match: { kind: mcp, server: "mcp.example.com", tool: delete_* }
    action: deny
)",
                         "policy.yml");
  ASSERT_TRUE(p.ok()) << p.error().message();
  using Pair = std::pair<bool, bool>;
  EXPECT_EQ(p->inside_rules("api.example.com", 443), Pair(false, false));
  EXPECT_EQ(p->inside_rules("a.internal", 8080), Pair(true, false));
  EXPECT_EQ(p->inside_rules("A.Internal.", 8080), Pair(true, false));
  EXPECT_EQ(p->inside_rules("a.internal", 8081), Pair(false, false));
  EXPECT_EQ(p->inside_rules("git.example.com", 80), Pair(true, false));
  EXPECT_EQ(p->inside_rules("any.example.com", 80), Pair(false, false));  // stars read nothing
  EXPECT_EQ(p->inside_rules("mcp.example.com", 3000), Pair(false, true));
  // The proxy gets the answer with every http decision.
  Action connect;
  connect.host = "a.internal";
  connect.port = 8080;
  connect.method = "CONNECT";
  auto d = p->decide(connect);
  EXPECT_TRUE(d.inside_path);
  EXPECT_FALSE(d.inside_mcp);
  connect.host = "mcp.example.com";
  d = p->decide(connect);
  EXPECT_FALSE(d.inside_path);
  EXPECT_TRUE(d.inside_mcp);

  // Without a host or server, a rule applies everywhere.
  auto all = Policy::parse(R"(rules:
  - match: { path: "/admin/*" }
    action: deny
  - match: { tool: delete_file }
    action: deny
)",
                           "policy.yml");
  ASSERT_TRUE(all.ok()) << all.error().message();
  EXPECT_EQ(all->inside_rules("anything.example", 1), Pair(true, true));
}

}  // namespace
}  // namespace acp::policy
