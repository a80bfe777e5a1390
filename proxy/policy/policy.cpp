// Policy::decide and the read-only views of a loaded policy.
#include "acp/proxy/policy.hpp"

#include <algorithm>
#include <tuple>

#include "acp/proxy/request_target.hpp"
#include "policy_data.hpp"

namespace acp::policy {
namespace {

constexpr std::chrono::seconds kDefaultTimeout{120};

size_t utf8_len(unsigned char c) {
  if (c < 0xC0) return 1;  // ASCII or a stray continuation byte
  if (c < 0xE0) return 2;
  if (c < 0xF0) return 3;
  return 4;
}

void upper_ascii(std::string& s) {
  for (char& c : s)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
}

bool rule_matches(const PolicyData& d, const Rule& r, const Action& a, std::string_view host,
                  std::string_view method) {
  if (r.has == 0 && r.ports.len == 0) return true;
  auto field = [&](Field f, std::string_view value) {
    if (!r.has_field(f)) return true;
    return r.is_literal(f) ? d.pat(r, f) == value : glob_match(d.pat(r, f), value);
  };
  if (r.has_field(kKind) && d.pat(r, kKind) != a.kind) return false;
  if (!field(kHost, host)) return false;
  if (r.ports.len != 0 && std::find(d.ports_begin(r), d.ports_end(r), a.port) == d.ports_end(r))
    return false;
  return field(kMethod, method) && field(kPath, a.path) && field(kName, a.name) &&
         field(kArgs, a.args) && field(kTool, a.tool) && field(kServer, a.server);
}

}  // namespace

bool glob_match(std::string_view p, std::string_view s) {
  size_t pi = 0, si = 0;
  size_t star = std::string_view::npos, mark = 0;
  while (si < s.size()) {
    if (pi < p.size() && p[pi] == '*') {
      star = pi++;
      mark = si;
    } else if (pi < p.size() && p[pi] == '?') {
      ++pi;
      si = std::min(s.size(), si + utf8_len(static_cast<unsigned char>(s[si])));
    } else if (pi < p.size() && p[pi] == s[si]) {
      ++pi;
      ++si;
    } else if (star != std::string_view::npos) {
      pi = star + 1;
      si = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

void normalize_host_in_place(std::string& host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host.pop_back();
    host.erase(0, 1);
  }
  if (host.size() > 1 && host.back() == '.') host.pop_back();
  for (char& c : host)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
}

std::string normalize_host(std::string_view host) {
  // The proxy's canonical spelling (request_target.hpp), so `explain --host=127.1` and a rule
  // written "127.1" mean 127.0.0.1; what it refuses (never a request's host) is only tidied.
  if (auto h = proxy::canonical_host(host)) return std::move(*h);
  std::string out(host);
  normalize_host_in_place(out);
  return out;
}

PolicyDecision Policy::decide(const Action& a) const {
  const PolicyData& d = *d_;
  const std::string host = normalize_host(a.host);
  std::string method = a.method;
  upper_ascii(method);

  // The winner is the lowest-numbered matching rule. Each index lists rules in file order, so
  // the first match in each is that index's best; the minimum over indexes is the answer.
  uint32_t best = kNoRule;
  auto walk = [&](uint32_t r) {
    for (; r != kNoRule && r < best; r = d.next_in_bucket[r]) {
      if (rule_matches(d, d.rules[r], a, host, method)) {
        best = r;
        return;
      }
    }
  };
  if (!host.empty()) {
    walk(d.exact_host.find(host));
    if (!d.suffix_host.empty()) {
      for (size_t i = host.find('.'); i != std::string::npos; i = host.find('.', i + 1))
        walk(d.suffix_host.find(std::string_view(host).substr(i)));
    }
  }
  for (uint32_t r : d.scan) {
    if (r >= best) break;
    if (rule_matches(d, d.rules[r], a, host, method)) {
      best = r;
      break;
    }
  }

  PolicyDecision out;
  if (a.kind == "http") std::tie(out.inside_path, out.inside_mcp) = inside_rules(host, a.port);
  if (best == kNoRule) {
    out.verdict = d.default_verdict;
    out.timeout = kDefaultTimeout;
    out.rule_text = std::string("default: ") + to_string(d.default_verdict);
    return out;
  }
  const Rule& r = d.rules[best];
  out.verdict = r.action;
  out.rule_index = static_cast<int>(best);
  out.rule_line = static_cast<int>(r.line);
  out.rule_text = rule_text(best);
  out.timeout = r.timeout_s ? std::chrono::seconds(r.timeout_s) : kDefaultTimeout;
  out.host_named = r.has_field(kHost) && r.is_literal(kHost);
  return out;
}

std::string Policy::rule_text(size_t index) const {
  // Built in one buffer: this runs for every decision.
  const PolicyData& d = *d_;
  const Rule& r = d.rules.at(index);
  std::string out;
  out.reserve(64 + r.pat[kHost].len + r.pat[kPath].len + r.pat[kArgs].len);
  out += "match: {";
  bool first = true;
  auto key = [&](std::string_view name) {
    out += first ? " " : ", ";
    first = false;
    out += name;
    out += ": ";
  };
  auto quoted = [&](std::string_view v) {
    out.push_back('"');
    for (char c : v) {
      if (c == '"' || c == '\\') out.push_back('\\');
      out.push_back(c);
    }
    out.push_back('"');
  };
  if (r.has_field(kKind)) {
    key("kind");
    out += d.pat(r, kKind);
  }
  if (r.has_field(kHost)) {
    key("host");
    quoted(d.pat(r, kHost));
  }
  if (r.ports.len != 0) {
    key("port");
    if (r.ports.len > 1) out += "[";
    for (const uint16_t* it = d.ports_begin(r); it != d.ports_end(r); ++it) {
      if (it != d.ports_begin(r)) out += ", ";
      out += std::to_string(*it);
    }
    if (r.ports.len > 1) out += "]";
  }
  for (Field f : {kMethod, kPath, kName, kArgs, kTool, kServer}) {
    if (!r.has_field(f)) continue;
    key(kFieldNames[f]);
    quoted(d.pat(r, f));
  }
  out += first ? "}" : " }";
  out += ", action: ";
  out += to_string(r.action);
  if (r.timeout_s) {
    out += ", timeout: ";
    out += std::to_string(r.timeout_s);
  }
  return out;
}

namespace {

// Does every value that `b` accepts in field f also pass `a`? Conservative: false when unsure.
bool pattern_covers(const PolicyData& d, const Rule& a, const Rule& b, Field f) {
  if (!a.has_field(f)) return true;
  const std::string_view pa = d.pat(a, f);
  if (pa.find_first_not_of('*') == std::string_view::npos) return true;  // `*`: anything
  if (!b.has_field(f)) return false;
  const std::string_view pb = d.pat(b, f);
  if (pa == pb) return true;
  if (b.is_literal(f)) return glob_match(pa, pb);
  // "abc*" covers any pattern that starts with "abc".
  if (pa.back() == '*' && pa.find_first_of("*?") == pa.size() - 1)
    return pb.substr(0, pa.size() - 1) == pa.substr(0, pa.size() - 1);
  return false;
}

bool rule_covers(const PolicyData& d, const Rule& a, const Rule& b) {
  for (int f = 0; f < kFieldCount; ++f)
    if (!pattern_covers(d, a, b, static_cast<Field>(f))) return false;
  if (a.ports.len == 0) return true;
  if (b.ports.len == 0) return false;
  return std::all_of(d.ports_begin(b), d.ports_end(b), [&](uint16_t p) {
    return std::find(d.ports_begin(a), d.ports_end(a), p) != d.ports_end(a);
  });
}

}  // namespace

std::vector<std::string> Policy::shadowed_rules() const {
  const PolicyData& d = *d_;
  std::vector<std::string> out;
  // All pairs for ordinary policies; for huge ones only the unindexed rules can shadow
  // (host lists rarely repeat), which keeps `acp policy check` quick.
  const bool all_pairs = d.rules.size() <= 4000;
  for (size_t b = 0; b < d.rules.size(); ++b) {
    auto check = [&](size_t a) {
      if (a >= b || !rule_covers(d, d.rules[a], d.rules[b])) return false;
      const Rule& ra = d.rules[a];
      const Rule& rb = d.rules[b];
      std::string head = d.source + ":" + std::to_string(rb.line) + ": rule " +
                         std::to_string(b + 1) + " (" + to_string(rb.action) + ") ";
      std::string first = "rule " + std::to_string(a + 1) + " (line " + std::to_string(ra.line) +
                          ", " + to_string(ra.action) + ")";
      out.push_back(ra.action == rb.action
                        ? head + "is redundant: " + first + " already matches everything it matches"
                        : head + "never applies: " + first +
                              " matches everything it matches first");
      return true;
    };
    if (all_pairs) {
      for (size_t a = 0; a < b; ++a)
        if (check(a)) break;
    } else {
      for (uint32_t a : d.scan) {
        if (a >= b) break;
        if (check(a)) break;
      }
    }
  }
  return out;
}

std::vector<std::string> Policy::path_warnings() const {
  const PolicyData& d = *d_;
  std::vector<std::string> out;
  for (size_t i = 0; i < d.rules.size(); ++i) {
    const Rule& r = d.rules[i];
    if (!r.has_field(kPath)) continue;
    const std::string_view path = d.pat(r, kPath);
    const std::string head = d.source + ":" + std::to_string(r.line) + ": rule " +
                             std::to_string(i + 1) + " (" + to_string(r.action) + ") ";
    if (!r.is_literal(kPath) && path.find_first_not_of('*') != std::string_view::npos) {
      // '*' and '?' stand in for text; '?' is also the query's start, so the two parts are
      // checked as the proxy would canonicalize them.
      const std::string whole = path.front() == '/' ? std::string(path) : "/" + std::string(path);
      auto canon = proxy::canonical_path(whole);
      if (!canon || *canon != whole)
        out.push_back(head + "path \"" + std::string(path) +
                      "\" is not in canonical form, and requests are matched in canonical form (" +
                      (canon ? "\"" + *canon + "\"" : canon.error().message()) +
                      "): it may never match; see docs/policy.md, \"Canonical form\"");
    }
    if (r.action == Verdict::Allow) continue;
    // The tunnel that would carry this path over HTTPS: its verdict, with no path.
    Action a;
    a.kind = "http";
    a.method = "CONNECT";
    if (r.has_field(kHost)) {
      a.host = std::string(d.pat(r, kHost));
      for (char& c : a.host)
        if (c == '*' || c == '?') c = 'a';
      if (!a.host.empty() && a.host.front() == '.') a.host.insert(0, "a");
    } else {
      a.host = "example.com";
    }
    std::vector<uint16_t> ports{443};
    for (const uint16_t* p = d.ports_begin(r); p != d.ports_end(r); ++p)
      if (*p != 443) ports.push_back(*p);
    for (uint16_t port : ports) {
      a.port = port;
      const PolicyDecision dec = decide(a);
      if (dec.verdict == Verdict::Deny) continue;
      out.push_back(head + "matches paths, but a CONNECT to " + a.host + ":" +
                    std::to_string(port) + " is " + to_string(dec.verdict) + " (" +
                    (dec.rule_index < 0 ? std::string("the default")
                                        : "rule " + std::to_string(dec.rule_index + 1)) +
                    "): inside that HTTPS tunnel the path is seen only with --inspect-tls; deny "
                    "the CONNECT or run with --inspect-tls");
      break;
    }
  }
  return out;
}

std::string Policy::source() const {
  return d_->source;
}
size_t Policy::rule_count() const {
  return d_->rules.size();
}
Verdict Policy::default_verdict() const {
  return d_->default_verdict;
}
const std::vector<std::string>& Policy::wrap() const {
  return d_->wrap;
}

}  // namespace acp::policy
