// Fuzz target: the policy loader from bytes (proxy/policy/). The text goes through both YAML
// readers and the strict loader. The fast reader promises to read exactly as libyaml does, or
// to give up: whenever it accepts a document that libyaml refuses or reads differently, that is
// a finding (a policy whose meaning depends on which reader ran). A policy that loads is then
// asked a few decisions and explained, as `acp policy explain` would.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "acp/proxy/policy.hpp"
#include "acp/proxy/policy_yaml.hpp"

using namespace acp;
using namespace acp::policy;

namespace {

// The tree as text, lines included (as tests/policy_yaml_test.cpp compares it).
std::string dump(const yaml::Document& d, uint32_t i) {
  const yaml::Node& n = d.nodes[i];
  std::string line =
      !(n.kind == yaml::NodeKind::Scalar && n.text.empty()) ? "@" + std::to_string(n.line) : "";
  if (n.kind == yaml::NodeKind::Scalar)
    return (n.plain ? "'" : "\"") + std::string(n.text) + (n.plain ? "'" : "\"") + line;
  std::string out = (n.kind == yaml::NodeKind::Mapping ? "{" : "[") + line;
  for (uint32_t c = n.first; c != yaml::kNone; c = d.nodes[c].next) out += dump(d, c) + " ";
  return out + (n.kind == yaml::NodeKind::Mapping ? "}" : "]");
}

[[noreturn]] void finding(const char* what, std::string_view text, const std::string& a = {},
                          const std::string& b = {}) {
  std::fprintf(stderr, "fuzz_policy: %s\n--- input\n%.*s\n--- fast\n%s\n--- libyaml\n%s\n", what,
               static_cast<int>(text.size()), text.data(), a.c_str(), b.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 * 1024) return 0;  // larger inputs only slow the search down
  std::string_view text(reinterpret_cast<const char*>(data), size);

  auto fast = yaml::parse_fast(text);
  auto slow = yaml::parse_libyaml(text, "fuzz.yml");
  if (fast) {
    if (!slow.ok())
      finding("fast path accepted what libyaml refuses", text, {}, slow.error().message());
    if (slow->nodes.empty()) finding("fast path read a document libyaml reads as empty", text);
    std::string a = dump(*fast, 0), b = dump(*slow, 0);
    if (a != b) finding("fast path and libyaml read different trees", text, a, b);
  }

  auto policy = Policy::parse(text, "fuzz.yml");
  if (!policy.ok()) {
    if (policy.error().message().empty()) finding("an error without a message", text);
    return 0;
  }
  (void)policy->shadowed_rules();
  for (size_t i = 0; i < policy->rule_count(); ++i) (void)policy->rule_text(i);
  for (const char* host : {"api.github.com", "example.com", "127.0.0.1", "::1", ""}) {
    Action a;
    a.kind = "http";
    a.host = host;
    a.port = 443;
    a.method = "CONNECT";
    auto d = policy->decide(a);
    if (d.rule_index >= static_cast<int>(policy->rule_count()))
      finding("rule index out of range", text);
    a.method = "GET";
    a.port = 80;
    a.path = "/a/b?c=d";
    (void)policy->decide(a);
  }
  Action exec;
  exec.kind = "exec";
  exec.name = "rm";
  exec.args = "-rf /";
  (void)policy->decide(exec);
  return 0;
}
