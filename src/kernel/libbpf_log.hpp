// libbpf prints warnings (and verifier logs) to stderr by default. Library code must not
// log, so every entry point into libbpf calls this first: messages are dropped unless
// ACP_DEBUG is set in the environment, then they go to stderr.
#pragma once

namespace acp::kernel::detail {
void quiet_libbpf_once();
}  // namespace acp::kernel::detail
