// `acp daemon`: one long-running process that holds, for every session registered with it,
// the session's BPF wall (cgroup, programs, pins), its consent proxy (own listener port, so the
// session's allow map names only its own door), consent gate, control socket, channels and
// audit log, all on one event loop. `acp run` registers with it over a root-only unix socket
// and launches the agent itself (the agent keeps the user's terminal and environment). A
// restarted daemon re-adopts the sessions a previous one held: the pins kept the agents
// confined meanwhile. See docs/daemon.md.
//
// Protocol on the daemon socket: one JSON object per line each way (lines up to 64 KiB).
//   {"op":"ping"}                     -> {"ok":true,"pid":P,"sessions":[ids]}
//   {"op":"register","uid":U,"user":N,"command":[..],"proxy_port":P?,"allow":[..],
//    "allow_unix":[..],"audit_only":B,"policy":F?,"config":F,"audit_log":F}
//                                     -> {"ok":true,"id":S,"cgroup":C,"proxy_url":U,
//                                         "channels":[..],"mode":M,"notices":[..]}
//   (notices: what the wall leaves open, e.g. local IPC on an older kernel, for acp run to
//   print; the agent's own options, --user, --max-tasks, --json-events, stay with acp run)
//   {"op":"started","id":S,"agent_pid":P,"task_limit":T}   (no reply)
//   {"op":"reload","id":S}            (no reply) the policy, as SIGHUP in standalone acp run
//   {"op":"end","id":S}               -> {"ok":true,"id":S}: kill what is left, take it down
//   daemon -> runner, any time:       {"event":{...},"text":"..."} a denied connect
// Failures: {"ok":false,"error":"..."}. A runner's connection that closes without "end" (acp
// run killed) leaves the session to the daemon, which takes it down once its cgroup is empty.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "acp/launch/target_user.hpp"
#include "acp/session/run_options.hpp"
#include "acp/session/session_builder.hpp"
#include "acp/util/result.hpp"
#include "acp/util/unique_fd.hpp"

namespace acp::daemon {

// $ACP_RUN_DIR/daemon.sock, else /run/acp/daemon.sock.
std::string default_socket_path();

struct DaemonOptions {
  std::string socket;   // empty: default_socket_path()
  std::string metrics;  // "ADDR:PORT" for /metrics (daemon_metrics.hpp); empty: none
};

// Runs until SIGTERM/SIGINT; returns the exit status. Sessions stay confined when it stops.
int run_daemon(const DaemonOptions& o);

// `acp run` through a daemon. nullopt: no daemon to use and --daemon=auto (run standalone);
// otherwise acp run's exit status.
std::optional<int> run_via_daemon(const RunOptions& o);

// Where acp run looks for a daemon, or why it does not (then it runs standalone, or fails).
struct DaemonRoute {
  bool ask = false;       // try the daemon on `socket`
  bool required = false;  // and fail when none answers
  std::string socket;
  std::string why_not;  // set when the daemon cannot hold this session
  // Set when acp run must fail instead of running standalone: the daemon was asked for
  // (--daemon=required, --daemon-socket) and cannot hold this session.
  std::string refusal;
};
DaemonRoute daemon_route(const RunOptions& o, bool root);

// The register request acp run sends for `o`, the agent running as `user`.
nlohmann::json register_request(const RunOptions& o, const launch::TargetUser& user);
// What the daemon builds for a register request (the same builder as a standalone acp run);
// `runner_pid`: the acp run that asked.
Result<SessionPlan> plan_registered_session(const nlohmann::json& req, pid_t runner_pid);

// One JSON object per line over a unix stream socket, blocking with a deadline (poll), for the
// client side and the tests. Works on non-blocking fds too.
class LineChannel {
 public:
  explicit LineChannel(UniqueFd fd) : fd_(std::move(fd)) {}
  int fd() const { return fd_.get(); }
  Status send(const nlohmann::json& j);
  // The next line; ETIMEDOUT after `timeout`, ECONNRESET at EOF.
  Result<nlohmann::json> receive(std::chrono::milliseconds timeout);
  // Reads what is there now without waiting and returns the complete lines; *eof at EOF.
  std::vector<nlohmann::json> receive_available(bool* eof);

 private:
  std::optional<nlohmann::json> take_line();
  UniqueFd fd_;
  std::string buf_;
};

// Connects to a unix stream socket (SOCK_CLOEXEC: the agent never inherits it).
Result<UniqueFd> connect_unix(const std::string& path);

}  // namespace acp::daemon
