// Policy::parse: turns the YAML document into rules, strictly. Every error names the source,
// the line, the value and what was expected.
#include <algorithm>
#include <charconv>

#include "acp/proxy/policy.hpp"
#include "acp/proxy/policy_yaml.hpp"
#include "acp/proxy/request_target.hpp"
#include "policy_data.hpp"

namespace acp::policy {
namespace {

using yaml::Document;
using yaml::kNone;
using yaml::Node;
using yaml::NodeKind;
using namespace std::string_view_literals;

constexpr uint32_t kMaxTimeout = 86400;

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t prev = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cur = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] != b[j - 1] ? 1 : 0)});
      prev = cur;
    }
  }
  return row[b.size()];
}

// "(expected kind, host or method; did you mean 'host'?)"
std::string expected_list(std::string_view got, std::initializer_list<const char*> names) {
  std::string out = "(expected ";
  size_t i = 0;
  const char* best = nullptr;
  size_t best_d = 3;
  for (const char* n : names) {
    if (i > 0) out += (i + 1 == names.size()) ? " or " : ", ";
    out += n;
    ++i;
    size_t d = edit_distance(got, n);
    if (d < best_d && d < std::string_view(n).size()) {
      best_d = d;
      best = n;
    }
  }
  if (best) out += std::string("; did you mean '") + best + "'?";
  return out + ")";
}

bool is_null(const Node& n) {
  return n.kind == NodeKind::Scalar && n.plain &&
         (n.text.empty() || n.text == "~" || n.text == "null" || n.text == "Null" ||
          n.text == "NULL");
}

const char* describe(const Node& n) {
  if (n.kind == NodeKind::Sequence) return "a list";
  if (n.kind == NodeKind::Mapping) return "a mapping";
  if (is_null(n)) return "empty";
  return "a value";
}

bool has_glob(std::string_view s) {
  return s.find_first_of("*?") != std::string_view::npos;
}

class Loader {
 public:
  Loader(const Document& doc, const std::string& source, PolicyData& out)
      : doc_(doc), src_(source), out_(out) {}

  Status run() {
    if (doc_.nodes.empty()) return make_error(src_ + ": empty policy (expected default, rules)");
    const Node& root = doc_.nodes[0];
    if (root.kind != NodeKind::Mapping)
      return err(root.line, std::string("a policy is a mapping with default, wrap and rules, "
                                        "not ") +
                                describe(root));
    bool seen[3] = {false, false, false};
    for (uint32_t k = root.first; k != kNone;) {
      const Node& key = doc_.nodes[k];
      uint32_t v = key.next;
      const Node& value = doc_.nodes[v];
      k = value.next;
      if (key.kind != NodeKind::Scalar) return err(key.line, "keys must be plain names");
      int which = key.text == "default"sv ? 0
                  : key.text == "wrap"sv  ? 1
                  : key.text == "rules"sv ? 2
                                          : -1;
      if (which < 0)
        return err(key.line, "unknown field '" + std::string(key.text) + "' at the top level " +
                                 expected_list(key.text, {"default", "wrap", "rules"}));
      if (seen[which]) return err(key.line, "duplicate field '" + std::string(key.text) + "'");
      seen[which] = true;
      Status s = which == 0   ? verdict(key, value, "default", out_.default_verdict)
                 : which == 1 ? wrap(key, value)
                              : rules(key, value);
      if (!s) return s;
    }
    return {};
  }

 private:
  Status err(uint32_t line, const std::string& msg) {
    return make_error(src_ + ":" + std::to_string(line) + ": " + msg);
  }
  // Errors about a value point at the value, or at its key when the value is empty.
  uint32_t line_of(const Node& key, const Node& value) const {
    return is_null(value) ? key.line : value.line;
  }

  Status text(const Node& key, const Node& value, const std::string& what, std::string_view& out) {
    if (value.kind != NodeKind::Scalar || is_null(value))
      return err(line_of(key, value), "'" + what + "' must be a string, not " + describe(value));
    out = value.text;
    return {};
  }

  Status verdict(const Node& key, const Node& value, const std::string& what, Verdict& out) {
    std::string_view t;
    if (Status s = text(key, value, what, t); !s) return s;
    if (t == "allow")
      out = Verdict::Allow;
    else if (t == "ask")
      out = Verdict::Ask;
    else if (t == "deny")
      out = Verdict::Deny;
    else
      return err(value.line,
                 "unknown " + what + " '" + std::string(t) + "' (expected allow, ask or deny)");
    return {};
  }

  Status number(const Node& key, const Node& value, const std::string& what, uint32_t lo,
                uint32_t hi, uint32_t& out) {
    const uint32_t line = line_of(key, value);
    if (value.kind != NodeKind::Scalar || is_null(value) || !value.plain)
      return err(line, "'" + what + "' must be a number, not " +
                           (value.kind == NodeKind::Scalar && !is_null(value)
                                ? "the string \"" + std::string(value.text) + "\""
                                : std::string(describe(value))));
    uint64_t n = 0;
    auto [p, ec] = std::from_chars(value.text.data(), value.text.data() + value.text.size(), n);
    if (ec != std::errc() || p != value.text.data() + value.text.size())
      return err(line,
                 "'" + what + "' must be a whole number, not '" + std::string(value.text) + "'");
    if (n < lo || n > hi)
      return err(line, "'" + what + "' " + std::string(value.text) + " is out of range (" +
                           std::to_string(lo) + " to " + std::to_string(hi) + ")");
    out = static_cast<uint32_t>(n);
    return {};
  }

  Status wrap(const Node& key, const Node& value) {
    if (is_null(value)) return {};
    if (value.kind != NodeKind::Sequence)
      return err(line_of(key, value),
                 "'wrap' must be a list of command names, not " + std::string(describe(value)));
    for (uint32_t i = value.first; i != kNone; i = doc_.nodes[i].next) {
      std::string_view t;
      if (Status s = text(key, doc_.nodes[i], "wrap entry", t); !s) return s;
      out_.wrap.emplace_back(t);
    }
    return {};
  }

  Status rules(const Node& key, const Node& value) {
    if (is_null(value)) return {};
    if (value.kind != NodeKind::Sequence)
      return err(line_of(key, value),
                 "'rules' must be a list of rules, not " + std::string(describe(value)));
    size_t count = 0;
    for (uint32_t i = value.first; i != kNone; i = doc_.nodes[i].next) ++count;
    out_.rules.reserve(count);
    out_.pool.reserve(count * 24);
    for (uint32_t i = value.first; i != kNone; i = doc_.nodes[i].next) {
      if (Status s = rule(doc_.nodes[i]); !s) return s;
    }
    return {};
  }

  Status rule(const Node& item) {
    const size_t rule_no = out_.rules.size() + 1;
    if (item.kind != NodeKind::Mapping)
      return err(item.line, "rule " + std::to_string(rule_no) +
                                " must be a mapping with match and action, not " + describe(item));
    Rule r;
    r.line = item.line;
    bool seen[3] = {false, false, false};
    for (uint32_t k = item.first; k != kNone;) {
      const Node& key = doc_.nodes[k];
      const Node& value = doc_.nodes[key.next];
      k = value.next;
      int which = key.text == "match"sv     ? 0
                  : key.text == "action"sv  ? 1
                  : key.text == "timeout"sv ? 2
                                            : -1;
      if (key.kind != NodeKind::Scalar || which < 0)
        return err(key.line, "unknown field '" + std::string(key.text) + "' in rule " +
                                 std::to_string(rule_no) + " " +
                                 expected_list(key.text, {"match", "action", "timeout"}));
      if (seen[which]) return err(key.line, "duplicate field '" + std::string(key.text) + "'");
      seen[which] = true;
      Status s = which == 0   ? match(key, value, r)
                 : which == 1 ? verdict(key, value, "action", r.action)
                              : number(key, value, "timeout", 1, kMaxTimeout, r.timeout_s);
      if (!s) return s;
    }
    if (!seen[1])
      return err(item.line, "rule " + std::to_string(rule_no) +
                                " has no action (expected action: allow, ask or deny)");
    out_.rules.push_back(std::move(r));
    return {};
  }

  Status match(const Node& mkey, const Node& m, Rule& r) {
    if (is_null(m)) return {};  // as upstream: no criteria matches everything
    if (m.kind != NodeKind::Mapping)
      return err(line_of(mkey, m),
                 "'match' must be a mapping such as { kind: http, host: "
                 "\"*.example.com\" }, not " +
                     std::string(describe(m)));
    bool port_seen = false;
    uint32_t lines[kFieldCount + 1] = {};  // where each field (and, last, port) was written
    for (uint32_t k = m.first; k != kNone;) {
      const Node& key = doc_.nodes[k];
      const Node& value = doc_.nodes[key.next];
      k = value.next;
      if (key.kind == NodeKind::Scalar && key.text == "port"sv) {
        if (port_seen) return err(key.line, "duplicate field 'port'");
        port_seen = true;
        lines[kFieldCount] = key.line;
        if (Status s = ports(key, value, r); !s) return s;
        continue;
      }
      int f = -1;
      for (int i = 0; i < kFieldCount; ++i)
        if (key.kind == NodeKind::Scalar && key.text == kFieldNames[i]) f = i;
      if (f < 0)
        return err(key.line, "unknown field '" + std::string(key.text) + "' in match " +
                                 expected_list(key.text, {"kind", "host", "method", "name", "args",
                                                          "port", "path", "tool", "server"}));
      const Field field = static_cast<Field>(f);
      if (r.has_field(field))
        return err(key.line, "duplicate field '" + std::string(key.text) + "'");
      std::string_view t;
      if (Status s = text(key, value, std::string(kFieldNames[f]), t); !s) return s;
      std::string& pat = scratch_;
      pat.assign(t);
      if (field == kKind) {
        if (pat != "http" && pat != "shell" && pat != "mcp")
          return err(value.line, "unknown kind '" + pat + "' (expected http, shell or mcp)");
      } else if (field == kHost) {
        if (Status s = host_pattern(value, pat); !s) return s;
      } else if (field == kPath) {
        if (Status s = path_pattern(value, pat); !s) return s;
      } else if (field == kMethod) {
        for (char& c : pat)
          if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
      }
      if (pat.empty())
        return err(value.line, "'" + std::string(kFieldNames[f]) +
                                   "' is empty; leave the field out to match anything");
      lines[f] = key.line;
      r.has |= static_cast<uint16_t>(1u << f);
      if (!has_glob(pat)) r.literal |= static_cast<uint16_t>(1u << f);
      r.pat[f] = Span{static_cast<uint32_t>(out_.pool.size()), static_cast<uint32_t>(pat.size())};
      out_.pool += pat;
    }
    return kind_fields(r, lines);
  }

  // A field that the rule's kind never has would make the rule silently never match: an MCP
  // tool call has server, tool and args; a network request or a command has no tool or server.
  Status kind_fields(const Rule& r, const uint32_t (&lines)[kFieldCount + 1]) {
    if (!r.has_field(kKind)) return {};
    const std::string_view kind = out_.pat(r, kKind);
    if (kind == "mcp"sv) {
      for (Field f : {kHost, kMethod, kPath, kName}) {
        if (r.has_field(f))
          return err(lines[f], "'" + std::string(kFieldNames[f]) +
                                   "' never matches kind: mcp (an MCP tool call has server, tool "
                                   "and args; the server is the MCP server's host or command)");
      }
      if (r.ports.len != 0)
        return err(lines[kFieldCount],
                   "'port' never matches kind: mcp (an MCP tool call has server, tool and args)");
      return {};
    }
    for (Field f : {kTool, kServer}) {
      if (r.has_field(f))
        return err(lines[f], "'" + std::string(kFieldNames[f]) +
                                 "' only matches kind: mcp, not kind: " + std::string(kind));
    }
    return {};
  }

  Status host_pattern(const Node& value, std::string& pat) {
    size_t colons = std::count(pat.begin(), pat.end(), ':');
    size_t close = pat.find(']');
    bool port_like = false;
    if (pat.size() > 1 && pat.front() == '[') {
      port_like = close != std::string::npos && close + 1 < pat.size();
    } else if (colons == 1) {
      std::string_view after = std::string_view(pat).substr(pat.find(':') + 1);
      port_like = !after.empty() && std::all_of(after.begin(), after.end(),
                                                [](char c) { return c >= '0' && c <= '9'; });
    }
    if (port_like)
      return err(value.line,
                 "host '" + pat + "' includes a port; write the port apart, e.g. port: 443");
    if (pat.empty())
      return err(value.line, "'host' is empty; leave the field out to match anything");
    if (!has_glob(pat)) {
      // A literal host means one host however it is spelled: "127.1", "[::ffff:127.0.0.1]" and
      // "0x7f000001" are 127.0.0.1, as the proxy writes every request's host.
      auto h = proxy::canonical_host(pat);
      if (!h) return err(value.line, h.error().message());
      pat = std::move(*h);
      return {};
    }
    normalize_host_in_place(pat);
    // Non-ASCII labels of a glob in their IDNA spelling, so "*.bücher.de" matches what comes.
    if (std::any_of(pat.begin(), pat.end(), [](char c) { return c & 0x80; })) {
      std::string out;
      for (size_t i = 0; i <= pat.size();) {
        size_t dot = std::min(pat.find('.', i), pat.size());
        std::string_view label = std::string_view(pat).substr(i, dot - i);
        if (std::any_of(label.begin(), label.end(), [](char c) { return c & 0x80; })) {
          if (has_glob(label))
            return err(value.line, "host '" + pat +
                                       "': a label with '*' or '?' must be ASCII; write the "
                                       "name's xn-- form");
          auto h = proxy::canonical_host(label);
          if (!h) return err(value.line, h.error().message());
          out += *h;
        } else {
          out += label;
        }
        if (dot < pat.size()) out += '.';
        i = dot + 1;
      }
      pat = std::move(out);
    }
    return {};
  }

  // A literal path is compared with the request's canonical path, so it is written in that
  // form here ("/%61dmin/./x" is "/admin/x"); one that has none is an error. Globs are kept as
  // written; `acp policy check` warns when one is not canonical (Policy::path_warnings).
  Status path_pattern(const Node& value, std::string& pat) {
    if (pat.empty() || has_glob(pat)) return {};
    auto p = proxy::canonical_path(pat);
    if (!p)
      return err(value.line, "path '" + pat + "' never matches a request: " + p.error().message());
    pat = std::move(*p);
    return {};
  }

  Status ports(const Node& key, const Node& value, Rule& r) {
    uint32_t p = 0;
    r.ports.off = static_cast<uint32_t>(out_.port_pool.size());
    if (value.kind == NodeKind::Sequence) {
      if (value.first == kNone) return err(value.line, "'port' is an empty list");
      for (uint32_t i = value.first; i != kNone; i = doc_.nodes[i].next) {
        if (Status s = number(key, doc_.nodes[i], "port", 1, 65535, p); !s) return s;
        out_.port_pool.push_back(static_cast<uint16_t>(p));
        r.ports.len++;
      }
      return {};
    }
    if (Status s = number(key, value, "port", 1, 65535, p); !s) return s;
    out_.port_pool.push_back(static_cast<uint16_t>(p));
    r.ports.len = 1;
    return {};
  }

  const Document& doc_;
  const std::string& src_;
  PolicyData& out_;
  std::string scratch_;
};

void build_indexes(PolicyData& d) {
  const uint32_t n = static_cast<uint32_t>(d.rules.size());
  d.next_in_bucket.assign(n, kNoRule);
  // Which index each rule goes to: 1 exact host, 2 `*.suffix` host, 0 the ordered scan.
  std::vector<uint8_t> where(n, 0);
  size_t exact = 0, suffix = 0;
  for (uint32_t i = 0; i < n; ++i) {
    const Rule& r = d.rules[i];
    if (!r.has_field(kHost)) continue;
    const std::string_view host = d.pat(r, kHost);
    if (r.is_literal(kHost)) {
      where[i] = 1;
      ++exact;
    } else if (host.size() > 2 && host[0] == '*' && host[1] == '.' && !has_glob(host.substr(1))) {
      where[i] = 2;
      ++suffix;
    }
  }
  d.exact_host.reset(exact);
  d.suffix_host.reset(suffix);
  // Chain tails (kept at each bucket head's slot), so buckets stay in file order.
  std::vector<uint32_t> tail(n, kNoRule);
  for (uint32_t i = 0; i < n; ++i) {
    if (where[i] == 0) {
      d.scan.push_back(i);
      continue;
    }
    const std::string_view host = d.pat(d.rules[i], kHost);
    uint32_t head = where[i] == 1 ? d.exact_host.insert(host, i)
                                  : d.suffix_host.insert(host.substr(1), i);  // ".example.com"
    if (head == i) {
      tail[i] = i;
    } else {
      d.next_in_bucket[tail[head]] = i;
      tail[head] = i;
    }
  }
}

}  // namespace

Result<Policy> Policy::parse(std::string_view text, const std::string& source_name) {
  auto doc = yaml::parse(text, source_name);
  if (!doc) return doc.error();
  auto data = std::make_shared<PolicyData>();
  data->source = source_name;
  if (Status s = Loader(*doc, source_name, *data).run(); !s) return s.error();
  build_indexes(*data);
  index_inside_rules(*data);
  return Policy(std::move(data));
}

}  // namespace acp::policy
