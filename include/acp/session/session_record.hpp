// What `acp run` writes about a session so that `acp status` and `acp gc` can find it from any
// shell, and tell a live session from an orphaned one (acp killed, pins still holding the wall).
// The pins under /sys/fs/bpf/acp/<id> are the truth about enforcement; the record adds who and
// what (pid, user, command, proxy endpoints).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "acp/util/result.hpp"

namespace acp {

inline constexpr const char* kSessionRecordDir = "/run/acp/sessions";
inline constexpr const char* kBpfPinRoot = "/sys/fs/bpf/acp";

struct SessionRecord {
  std::string id;
  pid_t acp_pid = 0;
  uint64_t acp_start_time = 0;  // /proc/<pid>/stat starttime: tells a reused pid apart
  pid_t agent_pid = 0;
  uid_t uid = 0;
  std::string user;
  std::vector<std::string> command;
  std::string backend;             // "bpf"
  std::string mode;                // "enforce" | "audit"
  std::string cgroup;              // absolute path of the session cgroup
  std::string pin_dir;             // /sys/fs/bpf/acp/<id>
  std::vector<std::string> proxy;  // "127.0.0.1:8443", "[::1]:8443"
  std::string policy;              // the policy file, or "<built-in>"
  std::string control;             // the session's control socket (acp pending/approve/deny)
  std::string audit_log;           // the audit log file
  // Consent channels as `acp run` printed them, tokens cut out ("web: http://…/?token=…"): the
  // record is world-readable.
  std::vector<std::string> channels;
  int64_t started_at = 0;  // unix seconds
  std::string task_limit;  // how the agent's task count is bounded (task_limit.hpp)
  // Who holds the session's proxy: "run" (a standalone `acp run`, acp_pid) or "daemon" (`acp
  // daemon`, acp_pid; a restarted daemon re-adopts such sessions, see docs/daemon.md).
  std::string owner = "run";
  pid_t runner_pid = 0;  // daemon sessions: the `acp run` that registered it (0: gone/unknown)
  std::string config;    // daemon sessions: the config (channels) file, for re-adoption
  // How the agent reaches the proxy (acp run --door): "proxy", "transparent" or "both". A
  // re-adopting daemon reopens the transparent door on the ports the wall's config map names.
  std::string door = "proxy";
  // The docker backend only (absent from the JSON otherwise): the container and network name
  // (acp-<id>), the image, its subnet, and the daemon (`docker -H`; empty: the CLI's default).
  std::string container;
  std::string image;
  std::string subnet;
  std::string docker_host;
};

nlohmann::json to_json(const SessionRecord& r);
Result<SessionRecord> session_record_from_json(const nlohmann::json& j);

// Atomically (util::write_file_atomic) stores <dir>/<id>.json, mode 0644, dir 0755.
Status write_session_record(const std::string& dir, const SessionRecord& r);
Result<SessionRecord> read_session_record(const std::string& dir, const std::string& id);
// Removes the record and the temporary files of writes of it that died before their rename.
Status remove_session_record(const std::string& dir, const std::string& id);

// A temporary file that a record write left behind (<dir>/<id>.json.tmp.XXXXXX).
struct RecordTempFile {
  std::string id;
  std::string path;
};
std::vector<RecordTempFile> list_record_temp_files(const std::string& dir);

// The start time (clock ticks since boot) of a live process, 0 when it does not exist or is a
// zombie (killed, not yet reaped).
uint64_t process_start_time(pid_t pid);
// True when the acp process that wrote the record is still the same process and alive.
bool session_owner_alive(const SessionRecord& r);

}  // namespace acp
