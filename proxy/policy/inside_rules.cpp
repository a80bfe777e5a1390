// Policy::inside_rules: could a rule that judges more than host and port apply to a host:port?
// The proxy asks it for every http Action: a CONNECT tunnel whose bytes it cannot read as HTTP,
// or an MCP body it cannot read, is refused where such a rule could decide (docs/security.md).
// And Policy::may_reach: could any request to a host be allowed (the session DNS's question).
#include "acp/proxy/policy.hpp"

#include <algorithm>

#include "policy_data.hpp"

namespace acp::policy {
namespace {

constexpr uint16_t bit(Field f) {
  return static_cast<uint16_t>(1u << f);
}

// A pattern of stars only matches every value: it reads nothing.
bool matches_all(std::string_view pattern) {
  return pattern.find_first_not_of('*') == std::string_view::npos;
}

bool reads_path(const PolicyData& d, const Rule& r) {
  return (r.has_field(kPath) && !matches_all(d.pat(r, kPath))) ||
         (r.has_field(kMethod) && !matches_all(d.pat(r, kMethod)));
}

// kind: mcp, or no kind and a field only tool calls have.
bool is_mcp(const PolicyData& d, const Rule& r) {
  if (r.has_field(kKind)) return d.pat(r, kKind) == "mcp";
  return (r.has & (bit(kTool) | bit(kServer) | bit(kArgs))) != 0;
}

bool is_http(const PolicyData& d, const Rule& r) {
  return !r.has_field(kKind) || d.pat(r, kKind) == "http";
}

bool field_matches(const PolicyData& d, const Rule& r, Field f, std::string_view value) {
  if (!r.has_field(f)) return true;
  return r.is_literal(f) ? d.pat(r, f) == value : glob_match(d.pat(r, f), value);
}

}  // namespace

void index_inside_rules(PolicyData& d) {
  d.inside.clear();
  for (uint32_t i = 0; i < d.rules.size(); ++i) {
    const Rule& r = d.rules[i];
    if ((is_http(d, r) && reads_path(d, r)) || is_mcp(d, r)) d.inside.push_back(i);
  }
}

std::pair<bool, bool> Policy::inside_rules(std::string_view host_in, uint16_t port) const {
  const PolicyData& d = *d_;
  const std::string host = normalize_host(host_in);
  bool path = false, mcp = false;
  for (uint32_t i : d.inside) {
    const Rule& r = d.rules[i];
    if (!mcp && is_mcp(d, r) && field_matches(d, r, kServer, host)) mcp = true;
    if (!path && is_http(d, r) && reads_path(d, r) && field_matches(d, r, kHost, host) &&
        (r.ports.len == 0 || std::find(d.ports_begin(r), d.ports_end(r), port) != d.ports_end(r)))
      path = true;
    if (path && mcp) break;
  }
  return {path, mcp};
}

bool Policy::may_reach(std::string_view host_in) const {
  const PolicyData& d = *d_;
  const std::string host = normalize_host(host_in);
  for (const Rule& r : d.rules) {
    if (!is_http(d, r) || !field_matches(d, r, kHost, host)) continue;
    if (r.action != Verdict::Deny) return true;
    // A deny of the host on every port that matches nothing else: nothing after it applies.
    if (r.ports.len == 0 && (r.has & ~(bit(kKind) | bit(kHost))) == 0) return false;
  }
  return d.default_verdict != Verdict::Deny;
}

}  // namespace acp::policy
