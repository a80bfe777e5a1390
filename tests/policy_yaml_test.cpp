// The policy YAML reader (libyaml): the trees the loader validates, lines included, and the
// texts it refuses.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "acp/proxy/policy.hpp"
#include "acp/proxy/policy_yaml.hpp"

namespace acp::policy::yaml {
namespace {

// {key value ...}, [item ...], 'plain' or "quoted" scalars, each node @its line.
std::string dump(const Document& d, uint32_t i) {
  const Node& n = d.nodes[i];
  std::string line =
      !(n.kind == NodeKind::Scalar && n.text.empty()) ? "@" + std::to_string(n.line) : "";
  if (n.kind == NodeKind::Scalar)
    return (n.plain ? "'" : "\"") + std::string(n.text) + (n.plain ? "'" : "\"") + line;
  std::string out = (n.kind == NodeKind::Mapping ? "{" : "[") + line;
  for (uint32_t c = n.first; c != kNone; c = d.nodes[c].next) out += " " + dump(d, c);
  return out + (n.kind == NodeKind::Mapping ? " }" : " ]");
}

std::string tree(const std::string& text) {
  auto d = parse(text, "t.yml");
  if (!d.ok()) return "error: " + d.error().message();
  return d->nodes.empty() ? "empty" : dump(*d, 0);
}

std::string read(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(PolicyYaml, UpstreamFilesAndTheBuiltInDefaultRead) {
  for (const char* name : {"default", "development", "openclaw", "strict"}) {
    auto d = parse(read(std::string(ACP_SOURCE_DIR) + "/compat/upstream-policies/" + name + ".yml"),
                   name);
    ASSERT_TRUE(d.ok()) << name << ": " << d.error().message();
    EXPECT_GT(d->nodes.size(), 10u) << name;
  }
  EXPECT_TRUE(parse(std::string(Policy::builtin_default_text()), "builtin").ok());
}

TEST(PolicyYaml, CommonFormsReadAsTreesWithLines) {
  EXPECT_EQ(tree("a: b\n"), "{@1 'a'@1 'b'@1 }");
  EXPECT_EQ(tree("a: b # comment\nc: 'it''s'\nd: \"q\\\"x\\\\y\"\n"),
            "{@1 'a'@1 'b'@1 'c'@2 \"it's\"@2 'd'@3 \"q\"x\\y\"@3 }");
  EXPECT_EQ(tree("a:\n- x\n- y\nb: [1, 2, 'three']\n"),
            "{@1 'a'@1 [@2 'x'@2 'y'@3 ] 'b'@4 [@4 '1'@4 '2'@4 \"three\"@4 ] }");
  EXPECT_EQ(
      tree("rules:\n  - match:\n      host: a.example\n    action: ask\n"),
      "{@1 'rules'@1 [@2 {@2 'match'@2 {@3 'host'@3 'a.example'@3 } 'action'@4 'ask'@4 } ] }");
  EXPECT_EQ(tree("a: {b: c, d: \"e f\"}\nk:\n"),
            "{@1 'a'@1 {@1 'b'@1 'c'@1 'd'@1 \"e f\"@1 } 'k'@2 '' }");
  EXPECT_EQ(tree("a: |\n  text\n"), "{@1 'a'@1 \"text\n\"@1 }");
  EXPECT_EQ(tree(""), "empty");
}

TEST(PolicyYaml, TabsInIndentationAreNamedInTheError) {
  EXPECT_EQ(tree("a:\n\tb: c\n"),
            "error: t.yml:2: tab character in indentation; YAML indents with spaces only");
}

// Found by fuzz_policy when a second, hand-written reader stood beside libyaml: a byte that is
// not UTF-8 (or a control character) in a comment must fail the load, and NEL, LS and PS end
// a comment, so what follows them is read as YAML.
TEST(PolicyYaml, UnreadableCharactersFailAndLineBreaksInCommentsEndThem) {
  for (const char* text : {"# auto-approv\xe2"
                           "ed.\ndefault: ask\n",
                           "# \xc0\xaf\ndefault: ask\n", "# \xed\xa0\x80\ndefault: ask\n",
                           "# \x01\ndefault: ask\n", "# \xc2\x80\ndefault: ask\n"}) {
    EXPECT_FALSE(parse(text, "t.yml").ok()) << text;
    EXPECT_FALSE(Policy::parse(text, "t.yml").ok()) << text;
  }
  for (const char* text :
       {"default: ask # x\xc2\x85rules: []\n", "default: ask # x\xe2\x80\xa8rules: []\n",
        "default: ask # x\xe2\x80\xa9rules: []\n"})
    EXPECT_NE(tree(text).find("'rules'"), std::string::npos) << tree(text);
  EXPECT_EQ(tree("# caf\xc3\xa9 \xe2\x80\x94 \xf0\x9f\x98\x80\ndefault: ask\n"),
            "{@2 'default'@2 'ask'@2 }");
}

}  // namespace
}  // namespace acp::policy::yaml
