// The policy engine: upstream ACP's YAML rules (`default`, `wrap`, `rules[].match`, `action`,
// `timeout`), first match wins, `*` and `?` globs anchored, plus `port`, `path`, `tool` and
// `server`. Loading is strict: unknown fields, actions, kinds and wrong types are errors that
// name the file and line. See docs/policy.md for the format and its differences from upstream.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "acp/proxy/action.hpp"
#include "acp/util/result.hpp"

namespace acp::policy {

// Anchored glob: `*` matches any run of characters (dots and slashes included, as upstream),
// `?` exactly one character (one UTF-8 sequence). No other special characters.
bool glob_match(std::string_view pattern, std::string_view text);

// Host names as the policy compares them: lowercase, no trailing dot, IPv6 without brackets.
std::string normalize_host(std::string_view host);

struct PolicyData;  // the parsed rules and their indexes (proxy/policy/policy_data.hpp)

class Policy {
 public:
  // Reads and parses FILE. When running as root, refuses a file not owned by root or writable
  // by group or others (unless the group is root), and the same for its directory.
  static Result<Policy> load_file(const std::string& path);
  // Parses policy text; `source_name` prefixes error messages ("policy.yml:12: ...").
  static Result<Policy> parse(std::string_view yaml, const std::string& source_name);
  // The policy used when none is given: upstream's default.yml (see docs/policy.md).
  static Policy builtin_default();
  static std::string_view builtin_default_text();

  // First matching rule, or the default. Normalizes the action's host and method itself.
  PolicyDecision decide(const Action& a) const;
  // Could a rule that reads inside a request apply to host:port (proxy/policy/inside_rules.cpp)?
  // {path, mcp}: an http rule naming a path or a method; a kind: mcp rule whose server matches
  // `host`. Where one could, what the proxy cannot read (a tunnel of unknown bytes, an MCP body
  // too large or ambiguous) is refused.
  std::pair<bool, bool> inside_rules(std::string_view host, uint16_t port) const;
  // Could any http request or CONNECT to `host`, on some port, be allowed or asked? False only
  // when every one is denied: a deny rule for the host on every port and path comes first, or
  // no allow or ask rule names it and the default is deny. The session's DNS answers NXDOMAIN
  // for such a name (dns_responder.hpp). Errs towards true (a later judgement still decides).
  bool may_reach(std::string_view host) const;

  std::string source() const;  // the file path, or "<built-in>"
  size_t rule_count() const;
  Verdict default_verdict() const;
  const std::vector<std::string>& wrap() const;  // upstream's shell-wrapper list, kept as read
  // Rules that can never decide because an earlier rule matches everything they match
  // ("policy.yml:73: rule 29 (deny) never applies: rule 25 (line 63) matches first").
  std::vector<std::string> shadowed_rules() const;
  // Path rules that do not do what they seem to: a glob path not in canonical form (requests
  // are matched in canonical form, so it may never match), and a deny or ask path rule whose
  // host an HTTPS CONNECT reaches without that rule (only --inspect-tls shows the path).
  std::vector<std::string> path_warnings() const;
  // "match: { kind: http, host: "*.x" }, action: allow" for rule `index` (0-based).
  std::string rule_text(size_t index) const;

 private:
  explicit Policy(std::shared_ptr<const PolicyData> d) : d_(std::move(d)) {}
  std::shared_ptr<const PolicyData> d_;
};

// Thread-safe holder for SIGHUP reload: readers take current() once per decision; reload()
// reads the file again and keeps the old policy (returning the error) when the new one fails.
class PolicyStore {
 public:
  explicit PolicyStore(Policy initial, std::optional<std::string> path);
  std::shared_ptr<const Policy> current() const;
  // Without a path (built-in policy) there is nothing to read: returns success, no change.
  Status reload();
  const std::optional<std::string>& path() const { return path_; }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const Policy> current_;
  std::optional<std::string> path_;
};

}  // namespace acp::policy
