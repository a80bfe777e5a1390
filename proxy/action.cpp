#include "acp/proxy/action.hpp"

namespace acp {
const char* to_string(Verdict v) {
  switch (v) {
    case Verdict::Allow:
      return "allow";
    case Verdict::Deny:
      return "deny";
    case Verdict::Ask:
      return "ask";
  }
  return "deny";
}
}  // namespace acp
