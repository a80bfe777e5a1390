// Where pinned BPF objects live: the bpf filesystem, /sys/fs/bpf/acp/<session>.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "acp/util/result.hpp"

namespace acp::kernel {

inline constexpr const char* kBpffsMountPoint = "/sys/fs/bpf";

// Mounts bpffs at mount_point (mode 0700, nosuid,nodev,noexec) unless /proc/self/mounts
// already shows a bpf mount there.
Status ensure_bpffs(const std::string& mount_point = kBpffsMountPoint);

// True for a session id usable as one path component: 1-64 of [A-Za-z0-9_.-], not "." or "..".
bool safe_pin_component(std::string_view id);

// <root>/acp/<id>, the path only (the id checked): nothing is made.
Result<std::string> session_pin_path(std::string_view session_id,
                                     const std::string& root = kBpffsMountPoint);

// <root>/acp/<id>, created 0700 (with <root>/acp) when absent; bpffs is mounted first when
// root is the default mount point. An existing dir is returned as is: it may hold a stale
// session's pins, which SockPrograms::pin() then refuses to overwrite.
Result<std::string> session_pin_dir(std::string_view session_id,
                                    const std::string& root = kBpffsMountPoint);

// The session ids that have a pin dir under <root>/acp (live or orphaned), sorted.
Result<std::vector<std::string>> list_session_pin_dirs(const std::string& root = kBpffsMountPoint);

}  // namespace acp::kernel
