// The parsed form of a policy: rules in file order plus the indexes that make decide() fast
// without changing which rule wins. Internal to proxy/policy/.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "acp/proxy/action.hpp"

namespace acp::policy {

// Match fields holding a pattern (port is a number list, kept apart).
enum Field : uint8_t { kKind, kHost, kMethod, kName, kArgs, kPath, kTool, kServer, kFieldCount };
inline constexpr std::string_view kFieldNames[kFieldCount] = {"kind", "host", "method", "name",
                                                              "args", "path", "tool",   "server"};

// Where a rule's pattern or port list sits in PolicyData's pools: rules stay small (a policy
// may hold 100k of them) and the loader makes no allocation per rule.
struct Span {
  uint32_t off = 0;
  uint32_t len = 0;
};

struct Rule {
  uint32_t line = 0;
  Verdict action = Verdict::Deny;
  uint32_t timeout_s = 0;  // 0: not given (120 s applies)
  uint16_t has = 0;        // bit per Field present in match
  uint16_t literal = 0;    // bit per Field whose pattern has no `*` or `?`
  Span pat[kFieldCount];   // into PolicyData::pool
  Span ports;              // into PolicyData::port_pool; empty: any port

  bool has_field(Field f) const { return (has >> f) & 1u; }
  bool is_literal(Field f) const { return (literal >> f) & 1u; }
};

inline constexpr uint32_t kNoRule = UINT32_MAX;

// Open-addressing map from a host (or ".suffix") to the first rule that names it. Sized once
// (the loader knows how many rules it holds), no allocation per entry: 100k entries load fast.
class HostIndex {
 public:
  void reset(size_t entries) {
    size_t cap = 16;
    while (cap < entries * 2) cap <<= 1;
    slots_.assign(entries ? cap : 0, Slot{});
    mask_ = cap - 1;
  }
  // Returns the rule already stored for `key`, or stores and returns `rule`.
  uint32_t insert(std::string_view key, uint32_t rule) {
    for (size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].rule == kNoRule) {
        slots_[i] = Slot{key, rule};
        return rule;
      }
      if (slots_[i].key == key) return slots_[i].rule;
    }
  }
  uint32_t find(std::string_view key) const {
    if (slots_.empty()) return kNoRule;
    for (size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].rule == kNoRule) return kNoRule;
      if (slots_[i].key == key) return slots_[i].rule;
    }
  }
  bool empty() const { return slots_.empty(); }

 private:
  struct Slot {
    std::string_view key;
    uint32_t rule = kNoRule;
  };
  static size_t hash(std::string_view s) { return std::hash<std::string_view>{}(s); }
  std::vector<Slot> slots_;
  size_t mask_ = 0;
};

struct PolicyData {
  std::string source;
  Verdict default_verdict = Verdict::Ask;
  std::vector<std::string> wrap;
  std::vector<Rule> rules;
  std::string pool;                 // every pattern, back to back
  std::vector<uint16_t> port_pool;  // every port list, back to back

  std::string_view pat(const Rule& r, Field f) const {
    return std::string_view(pool).substr(r.pat[f].off, r.pat[f].len);
  }
  const uint16_t* ports_begin(const Rule& r) const { return port_pool.data() + r.ports.off; }
  const uint16_t* ports_end(const Rule& r) const { return ports_begin(r) + r.ports.len; }

  // Rules whose host is literal, by host; rules whose host is `*.<literal>`, by ".<literal>".
  // Each maps to the first such rule; next_in_bucket chains the rest in file order. Keys point
  // into `pool`, which does not change once the indexes are built.
  HostIndex exact_host;
  HostIndex suffix_host;
  std::vector<uint32_t> next_in_bucket;
  std::vector<uint32_t> scan;  // every other rule, in file order
  // Rules that read inside a request (path, method, kind: mcp): what inside_rules() looks at.
  std::vector<uint32_t> inside;
};

// Fills PolicyData::inside (proxy/policy/inside_rules.cpp).
void index_inside_rules(PolicyData& d);

// normalize_host() without a copy: lowercase, no trailing dot, IPv6 without brackets.
void normalize_host_in_place(std::string& host);

}  // namespace acp::policy
