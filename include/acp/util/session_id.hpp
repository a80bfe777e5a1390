// Session ids name a session's cgroup (<cgroup2>/acp/<id>), its pins (/sys/fs/bpf/acp/<id>)
// and its record (/run/acp/sessions/<id>.json). They come from getrandom(2) (util::random_hex,
// no id when it fails) and are checked before they touch a path, so an id read back from disk
// cannot walk out of those dirs.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "acp/util/result.hpp"

namespace acp {

// 12 lowercase hex digits; an error when the kernel's generator fails.
Result<std::string> new_session_id();
bool valid_session_id(std::string_view id);
// The 48 random bits of an id, stamped into every BPF event (acp_config.session_id).
uint64_t session_id_number(std::string_view id);

}  // namespace acp
