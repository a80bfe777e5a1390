#include "acp/util/session_id.hpp"

#include "acp/util/random_id.hpp"

namespace acp {

Result<std::string> new_session_id() {
  auto id = util::random_hex(6);
  if (!id) return make_error("cannot make a session id: " + id.error().message(), id.error().err);
  return id;
}

bool valid_session_id(std::string_view id) {
  if (id.size() != 12) return false;
  for (char c : id)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

uint64_t session_id_number(std::string_view id) {
  uint64_t v = 0;
  for (char c : id) v = (v << 4) | static_cast<uint64_t>(c <= '9' ? c - '0' : c - 'a' + 10);
  return v;
}

}  // namespace acp
