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
#include "acp/kernel/endpoint.hpp"
#include "acp/kernel/event_reader.hpp"
#include "acp/kernel/session_maps.hpp"
#include "acp/launch/agent_env.hpp"
#include "acp/launch/agent_launcher.hpp"
#include "acp/launch/session_signals.hpp"
#include "acp/launch/socket_stdio.hpp"
#include "acp/launch/target_user.hpp"
#include "acp/session/channel_notice.hpp"
#include "acp/session/docker_session.hpp"
#include "acp/session/event_pump.hpp"
#include "acp/session/session_builder.hpp"
#include "acp/session/session_gc.hpp"
#include "acp/session/session_record.hpp"
#include "acp/session/test_pause.hpp"
#include "acp/util/fd_limit.hpp"

namespace acp {
namespace {

namespace asio = boost::asio;
using namespace acp::kernel;  // NOLINT(google-build-using-namespace): the wall's vocabulary
using namespace acp::launch;  // NOLINT(google-build-using-namespace)

constexpr int kExitAcpFailed = 125;
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

// The agent step and the session's life: events, the agent, the loop, the teardown.
int run_built_session(asio::io_context& io, BuiltSession& s, SessionGuard& guard,
                      const RunOptions& o, const TargetUser& user, bool root,
                      const sigset_t& sigs) {
  SessionRecord& rec = s.record;
  const std::string& id = rec.id;
  SessionProxy& door = *s.proxy;
  std::optional<EventPump> events;
  if (s.wall->events_fd() >= 0) {
    const bool json = o.json_events;
    events.emplace(io, s.wall->events_fd(), [&door, json](const acp_event& e) {
      if (json)
        std::fprintf(stderr, "%s\n", event_to_json(e).dump().c_str());
      else
        std::fprintf(stderr, "acp: %s\n", describe_event(e).c_str());
      door.record_kernel_event(e);
    });
    if (auto st = events->start(); !st) return fail(st.error().message());
  }

  AgentPlan ap;
  ap.argv = o.command;
  ap.user = &user;
  ap.session_id = id;
  // --door=transparent: no proxy settings (set empty, so none inherited points elsewhere).
  if (o.door != "transparent") ap.proxy_url = door.proxy_url();
  ap.cgroup2_root = s.cgroup2_root;
  ap.cgroup_path = rec.cgroup;
  ap.cgroup_fd = s.cgroup ? s.cgroup->fd() : -1;
  ap.max_tasks = o.max_tasks;
  ap.extra_env = s.wall->agent_env();
  ap.trust_bundle = door.trust_bundle();
  if (!ap.trust_bundle.empty())
    for (auto& kv : trust_env(ap.trust_bundle)) ap.extra_env.push_back(std::move(kv));
  ap.secret_paths = door.secret_paths();
  auto prepared = prepare_agent(ap);
  if (!prepared) return fail(prepared.error().message());
  AgentSpec& spec = prepared->spec;
  rec.task_limit = prepared->task_limit;

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
  raise_fd_limit_for_tunnels();
  if (root)
    if (auto st = write_session_record(kSessionRecordDir, rec); !st)
      std::fprintf(stderr,
                   "acp run: warning: %s (acp status shows this session without its agent)\n",
                   st.error().message().c_str());
  std::fprintf(stderr, "acp: session %s: agent pid %d as %s, proxy %s, %s mode (%s)\n", id.c_str(),
               agent->pid, user.name.c_str(), door.proxy_url().c_str(), rec.mode.c_str(),
               rec.backend.c_str());

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
    if (sig == SIGHUP) door.reload_policy();
    if (!from_kernel) (void)forward_signal(*agent, sig);
  });
  if (!signals) std::fprintf(stderr, "acp run: %s\n", signals.error().message().c_str());

  test_pause_point("agent");
  io.run();

  if (events) {
    events->drain();
    events->stop();
  }
  door.stop();
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

}  // namespace

Result<SessionPlan> plan_run_session(const RunOptions& o, backend::Kind kind,
                                     const launch::TargetUser& user, bool root,
                                     const std::string& state_dir) {
  SessionPlan plan;
  plan.kind = kind;
  plan.root = root;
  plan.audit_only = o.audit_only;
  plan.test_pauses = true;
  // The builder's door step refuses transparent and both on other backends.
  // auto on iptables: both where nat REDIRECT works (a host without it keeps the explicit door;
  // an explicit --door=both then fails at the wall with iptables-restore's reason).
  const bool leads_in = kind == backend::Kind::kBpf ||
                        (kind == backend::Kind::kIptables && backend::iptables_door_supported());
  auto door = parse_door(effective_door(o, leads_in));
  if (!door) return door.error();
  plan.door = *door;
  // Everything the agent may reach besides the proxy, parsed before anything is built.
  for (const auto& a : o.allow) {
    auto ep = parse_endpoint(a);
    if (!ep) return make_error("--allow=" + a + ": " + ep.error().message());
    plan.extra_allow.push_back(*ep);
  }
  for (const auto& u : o.allow_unix)
    if (auto key = kernel::parse_unix_name(u); !key)
      return make_error("--allow-unix=" + u + ": " + key.error().message());
  plan.allow_unix = o.allow_unix;
  SessionRecord& rec = plan.record;
  rec.uid = user.uid;
  rec.user = user.name;
  rec.command = o.command;
  rec.policy = o.policy.value_or("<built-in>");
  SessionProxyConfig& pcfg = plan.proxy;
  pcfg.port = o.proxy_port.value_or(kDefaultProxyPort);
  pcfg.port_is_explicit = o.proxy_port.has_value();
  pcfg.policy_path = o.policy;
  pcfg.audit_path = o.audit_log;
  pcfg.config_path = o.config;
  pcfg.inspect_tls = o.inspect_tls;
  pcfg.inspect_tls_exclude = o.inspect_tls_exclude;
  pcfg.upstream_ca = o.upstream_ca;
  pcfg.ca_dir = o.ca_dir;
  if (!root) {
    pcfg.control_path = state_dir + "/control.sock";
    pcfg.grants_path = state_dir + "/grants.json";
    if (pcfg.ca_dir.empty()) pcfg.ca_dir = state_dir + "/ca";
    if (pcfg.audit_path.empty()) pcfg.audit_path = state_dir + "/audit.jsonl";
  }
  return plan;
}

int run_agent_session(const RunOptions& o) {
  if (auto st = validate_run_options(o); !st) return fail(st.error().message());
  // Which wall: the same probe as `acp doctor` decides what works here (backend.hpp).
  auto sel = backend::select_backend(requested_backend(o), backend::system_probe());
  if (!sel) return fail(sel.error().message());
  const backend::Kind kind = sel->kind;
  const std::string backend_name(backend::kind_name(kind));
  if (!sel->note.empty()) std::fprintf(stderr, "acp: %s\n", sel->note.c_str());
  if (!sel->warning.empty()) std::fprintf(stderr, "%s\n", sel->warning.c_str());
  if (o.audit_only && kind != backend::Kind::kBpf)
    return fail("--audit-only needs the bpf backend, and this session would use " + backend_name);
  if ((o.door == "transparent" || o.door == "both") && kind != backend::Kind::kBpf &&
      kind != backend::Kind::kIptables)
    return fail("--door=" + o.door + " needs the bpf or iptables backend, and this session would " +
                "use " + backend_name + ": use --door=proxy");
  if (kind == backend::Kind::kDocker) {
    // The same session as `acp contain` with its defaults (contain_options_for_run).
    auto c = contain_options_for_run(o);
    if (!c) return fail(c.error().message());
    return run_docker_session(*c);
  }
  const bool root = geteuid() == 0;
  auto user = resolve_target_user(o.user, env_to_map(current_environment()), o.allow_root);
  if (!user) return fail(user.error().message());
  std::string state_dir;  // non-root: control socket, grants, audit log
  if (!root) {
    auto d = user_state_dir();
    if (!d) return fail(d.error().message());
    state_dir = *d;
  }
  auto plan = plan_run_session(o, kind, *user, root, state_dir);
  if (!plan) return fail(plan.error().message());

  // Sessions whose acp died and whose cgroup emptied since are removed before a new one starts.
  // Records and pins only: the full scan (iptables, dockerd) is `acp gc`'s; it cost a session
  // start about as much as everything else together.
  if (root) (void)collect_orphaned_sessions(/*kill_orphans=*/false, SessionScan::kRecordsAndPins);
  // Signals are blocked before any thread exists so none is delivered elsewhere.
  sigset_t sigs = launch::session_signals();
  sigprocmask(SIG_BLOCK, &sigs, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  asio::io_context io(1);
  auto built = build_session(io, std::move(*plan));
  if (!built) return fail(built.error().message());
  // From here every exit path takes the session down (SessionGuard), processes first.
  SessionGuard guard(built->record.id, built->record.cgroup, root);
  for (const auto& notice : built->notices) std::fprintf(stderr, "acp: %s\n", notice.c_str());
  print_consent_channels(stderr, is_private_terminal(STDERR_FILENO), "acp run: consent channel ",
                         built->proxy->channel_descriptions(), built->proxy->consent_page_url());
  return run_built_session(io, *built, guard, o, *user, root, sigs);
}

}  // namespace acp
