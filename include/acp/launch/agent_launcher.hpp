// Starting the agent inside its cgroup, as its user, with no-new-privileges, and reporting its
// end the way a shell would.
//
// The agent is in the session cgroup before its first instruction: clone3(CLONE_INTO_CGROUP)
// places it atomically; on kernels without that (before 5.7) a fork()ed child writes its own
// pid to cgroup.procs before it does anything else. Between clone and execve the child makes
// only async-signal-safe raw syscalls (the parent may be multi-threaded).
//
// Typical use (acp run):
//   auto user = resolve_target_user(flag, env_to_map(current_environment()), allow_root);
//   auto cg = Cgroup::create(session_cgroup_path(*cgroup2_mount_point(), id));
//   ... attach the BPF programs to cg->fd() ...
//   AgentSpec spec{argv, build_agent_env(current_environment(), {proxy_url, id, &*user, {}}),
//                  user->uid, user->gid, user->groups, cg->fd(), cg->path()};
//   auto agent = spawn_agent(spec);
//   if (!agent) { report agent.error().message(); return agent.error().exit_code; }
//   auto code = wait_agent(*agent);               // meanwhile forward SIGINT/SIGTERM with
//                                                 // forward_signal(*agent, sig)
//   cg->kill_all(5s); cg->remove();                // before the wall comes down
// Caveats: SIGCHLD must not be SIG_IGN (the kernel would reap the agent before wait_agent);
// a fork() without exec by another thread of ACP during spawn_agent would hold the report pipe
// open and delay spawn_agent until that child exits.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "acp/util/result.hpp"
#include "acp/util/unique_fd.hpp"

namespace acp::launch {

// Exit statuses of `acp run` when the agent does not start (as docker run and env use them).
inline constexpr int kExitLaunchFailed = 125;   // ACP's own failure
inline constexpr int kExitCannotExecute = 126;  // found, but cannot be executed
inline constexpr int kExitNotFound = 127;       // command not found

struct AgentSpec {
  std::vector<std::string> argv;  // argv[0] is looked up in the PATH of `env` unless it has '/'
  std::vector<std::string> env;   // "KEY=VALUE", e.g. from build_agent_env()
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups; applied only when ACP runs as root
  int cgroup_fd = -1;         // Cgroup::fd(): the CLONE_INTO_CGROUP target (required...)
  // ...unless this is set: the preload and none backends without root have no cgroup to
  // place the agent in; it is then a plain child of acp.
  bool without_cgroup = false;
  std::string cgroup_path;  // the same cgroup, for messages
  bool no_new_privs = true;
  // A root agent (--allow-root) could otherwise rewrite what confines it or read ACP's
  // secrets. For uid 0 only, the agent gets its own mount namespace in which `readonly_paths`
  // (the cgroup2 mount, bpffs, the audit directory) are read-only and `hidden_paths` are
  // covered: a directory (/etc/acp, /var/lib/acp, /run/acp, the CA's private directory) by an
  // empty read-only tmpfs, a file (a token file elsewhere) by /dev/null, and so is every disk
  // node in /dev (block devices, SCSI/NVMe passthrough). `visible_paths` inside a covered
  // directory (the TLS trust bundle) are bound back read-only. Missing paths are skipped. The
  // agent also loses CAP_SYS_ADMIN (no umount), CAP_DAC_READ_SEARCH (no open_by_handle_at),
  // CAP_MKNOD, CAP_SYS_PTRACE, CAP_NET_RAW, CAP_NET_ADMIN, CAP_BPF and other wall-breaking
  // capabilities from its bounding set, with empty inheritable and ambient sets, and always gets
  // a cgroup namespace rooted at the session cgroup.
  std::vector<std::string> readonly_paths;
  std::vector<std::string> hidden_paths;
  std::vector<std::string> visible_paths;
  // Both true for every agent acp runs; the vmtests turn them off to exercise the BPF
  // programs alone. socket_filter: the seccomp filter of socket_filter.hpp. contain_root: the
  // mount namespace and bounding-set drop above, for uid 0.
  bool socket_filter = true;
  bool contain_root = true;
  // RLIMIT_NPROC (soft and hard) set on the agent before it drops root; 0 leaves it alone.
  // See task_limit.hpp.
  uint64_t rlimit_nproc = 0;
  // Redirect the agent's stdin/stdout/stderr; -1 inherits ACP's own. Each must be >= 3 or equal
  // to the fd it replaces.
  int stdin_fd = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;
  // Tests: skip clone3 and take the fork + write-own-pid path that old kernels use.
  bool force_fork_fallback = false;
};

struct Agent {
  pid_t pid = -1;  // -1 once wait_agent() has reaped it
  UniqueFd pidfd;  // pidfd of the agent (CLONE_PIDFD, or pidfd_open on the fallback path);
                   // may be invalid on kernels before 5.3. Pollable: readable when it exits.
  bool placed_by_clone3 = false;
};

// Why spawn_agent failed, and the exit status `acp run` should end with for it:
// kExitNotFound, kExitCannotExecute, or kExitLaunchFailed for everything else.
struct LaunchError : Error {
  int exit_code = kExitLaunchFailed;
};

// acp::Result's shape (ok()/value()/error()) with a LaunchError in place of the Error.
template <typename T>
class [[nodiscard]] LaunchResult {
 public:
  LaunchResult(T v) : v_(std::move(v)) {}            // NOLINT(google-explicit-constructor)
  LaunchResult(LaunchError e) : v_(std::move(e)) {}  // NOLINT(google-explicit-constructor)
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const LaunchError& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, LaunchError> v_;
};
using SpawnResult = LaunchResult<Agent>;

// Resolves the command, then starts it in the cgroup as uid/gid/groups with the given env.
// Returns once the agent has exec'd (or failed to: then the child is reaped and the error
// says why, e.g. "frobnicate: command not found" with exit_code 127).
SpawnResult spawn_agent(const AgentSpec& spec);

// What a root agent's mount namespace covers (AgentSpec::hidden_paths): ACP's config and
// secrets (/etc/acp), state (/var/lib/acp: grants, the CA), control sockets (/run/acp), and
// `secret_paths` wherever the config put them (SessionProxy::secret_paths()).
std::vector<std::string> agent_hidden_paths(const std::vector<std::string>& secret_paths);

// Waits for the agent to end (EINTR-safe), reaps it and returns exit_status_code().
Result<int> wait_agent(Agent& agent);

// A wait status as a shell reports it: exit n -> n, killed by signal s -> 128 + s.
int exit_status_code(int wstatus);

// Sends `sig` to the agent through its pidfd (no pid-reuse race); kill() when there is none.
Status forward_signal(const Agent& agent, int sig);

// Looks `name` up as execvp would, in `path_env` (the agent's PATH; a name with '/' is taken
// as it is), and checks that uid/gid/groups may execute it. Errors carry exit codes as above.
// Exposed for tests and for `acp run --dry-run`-style checks.
LaunchResult<std::string> resolve_command(const std::string& name, const std::string& path_env,
                                          uid_t uid, gid_t gid, const std::vector<gid_t>& groups);

}  // namespace acp::launch
