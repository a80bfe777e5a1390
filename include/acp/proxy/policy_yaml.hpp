// The small YAML document model the policy loader validates, built from libyaml's events
// (proxy/policy/yaml_libyaml.cpp). One parser: a hand-written fast path for 100k-host files
// was removed once the target became 1 s, which libyaml alone meets (docs/policy.md, Speed).
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "acp/util/result.hpp"

namespace acp::policy::yaml {

enum class NodeKind : uint8_t { Scalar, Sequence, Mapping };

inline constexpr uint32_t kNone = UINT32_MAX;

struct Node {
  NodeKind kind = NodeKind::Scalar;
  bool plain = true;       // scalar written without quotes: 443 is a number, ~ is null
  uint32_t line = 0;       // 1-based line where the node starts
  uint32_t first = kNone;  // first child; a mapping's children alternate key, value
  uint32_t next = kNone;   // next sibling
  std::string_view text;   // scalar text, decoded
};

// Scalar texts point into the parsed input or into `owned`; keep the input alive while using
// the document.
struct Document {
  std::vector<Node> nodes;  // nodes[0] is the root; empty for an empty document
  std::deque<std::string> owned;
};

// Errors read "SOURCE:LINE: message".
Result<Document> parse(std::string_view text, const std::string& source);

}  // namespace acp::policy::yaml
