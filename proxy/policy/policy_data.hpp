// The parsed form of a policy: rules in file order plus the indexes that make decide() fast
// without changing which rule wins. Internal to proxy/policy/.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "acp/proxy/action.hpp"

namespace acp::policy {

// Match fields holding a pattern (port is a number list, kept apart).
enum Field : uint8_t { kKind, kHost, kMethod, kName, kArgs, kPath, kTool, kServer, kFieldCount };
inline constexpr const char* kFieldNames[kFieldCount] = {"kind", "host", "method", "name",
                                                         "args", "path", "tool",   "server"};

struct Rule {
  uint32_t line = 0;
  Verdict action = Verdict::Deny;
  uint32_t timeout_s = 0;  // 0: not given (120 s applies)
  uint16_t has = 0;        // bit per Field present in match
  uint16_t literal = 0;    // bit per Field whose pattern has no `*` or `?`
  std::string pat[kFieldCount];
  std::vector<uint16_t> ports;  // empty: any port

  bool has_field(Field f) const { return (has >> f) & 1u; }
  bool is_literal(Field f) const { return (literal >> f) & 1u; }
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

inline constexpr uint32_t kNoRule = UINT32_MAX;

struct PolicyData {
  std::string source;
  Verdict default_verdict = Verdict::Ask;
  std::vector<std::string> wrap;
  std::vector<Rule> rules;

  // Rules whose host is literal, by host; rules whose host is `*.<literal>`, by ".<literal>".
  // Each maps to the first such rule; next_in_bucket chains the rest in file order.
  std::unordered_map<std::string, uint32_t, StringHash, std::equal_to<>> exact_host;
  std::unordered_map<std::string, uint32_t, StringHash, std::equal_to<>> suffix_host;
  std::vector<uint32_t> next_in_bucket;
  std::vector<uint32_t> scan;  // every other rule, in file order
};

}  // namespace acp::policy
