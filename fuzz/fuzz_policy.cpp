// Fuzz target: the policy loader from bytes (proxy/policy/): the YAML reader (libyaml) and the
// strict loader. Every error must say something; a policy that loads is then asked a few
// decisions and explained, as `acp policy explain` would.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "acp/proxy/policy.hpp"

using namespace acp;
using namespace acp::policy;

namespace {

[[noreturn]] void finding(const char* what, std::string_view text) {
  std::fprintf(stderr, "fuzz_policy: %s\n--- input\n%.*s\n", what, static_cast<int>(text.size()),
               text.data());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 * 1024) return 0;  // larger inputs only slow the search down
  std::string_view text(reinterpret_cast<const char*>(data), size);

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
