#include "acp/session/docker_session.hpp"

#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <functional>

#include "acp/backend/command.hpp"
#include "acp/backend/docker_wall.hpp"
#include "acp/backend/iptables_wall.hpp"
#include "acp/launch/session_signals.hpp"
#include "acp/session/channel_notice.hpp"
#include "acp/session/session_builder.hpp"
#include "acp/session/session_gc.hpp"
#include "acp/session/session_proxy.hpp"
#include "acp/session/session_record.hpp"
#include "acp/util/session_id.hpp"
#include "acp/util/unique_fd.hpp"

namespace acp {
namespace {

namespace asio = boost::asio;
constexpr int kExitAcpFailed = 125;

int fail(const std::string& what) {
  std::fprintf(stderr, "acp contain: %s\n", what.c_str());
  return kExitAcpFailed;
}

// What the session built, removed in reverse on every way out: the container first (nothing
// of the agent outlives the wall), then the firewall and the network, then the record.
class DockerSessionGuard {
 public:
  DockerSessionGuard(backend::DockerCli docker, std::string id)
      : docker_(std::move(docker)), id_(std::move(id)) {}
  DockerSessionGuard(const DockerSessionGuard&) = delete;
  DockerSessionGuard& operator=(const DockerSessionGuard&) = delete;
  ~DockerSessionGuard() { teardown(); }
  void teardown() {
    if (done_) return;
    done_ = true;
    bool ok = true;
    if (auto st = backend::remove_docker_objects(docker_, id_); !st) {
      std::fprintf(stderr, "acp contain: %s\n", st.error().message().c_str());
      ok = false;
    }
    // The firewall stays when the container could not be removed: fail-closed.
    if (ok) {
      if (auto st = backend::remove_docker_firewall(backend::docker_chain_name(id_)); !st) {
        std::fprintf(stderr, "acp contain: %s\n", st.error().message().c_str());
        ok = false;
      }
    }
    if (ok)
      (void)remove_session_record(kSessionRecordDir, id_);
    else
      std::fprintf(stderr,
                   "acp contain: session %s is not fully removed; run `sudo acp gc --kill`\n",
                   id_.c_str());
  }

 private:
  backend::DockerCli docker_;
  std::string id_;
  bool done_ = false;
};

// The session builder (session_builder.hpp) up to the allow entries: record -> network (the
// wall) -> proxy on its gateway -> firewall. The agent step is `docker run` (run_docker_session).
SessionPlan plan_docker_session(const ContainOptions& o, const backend::DockerCli& docker,
                                const std::string& id, const std::string& image) {
  SessionPlan plan;
  plan.kind = backend::Kind::kDocker;
  plan.id = id;
  plan.wall = backend::make_docker_wall(docker);
  SessionRecord& rec = plan.record;
  rec.uid = 0;
  rec.user = "container (" + image + ")";
  rec.command = o.command;
  rec.policy = o.policy.value_or("<built-in>");
  rec.container = backend::docker_object_name(id);
  rec.image = image;
  rec.docker_host = docker.host;
  plan.proxy.port = o.proxy_port.value_or(kDefaultProxyPort);
  plan.proxy.port_is_explicit = o.proxy_port.has_value();
  plan.proxy.policy_path = o.policy;
  plan.proxy.audit_path = o.audit_log;
  plan.proxy.config_path = o.config;
  // Checked by contain_options_for_run and the CLI: auto, both or proxy. auto: the door needs
  // nat (DNAT in PREROUTING); a host without it keeps the explicit proxy, an explicit both
  // then fails at the firewall with iptables-restore's reason.
  const bool both = o.door == "both" || (o.door == "auto" && backend::iptables_door_supported());
  plan.door = both ? Door::kBoth : Door::kProxy;
  return plan;
}

// Until `docker run` ends: its exit (pidfd) and signals, which go to it (it passes them to the
// container). Returns its exit status; -1 when it cannot be watched (errno).
int wait_for_container(asio::io_context& io, const backend::DockerCli& docker,
                       const std::string& id, pid_t pid, SessionProxy& door, const sigset_t& sigs) {
  int exit_code = kExitAcpFailed;
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) return -1;
  asio::posix::stream_descriptor pid_stream(io, ::dup(pidfd.get()));
  pid_stream.async_wait(
      asio::posix::stream_descriptor::wait_read, [&](const boost::system::error_code&) {
        int status = 0;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        io.stop();
      });

  int stops = 0;
  auto signals = launch::SignalWatch::start(io, sigs, [&](int sig, bool from_kernel) {
    if (sig == SIGHUP) door.reload_policy();
    if ((sig == SIGINT || sig == SIGTERM) && ++stops >= 2) {
      // Asked twice: the container goes now (docker run then ends).
      (void)backend::run_command(docker.command({"rm", "-f", backend::docker_object_name(id)}));
      return;
    }
    // docker run passes it to the container (--sig-proxy).
    if (!from_kernel) (void)::syscall(SYS_pidfd_send_signal, pidfd.get(), sig, nullptr, 0);
  });
  if (!signals) std::fprintf(stderr, "acp: %s\n", signals.error().message().c_str());
  io.run();

  return exit_code;
}

}  // namespace

Result<ContainOptions> contain_options_for_run(const RunOptions& o) {
  if (auto st = validate_run_options(o); !st) return st.error();
  const RunOptions defaults;
  auto refuse = [](const std::string& flag, const std::string& why) {
    return make_error(flag + " does not apply to --backend=docker: " + why +
                      "; leave it out, or run with another backend");
  };
  if (!o.allow_unix.empty())
    return refuse("--allow-unix", "the container reaches no unix socket of the host");
  if (o.max_tasks != defaults.max_tasks)
    return refuse("--max-tasks", "the container's tasks are bounded by --pids-limit=256");
  if (o.json_events)
    return refuse("--json-events",
                  "a container's connects are refused by its network, "
                  "which reports no kernel events");
  ContainOptions c;
  c.proxy_port = o.proxy_port;
  c.policy = o.policy;
  c.audit_log = o.audit_log;
  c.config = o.config;
  c.command = o.command;
  // The container's wall leads in where nat works (auto, resolved when the session is
  // planned); its explicit proxy always stays reachable.
  c.door = o.door;
  if (c.door == "transparent")
    return refuse("--door=transparent",
                  "the container keeps the explicit proxy on its gateway; use --door=both");
  return c;
}

int run_docker_session(const ContainOptions& o) {
  if (::geteuid() != 0)
    return fail(
        "needs root: the session's firewall (iptables) and its record are root's; run `sudo "
        "acp contain -- CMD`");
  std::string why;
  if (!backend::docker_backend_supported(&why)) return fail("the docker backend: " + why);
  auto docker = backend::find_docker();
  if (!docker) return fail("the docker CLI is not installed (apt-get install docker.io)");

  // Sessions whose acp died and whose container is gone since are removed first (acp run does
  // the same).
  (void)collect_orphaned_sessions(/*kill_orphans=*/false);

  auto new_id = new_session_id();
  if (!new_id) return fail(new_id.error().message());
  const std::string id = *new_id;
  backend::ContainerSpec spec;
  spec.session_id = id;
  if (o.image)
    spec.image = *o.image;
  else if (const char* e = std::getenv("ACP_AGENT_IMAGE"); e && *e)
    spec.image = e;
  if (!o.no_workspace) {
    std::error_code ec;
    auto ws = o.workspace ? std::filesystem::absolute(*o.workspace, ec)
                          : std::filesystem::current_path(ec);
    if (ec) return fail("workspace: " + ec.message());
    spec.workspace = ws.lexically_normal().string();
    if (spec.workspace->size() > 1 && spec.workspace->back() == '/') spec.workspace->pop_back();
  }
  spec.writable = o.writable;
  spec.pass_env = o.env;
  spec.tty = ::isatty(0) && ::isatty(1);
  spec.command = o.command;
  spec.proxy_url = "http://0.0.0.0:1";  // checked below with the real one
  if (auto st = backend::validate_container_spec(spec); !st) return fail(st.error().message());

  // The image must be here: no registry is asked for it (a pull would need the network the
  // agent must not have, and would be a surprise).
  if (auto r = backend::run_command(
          docker->command({"image", "inspect", "--format={{.Id}}", spec.image}));
      !r || r->exit_code != 0)
    return fail("image " + spec.image +
                " is not available to dockerd: build it (scripts/build-agent-image.sh "
                "--tag=" +
                spec.image + ") or load it (docker load)");

  SessionPlan plan = plan_docker_session(o, *docker, id, spec.image);
  sigset_t sigs = launch::session_signals();
  sigprocmask(SIG_BLOCK, &sigs, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  asio::io_context io(1);
  auto built = build_session(io, std::move(plan));
  if (!built) return fail(built.error().message());
  // From here the container, the firewall and the network go on every way out.
  DockerSessionGuard guard(*docker, id);
  SessionProxy& door = *built->proxy;
  print_consent_channels(stderr, is_private_terminal(STDERR_FILENO),
                         "acp contain: consent channel ", door.channel_descriptions(),
                         door.consent_page_url());
  const backend::DockerNetwork& net = *backend::docker_network_of(*built->wall);
  spec.proxy_url = door.proxy_url();
  spec.dns = net.gateway;
  SessionRecord& live = built->record;
  live.task_limit = "container --pids-limit=256";
  live.subnet = net.subnet;

  auto pid = backend::spawn_process(backend::docker_run_argv(*docker, spec));
  if (!pid) return fail(pid.error().message());
  live.agent_pid = *pid;
  if (auto st = write_session_record(kSessionRecordDir, live); !st)
    std::fprintf(stderr, "acp contain: warning: %s\n", st.error().message().c_str());
  std::fprintf(stderr,
               "acp: session %s: container %s (%s) on network %s %s, proxy %s, enforce mode "
               "(docker)\n",
               id.c_str(), backend::docker_object_name(id).c_str(), spec.image.c_str(),
               net.name.c_str(), net.subnet.c_str(), spec.proxy_url.c_str());
  const int exit_code = wait_for_container(io, *docker, id, *pid, door, sigs);
  if (exit_code < 0) return fail(errno_error("pidfd_open of docker run").message());
  guard.teardown();  // the container (already gone with --rm, unless docker failed) first
  door.stop();
  return exit_code;
}

}  // namespace acp
