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

// Where sessions are looked for. Everything: pins, records, iptables chains and docker objects
// (as root), for `acp gc` and `acp status`: it runs iptables twice and asks dockerd. Records and
// pins: two directory listings, for the housekeeping at every `acp run` (a session whose acp
// died has its record; the rare one that died before writing it is `acp gc`'s).
enum class SessionScan { kEverything, kRecordsAndPins };

// Every session id found (see SessionScan), sorted.
std::vector<std::string> known_session_ids(SessionScan scan = SessionScan::kEverything);
// The cgroup of a session: from its record, else where acp run would have made it.
std::string cgroup_path_of(const std::string& id);

// `kill_orphans`: kill the processes of orphaned sessions first, then remove them.
GcReport collect_orphaned_sessions(bool kill_orphans, SessionScan scan = SessionScan::kEverything);

// Takes one session down: kills its processes, detaches and unpins its programs, removes its
// cgroup and record. Refuses to detach while processes remain (the wall stays up).
Status teardown_session(const std::string& id, const std::string& cgroup_path);

}  // namespace acp
