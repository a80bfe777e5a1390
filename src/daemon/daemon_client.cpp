// `acp run` with a daemon: the daemon builds the wall and holds the door; acp run launches the
// agent into the session cgroup (so it inherits this terminal and environment), forwards
// signals, prints the kernel events the daemon sends, and ends the session when the agent
// exits. If the daemon goes away meanwhile, the agent stays confined; at the end acp run asks
// whichever daemon runs then to take the session down, or does it itself.
#include <signal.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <cstdio>
#include <filesystem>
#include <functional>

#include "acp/cgroup/cgroup.hpp"
#include "acp/cgroup/mounts.hpp"
#include "acp/daemon/daemon.hpp"
#include "acp/kernel/endpoint.hpp"
#include "acp/kernel/session_maps.hpp"
#include "acp/launch/agent_env.hpp"
#include "acp/launch/agent_launcher.hpp"
#include "acp/launch/session_signals.hpp"
#include "acp/launch/socket_stdio.hpp"
#include "acp/launch/target_user.hpp"
#include "acp/session/channel_notice.hpp"
#include "acp/session/session_builder.hpp"
#include "acp/session/session_gc.hpp"
#include "acp/util/fd_limit.hpp"

namespace acp::daemon {
namespace {

namespace asio = boost::asio;
using namespace acp::launch;  // NOLINT(google-build-using-namespace)

constexpr int kExitAcpFailed = 125;
constexpr auto kRegisterTimeout = std::chrono::seconds(60);
constexpr auto kEndTimeout = std::chrono::seconds(60);
constexpr auto kStdioDrainLimit = std::chrono::seconds(10);

int fail(const std::string& what) {
  std::fprintf(stderr, "acp run: %s\n", what.c_str());
  return kExitAcpFailed;
}

std::string absolute(const std::string& p) {
  if (p.empty()) return p;
  std::error_code ec;
  auto a = std::filesystem::absolute(p, ec);
  return ec ? p : a.lexically_normal().string();
}

// Ends session `id`: over `ch` when the daemon that holds it is still connected, else through
// whichever daemon answers on `path` now, else here (acp run is root).
void end_session(LineChannel* ch, const std::string& path, const std::string& id) {
  auto ask = [&](LineChannel& c) -> Result<nlohmann::json> {
    if (auto st = c.send({{"op", "end"}, {"id", id}}); !st) return st.error();
    for (;;) {
      auto r = c.receive(kEndTimeout);
      if (!r) return r;
      if (r->contains("event")) continue;  // late kernel events
      return r;
    }
  };
  Result<nlohmann::json> r = make_error("not connected");
  if (ch) r = ask(*ch);
  if (!r) {
    if (auto fd = connect_unix(path)) {
      LineChannel fresh(std::move(*fd));
      r = ask(fresh);
    }
  }
  if (r && r->value("ok", false)) return;
  if (r) std::fprintf(stderr, "acp run: the daemon: %s\n", r->value("error", "").c_str());
  // No daemon: take it down here, processes first, as a standalone acp run would.
  if (auto st = teardown_session(id, cgroup_path_of(id)); !st)
    std::fprintf(stderr,
                 "acp run: %s\nacp run: the wall of session %s stays up; run `sudo acp gc "
                 "--kill` to remove it\n",
                 st.error().message().c_str(), id.c_str());
}

// Until the agent exits: its exit (pidfd), the daemon's kernel events, signals. *connected
// turns false when the daemon goes away meanwhile.
int wait_for_agent(LineChannel& ch, Agent& agent, const sigset_t& sigs, const std::string& id,
                   bool json_events, bool* connected) {
  asio::io_context io(1);
  int exit_code = kExitAcpFailed;
  asio::posix::stream_descriptor pidfd_stream(io, ::dup(agent.pidfd.get()));
  pidfd_stream.async_wait(asio::posix::stream_descriptor::wait_read,
                          [&](const boost::system::error_code&) {
                            auto st = wait_agent(agent);
                            exit_code = st ? *st : kExitAcpFailed;
                            io.stop();
                          });

  asio::posix::stream_descriptor daemon_stream(io, ::dup(ch.fd()));
  std::function<void()> arm_daemon = [&] {
    daemon_stream.async_wait(
        asio::posix::stream_descriptor::wait_read, [&](const boost::system::error_code& ec) {
          if (ec) return;
          bool eof = false;
          for (const auto& m : ch.receive_available(&eof)) {
            if (!m.contains("event")) continue;
            if (json_events)
              std::fprintf(stderr, "%s\n", m["event"].dump().c_str());
            else
              std::fprintf(stderr, "acp: %s\n", m.value("text", "").c_str());
          }
          if (eof) {
            *connected = false;
            std::fprintf(stderr,
                         "acp run: lost the acp daemon; the agent stays confined, without a "
                         "proxy until a daemon re-adopts session %s\n",
                         id.c_str());
            return;
          }
          arm_daemon();
        });
  };
  arm_daemon();

  auto signals = launch::SignalWatch::start(io, sigs, [&](int sig, bool from_kernel) {
    if (sig == SIGHUP && *connected) (void)ch.send({{"op", "reload"}, {"id", id}});
    if (!from_kernel) (void)forward_signal(agent, sig);
  });
  if (!signals) std::fprintf(stderr, "acp run: %s\n", signals.error().message().c_str());
  io.run();
  return exit_code;
}

int run_registered(const RunOptions& o, LineChannel ch, const std::string& path) {
  for (const auto& a : o.allow)
    if (auto ep = kernel::parse_endpoint(a); !ep)
      return fail("--allow=" + a + ": " + ep.error().message());
  for (const auto& u : o.allow_unix)
    if (auto key = kernel::parse_unix_name(u); !key)
      return fail("--allow-unix=" + u + ": " + key.error().message());
  auto user = resolve_target_user(o.user, env_to_map(current_environment()), o.allow_root);
  if (!user) return fail(user.error().message());
  auto cg_root = cgroup2_mount_point();
  if (!cg_root) return fail(cg_root.error().message());

  if (auto st = ch.send(register_request(o, *user)); !st) return fail(st.error().message());
  auto reply = ch.receive(kRegisterTimeout);
  if (!reply)
    return fail("register with the acp daemon on " + path + ": " + reply.error().message());
  if (!reply->value("ok", false))
    return fail("the acp daemon refused the session: " + reply->value("error", std::string("?")));
  const std::string id = reply->value("id", "");
  const std::string cg_path = reply->value("cgroup", "");
  const std::string proxy_url = reply->value("proxy_url", "");
  for (const auto& notice : reply->value("notices", std::vector<std::string>{}))
    std::fprintf(stderr, "acp: %s\n", notice.c_str());
  print_consent_channels(stderr, is_private_terminal(STDERR_FILENO), "acp run: consent channel ",
                         reply->value("channels", std::vector<std::string>{}),
                         reply->value("consent_page_url", std::string()));

  // Signals are blocked before the agent exists; the launcher resets the agent's mask.
  const sigset_t sigs = launch::session_signals();
  sigprocmask(SIG_BLOCK, &sigs, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  auto cg = Cgroup::open(cg_path);
  if (!cg) {
    end_session(&ch, path, id);
    return fail(cg.error().message());
  }
  // The agent step, as in a standalone session (session_builder.hpp).
  AgentPlan ap;
  ap.argv = o.command;
  ap.user = &*user;
  ap.session_id = id;
  ap.proxy_url = proxy_url;
  ap.cgroup2_root = *cg_root;
  ap.cgroup_path = cg_path;
  ap.cgroup_fd = cg->fd();
  ap.max_tasks = o.max_tasks;
  ap.secret_paths = reply->value("secret_paths", std::vector<std::string>{});
  auto prepared = prepare_agent(ap);
  if (!prepared) {
    end_session(&ch, path, id);
    return fail(prepared.error().message());
  }
  AgentSpec& spec = prepared->spec;

  // A socket as stdin/stdout/stderr is relayed through a pipe (launch/socket_stdio.hpp).
  auto stdio = SocketStdio::prepare();
  if (!stdio) {
    end_session(&ch, path, id);
    return fail(stdio.error().message());
  }
  spec.stdin_fd = (*stdio)->agent_fd(0);
  spec.stdout_fd = (*stdio)->agent_fd(1);
  spec.stderr_fd = (*stdio)->agent_fd(2);
  auto agent = spawn_agent(spec);
  if (!agent) {
    std::fprintf(stderr, "acp run: %s\n", agent.error().message().c_str());
    end_session(&ch, path, id);
    return agent.error().exit_code;
  }
  (*stdio)->start();
  (void)ch.send({{"op", "started"},
                 {"id", id},
                 {"agent_pid", agent->pid},
                 {"task_limit", prepared->task_limit}});
  raise_fd_limit_for_tunnels();
  std::fprintf(stderr, "acp: session %s: agent pid %d as %s, proxy %s, %s mode (bpf, acp daemon)\n",
               id.c_str(), agent->pid, user->name.c_str(), proxy_url.c_str(),
               reply->value("mode", "enforce").c_str());

  bool connected = true;
  const int exit_code = wait_for_agent(ch, *agent, sigs, id, o.json_events, &connected);

  end_session(connected ? &ch : nullptr, path, id);
  // The session's processes are gone: their last output reaches the sockets before acp ends.
  (*stdio)->finish(kStdioDrainLimit);
  return exit_code;
}

}  // namespace

DaemonRoute daemon_route(const RunOptions& o, bool root) {
  DaemonRoute r;
  if (o.daemon == "never") return r;
  r.required = o.daemon == "required";
  r.socket = o.daemon_socket.empty() ? default_socket_path() : o.daemon_socket;
  const std::string backend = requested_backend(o);
  if (!root)
    r.why_not = "the daemon's socket is root's: run acp run as root (sudo)";
  else if (backend != "auto" && backend != "bpf")
    r.why_not = "--backend=" + backend + " sessions run standalone (the daemon builds bpf walls)";
  else if (o.inspect_tls)
    r.why_not = "--inspect-tls sessions run standalone (the daemon does not inspect TLS yet)";
  r.ask = r.why_not.empty();
  // A daemon asked for by name that cannot hold the session is refused, never ignored.
  if (!r.ask && r.required)
    r.refusal = "--daemon=required: " + r.why_not;
  else if (!r.ask && !o.daemon_socket.empty())
    r.refusal = "--daemon-socket=" + o.daemon_socket + ": " + r.why_not;
  return r;
}

nlohmann::json register_request(const RunOptions& o, const launch::TargetUser& user) {
  nlohmann::json req{{"op", "register"},
                     {"uid", user.uid},
                     {"user", user.name},
                     {"command", o.command},
                     {"allow", o.allow},
                     {"allow_unix", o.allow_unix},
                     {"audit_only", o.audit_only},
                     {"door", effective_door(o, /*bpf=*/true)},  // a daemon's sessions are bpf
                     {"config", absolute(o.config)},
                     {"audit_log", absolute(o.audit_log)}};
  if (o.proxy_port) req["proxy_port"] = *o.proxy_port;
  if (o.policy) req["policy"] = absolute(*o.policy);
  return req;
}

std::optional<int> run_via_daemon(const RunOptions& o) {
  const DaemonRoute route = daemon_route(o, ::geteuid() == 0);
  if (!route.ask) {
    if (!route.refusal.empty()) return fail(route.refusal);
    return std::nullopt;
  }
  if (auto st = validate_run_options(o); !st) return fail(st.error().message());
  auto fd = connect_unix(route.socket);
  if (!fd) {
    if (route.required)
      return fail("--daemon=required: no acp daemon answers on " + route.socket + " (" +
                  fd.error().message() + "): start it with `systemctl start acp`");
    return std::nullopt;
  }
  return run_registered(o, LineChannel(std::move(*fd)), route.socket);
}

}  // namespace acp::daemon
