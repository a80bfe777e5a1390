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

// Found by fuzz_policy: a byte that is not UTF-8 (or a control character) in a comment was
// accepted by the fast path and refused by libyaml, so the same file loaded or failed
// depending on which reader ran.
TEST(PolicyYaml, FastPathLeavesUnreadableCharactersToLibyaml) {
  for (const char* text : {"# auto-approv\xe2"
                           "ed.\ndefault: ask\n",
                           "# \xc0\xaf\ndefault: ask\n", "# \xed\xa0\x80\ndefault: ask\n",
                           "# \x01\ndefault: ask\n", "# \xc2\x80\ndefault: ask\n"}) {
    EXPECT_FALSE(parse_fast(text).has_value()) << text;
    EXPECT_FALSE(parse_libyaml(text, "t.yml").ok()) << text;
    EXPECT_FALSE(Policy::parse(text, "t.yml").ok()) << text;
  }
  // NEL, LS and PS end a comment for libyaml: what follows them is YAML, not comment.
  for (const char* text :
       {"default: ask # x\xc2\x85rules: []\n", "default: ask # x\xe2\x80\xa8rules: []\n",
        "default: ask # x\xe2\x80\xa9rules: []\n", "default: ask # \xef\xbb\xbf\n"})
    EXPECT_FALSE(parse_fast(text).has_value()) << text;
  // Well-formed non-ASCII in comments stays on the fast path (the upstream files have some).
  expect_same("# caf\xc3\xa9 \xe2\x80\x94 \xf0\x9f\x98\x80\ndefault: ask\n");
}

// Policy-shaped documents built from random pieces: whenever the fast path accepts one, it
// must read it exactly as libyaml does; when libyaml rejects one, the fast path must too.
TEST(PolicyYaml, RandomPolicyShapesAgreeWithLibyaml) {
  const std::vector<std::string> scalars = {
      "a.example",  "\"*.x.org\"", "'*.y'",    "api.github.com", "443",   "GET",
      "\"a\\\"b\"", "'it''s'",     "x # note", "http://h/p",     "a b c", "\"\"",
      "~",          "\"[::1]\"",   "-rf",      "*.bad",          "a:b",   "é"};
  const std::vector<std::string> keys = {"host", "name", "\"args\"", "kind", "port", "'path'"};
  uint32_t seed = 12345;
  auto rnd = [&](size_t n) {
    seed = seed * 1103515245u + 12345u;
    return static_cast<size_t>((seed >> 8) % n);
  };
  int accepted = 0;
  for (int iter = 0; iter < 400; ++iter) {
    std::string y = rnd(2) ? "default: ask\n" : "# policy\ndefault: deny # why\n";
    y += rnd(3) ? "rules:\n" : "rules: # list\n";
    const std::string ind = rnd(2) ? "  " : "";
    for (size_t r = 0, n = 1 + rnd(4); r < n; ++r) {
      if (rnd(2)) {
        y += ind + "- match: {";
        for (size_t f = 0, m = rnd(3); f < m; ++f)
          y += (f ? ", " : " ") + keys[rnd(keys.size())] + ": " + scalars[rnd(scalars.size())];
        y += rnd(2) ? " }\n" : "}\n";
      } else {
        y += ind + "- match:\n";
        for (size_t f = 0, m = 1 + rnd(3); f < m; ++f)
          y += ind + "    " + keys[rnd(keys.size())] + ": " +
               (rnd(4) ? scalars[rnd(scalars.size())] : "[80, 443]") + "\n";
      }
      y += ind + "  action: " + scalars[rnd(scalars.size())] + "\n";
      if (rnd(3) == 0) y += ind + "  timeout: 30\n";
    }
    auto fast = parse_fast(y);
    auto slow = parse_libyaml(y, "t.yml");
    if (!slow.ok()) {
      EXPECT_FALSE(fast.has_value()) << "libyaml refused, fast path accepted:\n" << y;
      continue;
    }
    if (!fast) continue;
    ++accepted;
    EXPECT_EQ(dump(*fast, 0, true), dump(*slow, 0, true)) << y;
  }
  EXPECT_GT(accepted, 100);  // the fast path must actually be exercised
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
