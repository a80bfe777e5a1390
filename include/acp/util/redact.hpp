// What of a URL may be shown where the agent may read it (acp's stderr, which it inherits, the
// world-readable session record, logs in its workspace): credentials ride in the user info
// (https://user:pass@host/) and in query values (?token=..., ?key=...), so those are hidden.
#pragma once

#include <string>
#include <string_view>

namespace acp::util {

// "https://…@hooks.example/x?key=…&v=…#…": the scheme, host, port, path and the query's
// parameter names as they are; user info, every query value and the fragment as "…".
std::string redact_url(std::string_view url);

}  // namespace acp::util
