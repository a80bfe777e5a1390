// The preload backend's wiring: where libacp_preload.so is (the library itself is built by the
// acp_preload target, preload/), and what the agent's environment gets so that it loads it and
// lets through only the proxy: LD_PRELOAD=<library> and ACP_PRELOAD_ALLOW (comma-separated
// ADDR:PORT, IPv6 in brackets: "127.0.0.1:8443,[::1]:8443").
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "acp/kernel/endpoint.hpp"
#include "acp/util/result.hpp"

namespace acp::backend {

inline constexpr const char* kPreloadLibEnv = "ACP_PRELOAD_LIB";
inline constexpr const char* kPreloadAllowEnv = "ACP_PRELOAD_ALLOW";
inline constexpr const char* kPreloadLibName = "libacp_preload.so";

// The library: `override_path` (from $ACP_PRELOAD_LIB) when given, else
// <exe_dir>/../lib/acp/libacp_preload.so (installed), else <exe_dir>/../preload/
// libacp_preload.so (the build tree). Returns an absolute, normalized path of a regular file;
// the error lists where it looked and what to do.
Result<std::string> find_preload_library(const std::string& exe_dir,
                                         const std::optional<std::string>& override_path);

// The directory of the running acp binary (/proc/self/exe).
std::string current_exe_dir();

// "127.0.0.1:8443,[::1]:8443": the endpoints' addresses and ports in order, each once (the
// library does not tell TCP from UDP).
std::string preload_allow_value(const std::vector<kernel::Endpoint>& allow);

// The variables the agent gets: LD_PRELOAD (the library, ahead of an LD_PRELOAD the caller
// already had) and ACP_PRELOAD_ALLOW.
std::vector<std::pair<std::string, std::string>> preload_env(
    const std::string& library, const std::vector<kernel::Endpoint>& allow,
    const std::optional<std::string>& existing_ld_preload);

}  // namespace acp::backend
