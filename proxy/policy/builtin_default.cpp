// The built-in policy: upstream ACP's default.yml, used when no --policy is given. One change
// from upstream: the two `rm -rf /` deny rules come before `rm: ask`, where upstream's order
// made them unreachable (first match wins). HTTP rules are upstream's, unchanged.
#include <cstdlib>

#include "acp/proxy/policy.hpp"

namespace acp::policy {
namespace {

constexpr std::string_view kBuiltin = R"yaml(# ACP built-in policy (upstream default.yml)
# Ask for dangerous actions, allow reads, deny destructive patterns.

default: ask

wrap:
  - gh
  - git
  - curl
  - wget
  - ssh
  - psql
  - mysql
  - rm
  - rmdir
  - python
  - node
  - pip
  - npm

rules:
  # --- DENY: never allow (before `rm: ask`, so that they apply) ---
  - match: { name: "rm", args: "-rf /*" }
    action: deny
  - match: { name: "rm", args: "-rf /" }
    action: deny

  # --- ALLOW: safe read operations ---
  - match: { name: "cat" }
    action: allow
  - match: { name: "ls" }
    action: allow
  - match: { name: "head" }
    action: allow
  - match: { name: "tail" }
    action: allow
  - match: { name: "grep" }
    action: allow
  - match: { name: "find" }
    action: allow
  - match: { name: "gh", args: "pr list*" }
    action: allow
  - match: { name: "gh", args: "issue list*" }
    action: allow
  - match: { name: "git", args: "status*" }
    action: allow
  - match: { name: "git", args: "log*" }
    action: allow
  - match: { name: "git", args: "diff*" }
    action: allow

  # --- ALLOW: common safe HTTP destinations ---
  - match: { kind: http, host: "*.anthropic.com" }
    action: allow
  - match: { kind: http, host: "*.openai.com" }
    action: allow
  - match: { kind: http, host: "*.googleapis.com" }
    action: allow
  - match: { kind: http, host: "api.github.com" }
    action: allow

  # --- ASK: needs human approval ---
  - match: { name: "gh", args: "commit*" }
    action: ask
    timeout: 120
  - match: { name: "gh", args: "pr create*" }
    action: ask
    timeout: 120
  - match: { name: "git", args: "push*" }
    action: ask
    timeout: 120
  - match: { name: "curl" }
    action: ask
  - match: { name: "rm" }
    action: ask
  - match: { name: "psql" }
    action: ask
)yaml";

}  // namespace

std::string_view Policy::builtin_default_text() {
  return kBuiltin;
}

Policy Policy::builtin_default() {
  auto p = parse(kBuiltin, "<built-in>");
  // The text is fixed and covered by tests; failing here is a build defect, not a user error.
  if (!p) std::abort();
  return std::move(p).value();
}

}  // namespace acp::policy
