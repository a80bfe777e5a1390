// Cleanup of sessions whose acp process is gone. An orphaned session still holds its wall
// (pinned links); it is taken down only when its cgroup is empty, or when asked to kill what
// is left (`acp gc --kill`).
#pragma once

#include <string>
#include <vector>

#include "acp/util/result.hpp"

namespace acp {

struct GcReport {
  std::vector<std::string> removed;  // session ids taken down
  std::vector<std::string> kept;     // orphaned but still populated (wall kept): "id: why"
  std::vector<std::string> errors;   // "id: what failed"
};

// Every session id with pins or a record on this machine, sorted.
std::vector<std::string> known_session_ids();
// The cgroup of a session: from its record, else where acp run would have made it.
std::string cgroup_path_of(const std::string& id);

// `kill_orphans`: kill the processes of orphaned sessions first, then remove them.
GcReport collect_orphaned_sessions(bool kill_orphans);

// Takes one session down: kills its processes, detaches and unpins its programs, removes its
// cgroup and record. Refuses to detach while processes remain (the wall stays up).
Status teardown_session(const std::string& id, const std::string& cgroup_path);

}  // namespace acp
