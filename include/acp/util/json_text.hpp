// JSON text from outside the process (a webhook's reply, the control socket, the audit log,
// the API server, a session record): parsed in one way everywhere. nlohmann's lexer takes a
// NUL byte for the end of input, so `{"approved":false}\0{"approved":true}` would read as the
// first object while another reader sees more; an audit line could hide bytes behind a NUL
// that the hash never covers. JSON text never holds a raw NUL (inside a string it is written
// \u0000), so text with one is not JSON: it comes back discarded, as any other invalid text.
#pragma once

#include <nlohmann/json.hpp>
#include <string_view>

namespace acp::util {

// The value, or a discarded value (is_discarded()) when `text` is not one JSON text. Never
// throws.
inline nlohmann::json parse_json(std::string_view text) {
  if (text.find('\0') != std::string_view::npos)
    return nlohmann::json(nlohmann::json::value_t::discarded);
  return nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
}

}  // namespace acp::util
