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
#include "acp/launch/session_signals.hpp"
#include "acp/session/channel_notice.hpp"
#include "acp/session/session_gc.hpp"
#include "acp/session/session_id.hpp"
#include "acp/session/session_proxy.hpp"
#include "acp/session/session_record.hpp"
#include "acp/session/session_status.hpp"
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

}  // namespace

void add_contain_options(CLI::App* sub, ContainOptions& o) {
  sub->add_option("--image", o.image,
                  "The agent's image (default: $ACP_AGENT_IMAGE, else acp-agent:latest, which "
                  "scripts/build-agent-image.sh builds)");
  sub->add_option("--workspace", o.workspace,
                  "Host directory mounted at /workspace, read-only unless --writable (default: "
                  "the current directory)");
  sub->add_flag("--no-workspace", o.no_workspace, "Mount no workspace");
  sub->add_flag("--writable", o.writable, "Mount the workspace read-write");
  sub->add_option("--env", o.env,
                  "Pass the variable KEY from acp's environment into the container "
                  "(repeatable; the value stays out of the command line)")
      ->allow_extra_args(false);
  sub->add_option("--proxy-port", o.proxy_port,
                  "Port of the session's consent proxy on the network's gateway (default 8443; "
                  "the next free port when 8443 is taken)")
      ->check(CLI::Range(1, 65535));
  sub->add_option("--policy", o.policy,
                  "Policy file (YAML); default: the config's `policy`, else the built-in policy");
  sub->add_option("--config", o.config,
                  "ACP config (consent channels); default: /etc/acp/config.yml, see `acp init`");
  sub->add_option("--audit-log", o.audit_log,
                  "Audit log file (JSON lines, hash-chained; default /var/log/acp/audit.jsonl)");
  sub->add_option("command", o.command, "The agent command and its arguments (after --)")
      ->required();
  sub->positionals_at_end();
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

  SessionRecord rec;
  rec.id = id;
  rec.acp_pid = ::getpid();
  rec.acp_start_time = process_start_time(::getpid());
  rec.uid = 0;
  rec.user = "container (" + spec.image + ")";
  rec.command = o.command;
  rec.backend = "docker";
  rec.mode = "enforce";
  rec.policy = o.policy.value_or("<built-in>");
  rec.started_at = static_cast<int64_t>(std::time(nullptr));
  rec.container = backend::docker_object_name(id);
  rec.image = spec.image;
  rec.docker_host = docker->host;
  if (auto st = write_session_record(kSessionRecordDir, rec); !st)
    return fail(st.error().message());
  DockerSessionGuard guard(*docker, id);

  sigset_t sigs = launch::session_signals();
  sigprocmask(SIG_BLOCK, &sigs, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  auto net = backend::create_docker_network(*docker, id);
  if (!net) return fail(net.error().message());

  asio::io_context io(1);
  SessionProxyConfig pcfg;
  pcfg.session_id = id;
  pcfg.port = o.proxy_port.value_or(8443);
  pcfg.port_is_explicit = o.proxy_port.has_value();
  pcfg.listen_addresses = {net->gateway};
  pcfg.policy_path = o.policy;
  pcfg.audit_path = o.audit_log;
  pcfg.config_path = o.config;
  pcfg.session_status = [id] { return session_status_to_json(read_session_status(id, false)); };
  for (const auto& arg : o.command)
    pcfg.agent_command += (pcfg.agent_command.empty() ? "" : " ") + arg;
  auto proxy = SessionProxy::start(io, pcfg);
  if (!proxy) return fail(proxy.error().message());
  print_consent_channels(stderr, is_private_terminal(STDERR_FILENO),
                         "acp contain: consent channel ", (*proxy)->channel_descriptions(),
                         (*proxy)->consent_page_url());
  const auto endpoints = (*proxy)->endpoints();
  const uint16_t port = endpoints.front().port;

  backend::DockerFirewallSpec fw{backend::docker_chain_name(id), net->bridge, net->gateway, port};
  if (auto st = backend::install_docker_firewall(fw); !st) return fail(st.error().message());

  spec.proxy_url = (*proxy)->proxy_url();
  rec.proxy.clear();
  for (const auto& ep : endpoints) rec.proxy.push_back(to_string(ep));
  rec.control = (*proxy)->control_path();
  rec.audit_log = (*proxy)->audit_path();
  rec.cgroup.clear();
  rec.channels = (*proxy)->channel_descriptions();  // world-readable: they hold no secret
  rec.task_limit = "container --pids-limit=256";
  rec.subnet = net->subnet;

  auto pid = backend::spawn_process(backend::docker_run_argv(*docker, spec));
  if (!pid) return fail(pid.error().message());
  rec.agent_pid = *pid;
  if (auto st = write_session_record(kSessionRecordDir, rec); !st)
    std::fprintf(stderr, "acp contain: warning: %s\n", st.error().message().c_str());
  std::fprintf(stderr,
               "acp: session %s: container %s (%s) on network %s %s, proxy %s, enforce mode "
               "(docker)\n",
               id.c_str(), backend::docker_object_name(id).c_str(), spec.image.c_str(),
               net->name.c_str(), net->subnet.c_str(), spec.proxy_url.c_str());

  int exit_code = kExitAcpFailed;
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, *pid, 0)));
  if (!pidfd) return fail(errno_error("pidfd_open of docker run").message());
  asio::posix::stream_descriptor pid_stream(io, ::dup(pidfd.get()));
  pid_stream.async_wait(
      asio::posix::stream_descriptor::wait_read, [&](const boost::system::error_code&) {
        int status = 0;
        while (::waitpid(*pid, &status, 0) < 0 && errno == EINTR) {
        }
        exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        io.stop();
      });

  int stops = 0;
  auto signals = launch::SignalWatch::start(io, sigs, [&](int sig, bool from_kernel) {
    if (sig == SIGHUP) (*proxy)->reload_policy();
    if ((sig == SIGINT || sig == SIGTERM) && ++stops >= 2) {
      // Asked twice: the container goes now (docker run then ends).
      (void)backend::run_command(docker->command({"rm", "-f", backend::docker_object_name(id)}));
      return;
    }
    // docker run passes it to the container (--sig-proxy).
    if (!from_kernel) (void)::syscall(SYS_pidfd_send_signal, pidfd.get(), sig, nullptr, 0);
  });
  if (!signals) std::fprintf(stderr, "acp: %s\n", signals.error().message().c_str());
  io.run();

  guard.teardown();  // the container (already gone with --rm, unless docker failed) first
  (*proxy)->stop();
  return exit_code;
}

}  // namespace acp
