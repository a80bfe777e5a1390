// Random ids and secrets from the kernel's generator (getrandom(2)). They fail closed: when
// the generator fails there is no id, never a predictable or all-zero one.
#pragma once

#include <cstddef>
#include <span>
#include <string>

#include "acp/util/result.hpp"

namespace acp::util {

// Fills `out` with random bytes, or fails (EINTR is retried; nothing else is).
Status random_bytes(std::span<unsigned char> out);

// 2 * `bytes` lowercase hex digits: request ids (4 bytes), session ids (6), tokens (32).
Result<std::string> random_hex(size_t bytes);

}  // namespace acp::util
