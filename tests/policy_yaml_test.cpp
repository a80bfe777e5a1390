// The fast YAML path must read policy files exactly as libyaml does, and leave to libyaml
// whatever it does not know.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "acp/proxy/policy.hpp"
#include "acp/proxy/policy_yaml.hpp"

namespace acp::policy::yaml {
namespace {

std::string dump(const Document& d, uint32_t i, bool with_lines) {
  const Node& n = d.nodes[i];
  std::string line = with_lines && !(n.kind == NodeKind::Scalar && n.text.empty())
                         ? "@" + std::to_string(n.line)
                         : "";
  if (n.kind == NodeKind::Scalar)
    return (n.plain ? "'" : "\"") + std::string(n.text) + (n.plain ? "'" : "\"") + line;
  std::string out = (n.kind == NodeKind::Mapping ? "{" : "[") + line;
  for (uint32_t c = n.first; c != kNone; c = d.nodes[c].next) out += dump(d, c, with_lines) + " ";
  return out + (n.kind == NodeKind::Mapping ? "}" : "]");
}

void expect_same(const std::string& text) {
  auto fast = parse_fast(text);
  ASSERT_TRUE(fast.has_value()) << "fast path gave up on:\n" << text;
  auto slow = parse_libyaml(text, "t.yml");
  ASSERT_TRUE(slow.ok()) << slow.error().message();
  ASSERT_FALSE(slow->nodes.empty());
  EXPECT_EQ(dump(*fast, 0, true), dump(*slow, 0, true)) << text;
}

std::string read(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(PolicyYaml, FastPathMatchesLibyamlOnUpstreamFiles) {
  for (const char* name : {"default", "development", "openclaw", "strict"})
    expect_same(read(std::string(ACP_SOURCE_DIR) + "/compat/upstream-policies/" + name + ".yml"));
  expect_same(std::string(Policy::builtin_default_text()));
}

TEST(PolicyYaml, FastPathMatchesLibyamlOnCommonForms) {
  expect_same("a: b\n");
  expect_same("a: b # comment\nc: 'it''s'\nd: \"q\\\"x\\\\y\"\n");
  expect_same("a:\n- x\n- y\nb: [1, 2, 'three']\n");
  expect_same(
      "rules:\n  - match:\n      host: a.example\n      port: [80, 443]\n    action: ask\n"
      "    timeout: 30\n  - match: {}\n    action: deny\n");
  expect_same("a: {b: c, d: \"e f\", g: [h, i], }\nk:\n");
  expect_same("key with spaces: value with spaces and #hash\nurl: http://x/y\nip: 1.2.3.4\n");
  expect_same("- a: 1\n  b: 2\n-\n  c: 3\n- plain\n");
  expect_same("a:\n  b:\n    c: d\n  e: f\ng: h\n");
}

TEST(PolicyYaml, FastPathLeavesOtherFormsToLibyaml) {
  for (const char* text :
       {"a: &x 1\nb: *x\n", "a: !!str 1\n", "a: |\n  text\n", "a: >\n  text\n", "---\na: b\n",
        "a: b\n  c\n", "a: [1,\n  2]\n", "a: \"x\n  y\"\n", "a:\tb\n", "a: b\r\n", "a: -rf /\n",
        "a: \"\\u0041\"\n", "a: caf\xc3\xa9\n", "? a\n: b\n", "a: {b: c:d}\n", "",
        "# only a comment\n", "a: b: c\n", "- - a\n"})
    EXPECT_FALSE(parse_fast(text).has_value()) << text;
}

TEST(PolicyYaml, ParseUsesFastPathForPolicyFiles) {
  auto d = parse(read(std::string(ACP_SOURCE_DIR) + "/compat/upstream-policies/strict.yml"),
                 "strict.yml");
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->used_fast_path);
  d = parse("a: |\n  text\n", "t.yml");
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->used_fast_path);
  EXPECT_EQ(d->nodes[2].text, "text\n");
}

}  // namespace
}  // namespace acp::policy::yaml
