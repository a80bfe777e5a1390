#include "acp/session/agent_session.hpp"

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "acp/backend/backend.hpp"
#include "acp/backend/iptables_wall.hpp"
#include "acp/backend/preload.hpp"
#include "acp/cgroup/cgroup.hpp"
#include "acp/cgroup/mounts.hpp"
#include "acp/kernel/bpffs.hpp"
#include "acp/kernel/endpoint.hpp"
#include "acp/kernel/event_reader.hpp"
#include "acp/kernel/pinned_session.hpp"
#include "acp/kernel/probe.hpp"
#include "acp/kernel/session_maps.hpp"
#include "acp/kernel/sock_programs.hpp"
#include "acp/launch/agent_env.hpp"
#include "acp/launch/agent_launcher.hpp"
#include "acp/launch/session_signals.hpp"
#include "acp/launch/socket_stdio.hpp"
#include "acp/launch/target_user.hpp"
#include "acp/launch/task_limit.hpp"
#include "acp/proxy/tls_inspector.hpp"
#include "acp/session/channel_notice.hpp"
#include "acp/session/docker_session.hpp"
#include "acp/session/event_pump.hpp"
#include "acp/session/session_gc.hpp"
#include "acp/session/session_id.hpp"
#include "acp/session/session_proxy.hpp"
#include "acp/session/session_record.hpp"
#include "acp/session/session_status.hpp"
#include "acp/session/test_pause.hpp"

namespace acp {
namespace {

namespace asio = boost::asio;
using namespace acp::kernel;  // NOLINT(google-build-using-namespace): the wall's vocabulary
using namespace acp::launch;  // NOLINT(google-build-using-namespace)

constexpr int kExitAcpFailed = 125;
constexpr auto kKillTimeout = std::chrono::seconds(10);
// At most this long for the agent's last output to reach a stdout/stderr socket whose reader
// is slow (a reader that never reads does not keep acp).
constexpr auto kStdioDrainLimit = std::chrono::seconds(10);

int fail(const std::string& what) {
  std::fprintf(stderr, "acp run: %s\n", what.c_str());
  return kExitAcpFailed;
}

// Everything a session built, taken down in reverse on every path out of run_agent_session().
// The order is the invariant: processes die first, the wall comes down last, and if the
// processes cannot be killed the wall stays up (pins kept, `acp gc --kill` later).
class SessionGuard {
 public:
  // `root`: false for a session without root (preload, none), which made nothing to remove.
  SessionGuard(std::string id, std::string cgroup_path, bool root)
      : id_(std::move(id)), cgroup_path_(std::move(cgroup_path)), armed_(root) {}
  SessionGuard(const SessionGuard&) = delete;
  SessionGuard& operator=(const SessionGuard&) = delete;
  ~SessionGuard() {
    if (!armed_) return;
    if (auto st = teardown(); !st)
      std::fprintf(stderr,
                   "acp run: %s\nacp run: the wall of session %s stays up; run `sudo acp gc "
                   "--kill` to remove it\n",
                   st.error().message().c_str(), id_.c_str());
  }
  Status teardown() {
    if (!armed_) return {};
    armed_ = false;
    return teardown_session(id_, cgroup_path_);
  }

 private:
  std::string id_;
  std::string cgroup_path_;
  bool armed_;
};

// Where a session without root keeps its control socket, grants and (by default) audit log:
// $XDG_RUNTIME_DIR/acp, else /tmp/acp-<uid>; 0700, owned by the user.
Result<std::string> user_state_dir() {
  const char* xdg = std::getenv("XDG_RUNTIME_DIR");
  std::string dir =
      (xdg && *xdg) ? std::string(xdg) + "/acp" : "/tmp/acp-" + std::to_string(getuid());
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return errno_error("mkdir " + dir);
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) return errno_error("stat " + dir);
  if (!S_ISDIR(st.st_mode) || st.st_uid != getuid() || (st.st_mode & 077) != 0)
    return make_error(dir + " must be a directory of uid " + std::to_string(getuid()) +
                      " with mode 0700: remove it or fix its owner and mode");
  return dir;
}

}  // namespace

int run_agent_session(const RunOptions& o) {
  if (auto st = validate_run_options(o); !st) return fail(st.error().message());

  // Everything the agent may reach besides the proxy, parsed before anything is built.
  std::vector<Endpoint> extra_allow;
  for (const auto& a : o.allow) {
    auto ep = parse_endpoint(a);
    if (!ep) return fail("--allow=" + a + ": " + ep.error().message());
    extra_allow.push_back(*ep);
  }
  for (const auto& u : o.allow_unix)
    if (auto key = kernel::parse_unix_name(u); !key)
      return fail("--allow-unix=" + u + ": " + key.error().message());

  // Which wall: the same probe as `acp doctor` decides what works here (backend.hpp).
  auto sel = backend::select_backend(requested_backend(o), backend::system_probe());
  if (!sel) return fail(sel.error().message());
  const backend::Kind kind = sel->kind;
  const std::string backend_name(backend::kind_name(kind));
  if (!sel->note.empty()) std::fprintf(stderr, "acp: %s\n", sel->note.c_str());
  if (!sel->warning.empty()) std::fprintf(stderr, "%s\n", sel->warning.c_str());
  if (o.audit_only && kind != backend::Kind::kBpf)
    return fail("--audit-only needs the bpf backend, and this session would use " + backend_name);
  if (kind == backend::Kind::kDocker) {
    // The same session as `acp contain` with its defaults: $ACP_AGENT_IMAGE (or
    // acp-agent:latest), the current directory as a read-only workspace.
    ContainOptions c;
    c.proxy_port = o.proxy_port;
    c.policy = o.policy;
    c.audit_log = o.audit_log;
    c.config = o.config;
    c.command = o.command;
    return run_docker_session(c);
  }
  const bool root = geteuid() == 0;
  // bpf and iptables hang their wall on the cgroup; preload and none use one when root can
  // make it, so that nothing the agent leaves behind outlives the session.
  const bool use_cgroup = root;

  std::string preload_lib;
  if (kind == backend::Kind::kPreload) {
    auto lib = backend::find_preload_library(
        backend::current_exe_dir(), env_lookup(current_environment(), backend::kPreloadLibEnv));
    if (!lib) return fail(lib.error().message());
    preload_lib = *lib;
  }

  auto user = resolve_target_user(o.user, env_to_map(current_environment()), o.allow_root);
  if (!user) return fail(user.error().message());

  std::string state_dir;  // non-root: control socket, grants, audit log
  if (!root) {
    auto d = user_state_dir();
    if (!d) return fail(d.error().message());
    state_dir = *d;
  }

  // Sessions whose acp died and whose cgroup emptied since are removed before a new one starts.
  if (root) (void)collect_orphaned_sessions(/*kill_orphans=*/false);

  std::string cg_root_path;
  if (use_cgroup) {
    auto cg_root = cgroup2_mount_point();
    if (!cg_root) return fail(cg_root.error().message());
    cg_root_path = *cg_root;
  }
  if (kind == backend::Kind::kBpf)
    if (auto st = ensure_bpffs(); !st) return fail(st.error().message());

  auto new_id = new_session_id();
  if (!new_id) return fail(new_id.error().message());
  const std::string id = *new_id;
  const std::string cg_path = use_cgroup ? session_cgroup_path(cg_root_path, id) : std::string();
  std::string pin_dir;
  if (kind == backend::Kind::kBpf) {
    auto dir = session_pin_dir(id);
    if (!dir) return fail(dir.error().message());
    pin_dir = *dir;
  }

  // The record comes first: it names this acp process as the session's owner, so a
  // concurrent `acp run` or `acp gc` never mistakes the half-built session for an orphan.
  // Without root there is no record (/run/acp is root's): such a session is not in acp status.
  SessionRecord rec;
  rec.id = id;
  rec.acp_pid = getpid();
  rec.acp_start_time = process_start_time(getpid());
  rec.uid = user->uid;
  rec.user = user->name;
  rec.command = o.command;
  rec.backend = backend_name;
  rec.mode = o.audit_only ? "audit" : "enforce";
  rec.cgroup = cg_path;
  rec.pin_dir = pin_dir;
  rec.policy = o.policy.value_or("<built-in>");
  rec.started_at = static_cast<int64_t>(std::time(nullptr));
  if (root)
    if (auto st = write_session_record(kSessionRecordDir, rec); !st)
      return fail(st.error().message());
  std::optional<Cgroup> cgroup;
  if (use_cgroup) {
    auto made = Cgroup::create(cg_path);
    if (!made) {
      (void)remove_session_record(kSessionRecordDir, id);
      return fail(made.error().message());
    }
    cgroup.emplace(std::move(*made));
    cgroup->release();
  }
  // From here every exit path takes the session down (SessionGuard), processes first.
  SessionGuard guard(id, cg_path, root);
  test_pause_point("cgroup");

  // Signals are blocked before any thread exists so none is delivered elsewhere.
  sigset_t sigs = launch::session_signals();
  sigprocmask(SIG_BLOCK, &sigs, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  std::optional<SockPrograms> progs;
  if (kind == backend::Kind::kBpf) {
    const uint32_t mode = o.audit_only ? ACP_MODE_AUDIT : ACP_MODE_ENFORCE;
    auto loaded = SockPrograms::load(SockConfig{mode, session_id_number(id)});
    if (!loaded) return fail(loaded.error().message());
    progs.emplace(std::move(*loaded));
    for (const auto& u : o.allow_unix)
      if (auto st = progs->allow_unix(u); !st) return fail(st.error().message());
    // Attached and pinned before the agent exists: from its first instruction the wall holds,
    // and it keeps holding if acp is killed (the pins own the links).
    if (auto st = progs->attach(cgroup->fd()); !st) return fail(st.error().message());
    if (!progs->unix_walled())
      std::fprintf(stderr,
                   "acp: local IPC is NOT walled on this kernel (%s): the agent can reach unix "
                   "sockets (docker.sock, D-Bus, tmux); see docs/security.md\n",
                   progs->unix_why().c_str());
    if (auto st = progs->pin(pin_dir); !st) return fail(st.error().message());
  }
  test_pause_point("attached");

  asio::io_context io(1);
  SessionProxyConfig pcfg;
  pcfg.session_id = id;
  pcfg.port = o.proxy_port.value_or(kDefaultProxyPort);
  pcfg.port_is_explicit = o.proxy_port.has_value();
  pcfg.policy_path = o.policy;
  pcfg.audit_path = o.audit_log;
  pcfg.config_path = o.config;
  pcfg.inspect_tls = o.inspect_tls;
  pcfg.inspect_tls_exclude = o.inspect_tls_exclude;
  pcfg.upstream_ca = o.upstream_ca;
  pcfg.ca_dir = o.ca_dir;
  // The walled backends serve only the session's own cgroup (docs/architecture.md).
  if (kind == backend::Kind::kBpf || kind == backend::Kind::kIptables) pcfg.client_cgroup = cg_path;
  // For the web page: the pins' counters and denied connects, without the control socket (this
  // loop serves it).
  pcfg.session_status = [id] { return session_status_to_json(read_session_status(id, false)); };
  for (const auto& arg : o.command)
    pcfg.agent_command += (pcfg.agent_command.empty() ? "" : " ") + arg;
  if (!root) {
    pcfg.control_path = state_dir + "/control.sock";
    pcfg.grants_path = state_dir + "/grants.json";
    if (pcfg.ca_dir.empty()) pcfg.ca_dir = state_dir + "/ca";
    if (pcfg.audit_path.empty()) pcfg.audit_path = state_dir + "/audit.jsonl";
  }
  auto proxy = SessionProxy::start(io, pcfg);
  if (!proxy) return fail(proxy.error().message());
  print_consent_channels(stderr, is_private_terminal(STDERR_FILENO), "acp run: consent channel ",
                         (*proxy)->channel_descriptions(), (*proxy)->consent_page_url());

  std::vector<Endpoint> allow = (*proxy)->endpoints();
  allow.insert(allow.end(), extra_allow.begin(), extra_allow.end());
  if (progs)
    for (const auto& ep : allow)
      if (auto st = progs->allow(ep); !st) return fail(st.error().message());
  if (kind != backend::Kind::kBpf && kind != backend::Kind::kNone)
    std::fprintf(stderr,
                 "acp: local IPC is NOT walled by the %s backend: the agent can reach unix "
                 "sockets (docker.sock, D-Bus, tmux); see docs/security.md\n",
                 backend_name.c_str());
  if (kind == backend::Kind::kIptables) {
    // Both families' chains, in place before the agent exists; like pins, they outlive a
    // crashed acp (fail-closed) until `acp gc` removes them.
    auto rel = backend::cgroup_match_path(cg_path, cg_root_path);
    if (!rel) return fail(rel.error().message());
    backend::ChainSpec chains{backend::session_chain_name(id), *rel, allow};
    if (auto st = backend::install_iptables_wall(chains); !st) return fail(st.error().message());
  }

  std::optional<EventPump> events;
  if (progs) {
    SessionProxy* door = proxy->get();
    const bool json = o.json_events;
    events.emplace(io, progs->events_fd(), [door, json](const acp_event& e) {
      if (json)
        std::fprintf(stderr, "%s\n", event_to_json(e).dump().c_str());
      else
        std::fprintf(stderr, "acp: %s\n", describe_event(e).c_str());
      door->record_kernel_event(e);
    });
    if (auto st = events->start(); !st) return fail(st.error().message());
  }

  AgentEnvSettings env_settings;
  env_settings.proxy_url = (*proxy)->proxy_url();
  env_settings.session_id = id;
  env_settings.user = &*user;
  if (kind == backend::Kind::kPreload)
    env_settings.extra =
        backend::preload_env(preload_lib, allow, env_lookup(current_environment(), "LD_PRELOAD"));
  AgentSpec spec;
  spec.argv = o.command;
  if (auto bundle = (*proxy)->trust_bundle(); !bundle.empty())
    for (auto& kv : trust_env(bundle)) env_settings.extra.push_back(std::move(kv));
  spec.env = build_agent_env(current_environment(), env_settings);
  spec.uid = user->uid;
  spec.gid = user->gid;
  spec.groups = user->groups;
  spec.cgroup_fd = cgroup ? cgroup->fd() : -1;
  spec.without_cgroup = !cgroup;
  spec.cgroup_path = cg_path;
  // A fork bomb in the agent stays bounded (launch/task_limit.hpp says how).
  auto tasks = apply_task_limit(cg_root_path, cg_path, user->uid, o.max_tasks);
  if (!tasks) return fail("limit the agent's tasks: " + tasks.error().message());
  if (tasks->kind == TaskLimit::Kind::kRlimitNproc) spec.rlimit_nproc = tasks->value;
  rec.task_limit = tasks->description;
  // Only applied to a root agent (--allow-root): see AgentSpec. Hidden: ACP's config and
  // secrets (tokens, webhook secret), grants, the control sockets and the CA key (it could mint
  // certificates the agent trusts), wherever the config puts them.
  spec.readonly_paths = {kBpffsMountPoint, "/var/log/acp"};
  if (!cg_root_path.empty()) spec.readonly_paths.insert(spec.readonly_paths.begin(), cg_root_path);
  spec.hidden_paths = agent_hidden_paths((*proxy)->secret_paths());
  if (auto bundle = (*proxy)->trust_bundle(); !bundle.empty()) spec.visible_paths = {bundle};

  rec.proxy.clear();
  for (const auto& ep : (*proxy)->endpoints()) rec.proxy.push_back(to_string(ep));
  rec.control = (*proxy)->control_path();
  rec.audit_log = (*proxy)->audit_path();
  rec.channels = (*proxy)->channel_descriptions();  // world-readable: they hold no secret

  // A socket as stdin/stdout/stderr is relayed through a pipe (launch/socket_stdio.hpp).
  auto stdio = SocketStdio::prepare();
  if (!stdio) return fail(stdio.error().message());
  spec.stdin_fd = (*stdio)->agent_fd(0);
  spec.stdout_fd = (*stdio)->agent_fd(1);
  spec.stderr_fd = (*stdio)->agent_fd(2);

  auto agent = spawn_agent(spec);
  if (!agent) {
    std::fprintf(stderr, "acp run: %s\n", agent.error().message().c_str());
    return agent.error().exit_code;
  }
  (*stdio)->start();
  rec.agent_pid = agent->pid;
  // Thousands of tunnels take two fds each: acp raises its own soft RLIMIT_NOFILE to the hard
  // one, after the agent started with the limits it was given.
  if (rlimit nofile{};
      ::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &nofile);
  }
  if (root)
    if (auto st = write_session_record(kSessionRecordDir, rec); !st)
      std::fprintf(stderr,
                   "acp run: warning: %s (acp status shows this session without its agent)\n",
                   st.error().message().c_str());
  std::fprintf(stderr, "acp: session %s: agent pid %d as %s, proxy %s, %s mode (%s)\n", id.c_str(),
               agent->pid, user->name.c_str(), (*proxy)->proxy_url().c_str(), rec.mode.c_str(),
               backend_name.c_str());

  // The event loop: agent exit (pidfd), signals (signalfd), the proxy and kernel events.
  int exit_code = kExitAcpFailed;
  asio::posix::stream_descriptor pidfd_stream(io, ::dup(agent->pidfd.get()));
  pidfd_stream.async_wait(asio::posix::stream_descriptor::wait_read,
                          [&](const boost::system::error_code&) {
                            auto st = wait_agent(*agent);
                            exit_code = st ? *st : kExitAcpFailed;
                            io.stop();
                          });

  auto signals = launch::SignalWatch::start(io, sigs, [&](int sig, bool from_kernel) {
    if (sig == SIGHUP) (*proxy)->reload_policy();
    if (!from_kernel) (void)forward_signal(*agent, sig);
  });
  if (!signals) std::fprintf(stderr, "acp run: %s\n", signals.error().message().c_str());

  test_pause_point("agent");
  io.run();

  if (events) {
    events->drain();
    events->stop();
  }
  (*proxy)->stop();
  if (auto st = guard.teardown(); !st) {
    std::fprintf(stderr,
                 "acp run: %s\nacp run: the wall of session %s stays up; run `sudo acp gc "
                 "--kill` to remove it\n",
                 st.error().message().c_str(), id.c_str());
  }
  // Every process of the session is gone: what they wrote reaches the sockets before acp ends.
  (*stdio)->finish(kStdioDrainLimit);
  return exit_code;
}

}  // namespace acp
