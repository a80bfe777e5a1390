// Where the kernel's filesystems are mounted, read from /proc/self/mounts. Never assume
// /sys/fs/cgroup: hybrid hosts mount cgroup2 at /sys/fs/cgroup/unified.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "acp/util/result.hpp"

namespace acp {

// The mount point of the first mount of `fstype` in a mounts table (the format of
// /proc/self/mounts; octal escapes such as \040 are decoded). nullopt when none.
std::optional<std::string> find_mount_point(std::string_view mounts_text, std::string_view fstype);

// True when `path` is a mount point of `fstype` in the table.
bool is_mounted_as(std::string_view mounts_text, std::string_view path, std::string_view fstype);

// Reads /proc/self/mounts.
Result<std::string> read_mounts_table();

// The cgroup v2 mount point of this machine, or an error that says what to do.
Result<std::string> cgroup2_mount_point();

// The cgroup v2 directory of process pid ("self" or a number): the mount point joined with the
// "0::" line of /proc/<pid>/cgroup (relative to this process's cgroup namespace, as the mount).
Result<std::string> cgroup_dir_of(const std::string& pid = "self");
// The same joined with every cgroup2 mount point, in mount order: in a container that also has
// the host's hierarchy mounted (a node agent's /host/sys/fs/cgroup), only the mount of its own
// namespace's root names the right directory, and the first mount need not be that one.
Result<std::vector<std::string>> cgroup_dir_candidates(const std::string& pid = "self");

}  // namespace acp
