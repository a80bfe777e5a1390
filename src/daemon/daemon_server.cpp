// `acp daemon`: the sessions' walls and doors in one process. See include/acp/daemon/daemon.hpp
// for the protocol and docs/daemon.md for operation.
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <utility>  // before boost/asio (Boost 1.74)

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string_view>

#include "acp/backend/wall.hpp"
#include "acp/cgroup/cgroup.hpp"
#include "acp/daemon/daemon.hpp"
#include "acp/daemon/daemon_metrics.hpp"
#include "acp/daemon/sd_notify.hpp"
#include "acp/kernel/bpffs.hpp"
#include "acp/kernel/endpoint.hpp"
#include "acp/kernel/event_reader.hpp"
#include "acp/kernel/pinned_session.hpp"
#include "acp/kernel/probe.hpp"
#include "acp/kernel/session_maps.hpp"
#include "acp/kernel/sock_programs.hpp"
#include "acp/proxy/control.hpp"
#include "acp/proxy/metrics_server.hpp"
#include "acp/proxy/proxy_server.hpp"
#include "acp/proxy/request_target.hpp"
#include "acp/session/event_pump.hpp"
#include "acp/session/session_builder.hpp"
#include "acp/session/session_gc.hpp"
#include "acp/session/session_proxy.hpp"
#include "acp/session/session_record.hpp"
#include "acp/session/session_status.hpp"
#include "acp/util/json_text.hpp"
#include "acp/util/prometheus_text.hpp"

namespace acp::daemon {
namespace {

namespace asio = boost::asio;
using stream = asio::local::stream_protocol;

constexpr auto kReapInterval = std::chrono::seconds(1);
// A stopped proxy's coroutines finish on the loop after stop(); it is destroyed this much later.
constexpr auto kProxyGrace = std::chrono::seconds(30);

void log(const std::string& line) {
  std::fprintf(stderr, "acp daemon: %s\n", line.c_str());
}

nlohmann::json fail(const std::string& error) {
  return {{"ok", false}, {"error", error}};
}

// The port of "127.0.0.1:8443" / "[::1]:8443"; 0 when there is none.
uint16_t port_of(const std::string& ep) {
  auto c = ep.rfind(':');
  if (c == std::string::npos) return 0;
  try {
    long p = std::stol(ep.substr(c + 1));
    return p > 0 && p < 65536 ? static_cast<uint16_t>(p) : 0;
  } catch (...) {
    return 0;
  }
}

struct Conn;

struct Session {
  SessionRecord rec;
  std::optional<kernel::PinnedSession> pins;
  std::unique_ptr<SessionProxy> proxy;
  std::unique_ptr<EventPump> events;
  std::weak_ptr<Conn> runner;           // the acp run that registered it, while connected
  std::unique_ptr<backend::Wall> wall;  // --door=transparent|both: the loader (door_origin)
};

struct Conn : std::enable_shared_from_this<Conn> {
  explicit Conn(asio::io_context& io) : sock(io) {}
  stream::socket sock;
  ucred peer{};
  std::deque<std::string> outbox;
  bool writing = false;
  bool closed = false;

  void send(const nlohmann::json& j) {
    if (closed) return;
    outbox.push_back(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
    if (!writing) write_next();
  }
  void write_next() {
    if (outbox.empty() || closed) {
      writing = false;
      return;
    }
    writing = true;
    auto self = shared_from_this();
    asio::async_write(sock, asio::buffer(outbox.front()),
                      [self](const boost::system::error_code& ec, std::size_t) {
                        if (ec) {
                          self->closed = true;
                          self->writing = false;
                          return;
                        }
                        self->outbox.pop_front();
                        self->write_next();
                      });
  }
};

class Daemon {
 public:
  Daemon(asio::io_context& io, std::string socket_path)
      : io_(io), socket_path_(std::move(socket_path)), acceptor_(io), reaper_(io) {}

  Status start() {
    if (auto st = bind_socket(); !st) return st;
    adopt_all();
    asio::co_spawn(io_, accept_loop(), asio::detached);
    arm_reaper();
    preload_next(/*door=*/true);  // a session's default door on bpf (effective_door)
    return {};
  }

  void reload_all() {
    for (auto& [id, s] : sessions_) s->proxy->reload_policy();
  }

  // The daemon stops; the sessions do not: their pins keep the agents confined (no proxy) until
  // a daemon starts again and re-adopts them.
  void stop() {
    stopping_ = true;
    boost::system::error_code ig;
    acceptor_.close(ig);
    reaper_.cancel();
    ::unlink(socket_path_.c_str());
    for (auto& [id, s] : sessions_) retire(*s);
    for (auto& c : conns_) {
      c->closed = true;
      c->sock.close(ig);
    }
    conns_.clear();
  }

  size_t session_count() const { return sessions_.size(); }

  // /metrics: what ended sessions left behind, plus what the live ones (and the stopped doors
  // still unwinding) count now. On the event loop, like everything the sessions do.
  std::string metrics_text() const {
    DaemonMetrics m = totals_;
    m.sessions = sessions_.size();
    for (const auto& [id, s] : sessions_) {
      if (s->proxy) m.door += s->proxy->metrics();
      if (s->pins) add_wall_counters(*s->pins, m);
    }
    for (const auto& [key, g] : graveyard_)
      if (g.proxy) m.door += g.proxy->metrics();
    return render_daemon_metrics(m);
  }

 private:
  Status bind_socket() {
    namespace fs = std::filesystem;
    fs::path dir = fs::path(socket_path_).parent_path();
    if (!dir.empty() && !fs::exists(dir)) {
      std::error_code ec;
      fs::create_directories(dir, ec);
      if (ec) return make_error("create " + dir.string(), ec.value());
      ::chmod(dir.c_str(), 0755);
    }
    struct stat st {};
    if (::lstat(socket_path_.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode))
        return make_error(socket_path_ + " exists and is not a socket: remove it");
      if (connect_unix(socket_path_))
        return make_error("another acp daemon already answers on " + socket_path_);
      ::unlink(socket_path_.c_str());  // stale: its daemon is gone
    }
    boost::system::error_code ec;
    acceptor_.open(stream(), ec);
    if (!ec) acceptor_.bind(stream::endpoint(socket_path_), ec);
    if (ec) return make_error("bind " + socket_path_, ec.value());
    if (::chmod(socket_path_.c_str(), 0600) != 0) return errno_error("chmod 0600 " + socket_path_);
    acceptor_.listen(16, ec);
    if (ec) return make_error("listen on " + socket_path_, ec.value());
    return {};
  }

  // --- sessions -----------------------------------------------------------------------------

  // Re-adoption only: the door (proxy, gate, control socket, channels, audit log) of a session
  // whose wall a previous daemon built and pinned. Nothing else is built, so this is not the
  // session builder: only its proxy and allow steps, on the pins that are there.
  Status reopen_door(Session& s, uint16_t port) {
    SessionProxyConfig pcfg;
    pcfg.session_id = s.rec.id;
    pcfg.port = port;
    pcfg.port_is_explicit = true;
    if (!s.rec.policy.empty() && s.rec.policy != "<built-in>") pcfg.policy_path = s.rec.policy;
    pcfg.audit_path = s.rec.audit_log;
    pcfg.config_path = s.rec.config;
    pcfg.control_path = s.rec.control;
    pcfg.client_cgroup = s.rec.cgroup;  // only the session's own agent is served
    const std::string id = s.rec.id;
    pcfg.session_status = [id] { return session_status_to_json(read_session_status(id, false)); };
    for (const auto& arg : s.rec.command)
      pcfg.agent_command += (pcfg.agent_command.empty() ? "" : " ") + arg;
    if (s.rec.door != "proxy") {
      // The transparent door, on the very ports the pinned wall leads connections to.
      auto cfg = s.pins->config();
      if (!cfg) return cfg.error();
      pcfg.door_origin_fd = s.pins->map_fd("door_origin");
      if (pcfg.door_origin_fd < 0 || (cfg->door_port4 == 0 && cfg->door_port6 == 0))
        return make_error(
            "the session's wall has no transparent door pinned (made by an older "
            "acp?): its led-in connections stay refused");
      auto door = proxy::open_door_listeners(io_, cfg->door_port4, cfg->door_port6, cfg->dns_port4,
                                             cfg->dns_port6);
      if (!door) return door.error();
      pcfg.door = std::move(*door);
    }
    auto proxy = SessionProxy::start(io_, pcfg);
    if (!proxy) return proxy.error();
    s.proxy = std::move(*proxy);
    // --door=transparent: the explicit listener stays walled, as the session builder left it.
    if (s.rec.door != "transparent")
      for (const auto& ep : s.proxy->endpoints())
        if (auto st = kernel::add_allow_entry(s.pins->map_fd("allow_map"), ep); !st) return st;
    s.rec.proxy.clear();
    for (const auto& ep : s.proxy->endpoints()) s.rec.proxy.push_back(kernel::to_string(ep));
    s.rec.control = s.proxy->control_path();
    s.rec.audit_log = s.proxy->audit_path();
    s.rec.channels = s.proxy->channel_descriptions();  // world-readable: they hold no secret
    return follow(s);
  }

  // The kernel events of a session with pins and a door, and its record naming this daemon.
  // Shared by new and re-adopted sessions.
  Status follow(Session& s) {
    Session* sp = &s;
    s.events =
        std::make_unique<EventPump>(io_, s.pins->map_fd("events"), [this, sp](const acp_event& e) {
          totals_.count_event(e);
          sp->proxy->record_kernel_event(e);
          if (auto r = sp->runner.lock())
            r->send({{"event", kernel::event_to_json(e)}, {"text", kernel::describe_event(e)}});
        });
    if (auto st = s.events->start(); !st) return st;
    s.rec.acp_pid = ::getpid();
    s.rec.acp_start_time = process_start_time(::getpid());
    return write_session_record(kSessionRecordDir, s.rec);
  }

  // Stops a session's door and kernel events; its pins and record stay.
  void retire(Session& s) {
    if (s.events) {
      s.events->drain();
      s.events->stop();
    }
    if (s.proxy) s.proxy->stop();
    if (!s.proxy && !s.events) return;
    // Connections still unwinding on the loop use the proxy's judge and gate: it is destroyed
    // later (or when the daemon exits, before the loop is).
    const uint64_t key = next_grave_++;
    Grave& g = graveyard_[key];
    g.proxy = std::move(s.proxy);
    g.events = std::move(s.events);
    // The transparent door's proxy holds the door_origin map by the loader's or the pins' fd.
    g.wall = std::move(s.wall);
    g.pins = std::move(s.pins);
    s.pins.reset();
    g.timer = std::make_unique<asio::steady_timer>(io_, kProxyGrace);
    g.timer->async_wait([this, key](const boost::system::error_code& ec) {
      if (ec) return;
      // Its counts stay in the totals (/metrics counters never go down).
      if (auto it = graveyard_.find(key); it != graveyard_.end() && it->second.proxy)
        totals_.door += it->second.proxy->metrics().counters_only();
      graveyard_.erase(key);
    });
  }

  // The session builder (session_builder.hpp), as a standalone acp run; the agent step is the
  // runner's (it keeps the user's terminal and environment).
  Result<nlohmann::json> register_session(const nlohmann::json& req, const ucred& peer) {
    auto plan = plan_registered_session(req, peer.pid);
    if (!plan) return plan.error();
    auto built = build_session(io_, std::move(*plan));
    if (!built) return built.error();
    auto s = std::make_unique<Session>();
    s->rec = built->record;
    s->proxy = std::move(built->proxy);
    // The pins hold the wall from here; the loader's objects go (as after a re-adoption). The
    // transparent door's proxy reads the wall's door_origin map through the loader's fd: with
    // the door on, the loader stays until the session ends.
    if (s->rec.door == "proxy")
      built->wall.reset();
    else
      s->wall = std::move(built->wall);
    const std::string id = s->rec.id;
    auto undo = [&](const Error& e) -> Result<nlohmann::json> {
      if (s->events) s->events->stop();
      s->proxy->stop();
      if (auto st = teardown_session(id, s->rec.cgroup); !st)
        log("session " + id + ": " + st.error().message());
      return e;
    };
    auto pins = kernel::PinnedSession::open(s->rec.pin_dir);
    if (!pins) return undo(pins.error());
    s->pins.emplace(std::move(*pins));
    if (auto st = follow(*s); !st) return undo(st.error());
    // The socket is root's: acp run shows the page's token only on its terminal, and hides
    // the secret paths from a root agent.
    nlohmann::json reply{{"ok", true},
                         {"id", id},
                         {"cgroup", s->rec.cgroup},
                         {"proxy_url", s->proxy->proxy_url()},
                         {"mode", s->rec.mode},
                         {"channels", s->proxy->channel_descriptions()},
                         {"consent_page_url", s->proxy->consent_page_url()},
                         {"secret_paths", s->proxy->secret_paths()},
                         {"notices", built->notices}};
    log("session " + id + " registered by pid " + std::to_string(peer.pid) + " (proxy " +
        s->proxy->proxy_url() + ")");
    const bool door = s->rec.door != "proxy";
    sessions_.emplace(id, std::move(s));
    preload_next(door);
    return reply;
  }

  // The next session's programs, loaded and verified once this reply is out, so that the next
  // registration only attaches (kernel::SockPrograms::preload). With the door as the last
  // session had it: a set whose door differs is not taken, and the next session would load
  // and verify on its own critical path (every default session has the door on bpf). Failing
  // here costs only time.
  void preload_next(bool door) {
    asio::post(io_, [door] {
      kernel::SockConfig next;
      if (door) next.door_port4 = 1;  // any port: load() writes the session's own config
      if (auto st = kernel::SockPrograms::preload(next); !st)
        log("preloading the next session's programs: " + st.error().message());
    });
  }

  // Takes a session down: what is left in its cgroup is killed first, then the wall.
  Status end_session(const std::string& id) {
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return {};
    Session& s = *it->second;
    // The wall's counters go with its pins (retire() hands them to the grave): kept in the
    // totals, so /metrics counters never go down.
    if (s.pins) add_wall_counters(*s.pins, totals_);
    ++totals_.ended;
    retire(s);
    Status st = teardown_session(id, s.rec.cgroup);
    sessions_.erase(it);
    if (st)
      log("session " + id + " ended");
    else
      log("session " + id + ": " + st.error().message() +
          "; its wall stays up (sudo acp gc --kill removes it)");
    return st;
  }

  // Sessions a previous daemon held: re-adopted while their cgroup has processes, else
  // collected.
  void adopt_all() {
    for (const auto& id : known_session_ids()) {
      auto rec = read_session_record(kSessionRecordDir, id);
      if (!rec || rec->owner != "daemon" || session_owner_alive(*rec)) continue;
      auto cg = Cgroup::open(rec->cgroup);
      auto populated = cg ? cg->populated() : Result<bool>(cg.error());
      if (!populated || !*populated) {
        if (auto st = teardown_session(id, rec->cgroup); !st)
          log("session " + id + ": " + st.error().message());
        else
          log("session " + id + ": its agent had ended; collected");
        continue;
      }
      auto s = std::make_unique<Session>();
      s->rec = *rec;
      auto pins = kernel::PinnedSession::open(
          rec->pin_dir.empty() ? std::string(kBpfPinRoot) + "/" + id : rec->pin_dir);
      if (!pins) {
        log("session " + id + ": cannot re-adopt: " + pins.error().message());
        continue;
      }
      s->pins.emplace(std::move(*pins));
      uint16_t port = rec->proxy.empty() ? 0 : port_of(rec->proxy.front());
      if (port == 0) {
        log("session " + id + ": cannot re-adopt: its record names no proxy port");
        continue;
      }
      // The same port: the agent's proxy variables and the allow map name it.
      if (auto st = reopen_door(*s, port); !st) {
        log("session " + id +
            ": cannot re-adopt (the wall holds, the door stays shut): " + st.error().message());
        if (s->events) s->events->stop();
        if (s->proxy) retire(*s);
        continue;
      }
      log("session " + id + " re-adopted (proxy " + s->proxy->proxy_url() + ")");
      ++totals_.readopted;
      sessions_.emplace(id, std::move(s));
    }
  }

  // Sessions without their acp run are collected once their cgroup is empty.
  void arm_reaper() {
    reaper_.expires_after(kReapInterval);
    reaper_.async_wait([this](const boost::system::error_code& ec) {
      if (ec || stopping_) return;
      std::vector<std::string> done;
      for (auto& [id, s] : sessions_) {
        if (!s->runner.expired()) continue;
        auto cg = Cgroup::open(s->rec.cgroup);
        auto populated = cg ? cg->populated() : Result<bool>(false);
        if (populated && !*populated) done.push_back(id);
      }
      for (const auto& id : done) (void)end_session(id);
      arm_reaper();
    });
  }

  // --- connections --------------------------------------------------------------------------

  asio::awaitable<void> accept_loop() {
    while (!stopping_) {
      auto c = std::make_shared<Conn>(io_);
      boost::system::error_code ec;
      co_await acceptor_.async_accept(c->sock, asio::redirect_error(asio::use_awaitable, ec));
      if (stopping_ || ec == asio::error::operation_aborted) break;
      if (ec) continue;
      asio::co_spawn(io_, serve(c), asio::detached);
    }
  }

  asio::awaitable<void> serve(std::shared_ptr<Conn> c) {
    socklen_t len = sizeof c->peer;
    if (::getsockopt(c->sock.native_handle(), SOL_SOCKET, SO_PEERCRED, &c->peer, &len) != 0) {
      c->send(fail("cannot read peer credentials"));
      co_return;
    }
    // Root only (and the daemon's own uid, which under systemd is root too).
    if (c->peer.uid != 0 && c->peer.uid != ::geteuid()) {
      c->send(fail("permission denied: only root may use the acp daemon (uid " +
                   std::to_string(c->peer.uid) + ")"));
      co_return;
    }
    conns_.push_back(c);
    std::string buf;
    std::vector<std::string> owned;  // sessions this runner registered and has not ended
    while (!stopping_) {
      boost::system::error_code ec;
      std::size_t n = co_await asio::async_read_until(
          c->sock, asio::dynamic_buffer(buf, consent::kMaxControlLine), '\n',
          asio::redirect_error(asio::use_awaitable, ec));
      if (ec || stopping_) break;
      std::string line = buf.substr(0, n - 1);
      buf.erase(0, n);
      auto req = acp::util::parse_json(line);
      if (req.is_discarded() || !req.is_object()) {
        c->send(fail("request is not a JSON object"));
        continue;
      }
      try {
        handle(c, req, owned);
      } catch (const nlohmann::json::exception& e) {
        c->send(fail(std::string("bad request: ") + e.what()));
      }
    }
    // acp run is gone without ending its sessions (killed): they go once their cgroup is empty.
    for (const auto& id : owned)
      if (sessions_.count(id))
        log("session " + id + ": its acp run is gone; the session ends when its agent does");
    c->closed = true;
    conns_.erase(std::remove(conns_.begin(), conns_.end(), c), conns_.end());
  }

  void handle(const std::shared_ptr<Conn>& c, const nlohmann::json& req,
              std::vector<std::string>& owned) {
    {
      const std::string op = req.value("op", "");
      const std::string id = req.value("id", "");
      if (op == "ping") {
        nlohmann::json ids = nlohmann::json::array();
        for (const auto& [sid, s] : sessions_) ids.push_back(sid);
        c->send({{"ok", true}, {"pid", ::getpid()}, {"sessions", ids}});
      } else if (op == "register") {
        auto r = register_session(req, c->peer);
        if (!r) {
          ++totals_.register_failures;
          c->send(fail(r.error().message()));
          return;
        }
        ++totals_.registered;
        const std::string sid = (*r)["id"].get<std::string>();
        sessions_[sid]->runner = c;
        owned.push_back(sid);
        c->send(*r);
      } else if (op == "started") {
        if (auto it = sessions_.find(id); it != sessions_.end()) {
          it->second->rec.agent_pid = req.value("agent_pid", pid_t{0});
          it->second->rec.task_limit = req.value("task_limit", std::string());
          (void)write_session_record(kSessionRecordDir, it->second->rec);
        }
      } else if (op == "reload") {
        if (auto it = sessions_.find(id); it != sessions_.end()) it->second->proxy->reload_policy();
      } else if (op == "end") {
        // A session the daemon does not hold (any more) is ended already, or was never its.
        auto rec = read_session_record(kSessionRecordDir, id);
        if (!sessions_.count(id) && rec) {
          c->send(fail("session " + id + " is not held by this daemon"));
          return;
        }
        auto st = end_session(id);
        owned.erase(std::remove(owned.begin(), owned.end(), id), owned.end());
        c->send(st ? nlohmann::json{{"ok", true}, {"id", id}} : fail(st.error().message()));
      } else {
        c->send(fail("unknown op \"" + op + "\""));
      }
    }
  }

  asio::io_context& io_;
  std::string socket_path_;
  stream::acceptor acceptor_;
  asio::steady_timer reaper_;
  bool stopping_ = false;
  std::map<std::string, std::unique_ptr<Session>> sessions_;
  std::vector<std::shared_ptr<Conn>> conns_;
  struct Grave {
    std::unique_ptr<SessionProxy> proxy;
    std::unique_ptr<EventPump> events;
    std::unique_ptr<backend::Wall> wall;
    std::optional<kernel::PinnedSession> pins;
    std::unique_ptr<asio::steady_timer> timer;
  };
  std::map<uint64_t, Grave> graveyard_;
  uint64_t next_grave_ = 0;
  DaemonMetrics totals_;  // what ended sessions left, the events seen, the session counts

  static void add_wall_counters(const kernel::PinnedSession& pins, DaemonMetrics& m) {
    if (auto c = pins.counters()) m.kernel += *c;
    if (auto lost = pins.lost_events()) m.kernel_events_lost += *lost;
  }
};

// --metrics=ADDR:PORT as the endpoint to listen on (numeric address, TCP).
Result<asio::ip::tcp::endpoint> metrics_endpoint(const std::string& text) {
  auto ep = kernel::parse_endpoint(text);
  if (!ep) return ep.error();
  if (ep->proto != ACP_PROTO_TCP)
    return make_error("\"" + text + "\": the metrics endpoint is HTTP: ADDR:PORT over TCP");
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(kernel::address_string(ep->addr), ec);
  if (ec) return make_error("\"" + text + "\": " + ec.message());
  return asio::ip::tcp::endpoint(proxy::unmapped(addr), ep->port);
}

}  // namespace

Result<SessionPlan> plan_registered_session(const nlohmann::json& req, pid_t runner_pid) {
  SessionPlan plan;
  plan.kind = backend::Kind::kBpf;
  plan.root = true;
  SessionRecord& rec = plan.record;
  rec.command = req.value("command", std::vector<std::string>{});
  if (rec.command.empty()) return make_error("register: no command");
  for (const auto& a : req.value("allow", std::vector<std::string>{})) {
    auto ep = kernel::parse_endpoint(a);
    if (!ep) return make_error("--allow=" + a + ": " + ep.error().message());
    plan.extra_allow.push_back(*ep);
  }
  for (const auto& u : req.value("allow_unix", std::vector<std::string>{})) {
    if (auto key = kernel::parse_unix_name(u); !key)
      return make_error("--allow-unix=" + u + ": " + key.error().message());
    plan.allow_unix.push_back(u);
  }
  plan.audit_only = req.value("audit_only", false);
  auto door = parse_door(req.value("door", std::string("proxy")));
  if (!door) return door.error();
  plan.door = *door;
  rec.uid = req.value("uid", uid_t{0});
  rec.user = req.value("user", std::string());
  rec.policy = req.contains("policy") && req["policy"].is_string()
                   ? req["policy"].get<std::string>()
                   : "<built-in>";
  rec.audit_log = req.value("audit_log", std::string());
  rec.config = req.value("config", std::string());
  rec.owner = "daemon";
  rec.runner_pid = runner_pid;
  SessionProxyConfig& pcfg = plan.proxy;
  pcfg.port = kDefaultProxyPort;
  if (auto p = req.find("proxy_port"); p != req.end() && p->is_number_unsigned()) {
    pcfg.port = p->get<uint16_t>();
    pcfg.port_is_explicit = true;
  }
  if (rec.policy != "<built-in>") pcfg.policy_path = rec.policy;
  pcfg.audit_path = rec.audit_log;
  pcfg.config_path = rec.config;
  return plan;
}

int run_daemon(const DaemonOptions& o) {
  std::optional<asio::ip::tcp::endpoint> metrics_at;
  if (!o.metrics.empty()) {
    auto ep = metrics_endpoint(o.metrics);
    if (!ep) {
      std::fprintf(stderr, "acp daemon: --metrics=%s: %s\n", o.metrics.c_str(),
                   ep.error().message().c_str());
      return 1;
    }
    metrics_at = *ep;
  }
  if (::geteuid() != 0) {
    std::fprintf(stderr, "acp daemon: needs root (it loads BPF programs and makes cgroups)\n");
    return 1;
  }
  std::string why;
  if (!kernel::bpf_backend_supported(&why)) {
    std::fprintf(stderr, "acp daemon: cgroup BPF is not usable on this machine: %s\n", why.c_str());
    return 1;
  }
  if (auto st = kernel::ensure_bpffs(); !st) {
    std::fprintf(stderr, "acp daemon: %s\n", st.error().message().c_str());
    return 1;
  }
  ::signal(SIGPIPE, SIG_IGN);
  asio::io_context io(1);
  asio::signal_set signals(io, SIGINT, SIGTERM, SIGHUP);
  Daemon d(io, o.socket.empty() ? default_socket_path() : o.socket);
  // Before the sessions are taken over: a metrics address that cannot be served stops the
  // daemon before it holds anything.
  std::unique_ptr<proxy::MetricsServer> metrics;
  if (metrics_at) {
    auto m = proxy::MetricsServer::start(
        io, *metrics_at, "daemon metrics (" + o.metrics + ")", [&d](std::string_view target) {
          const auto path = target.substr(0, target.find('?'));
          if (path == "/metrics")
            return proxy::HttpReply{200, util::kPrometheusContentType, d.metrics_text()};
          if (path == "/healthz") return proxy::HttpReply{200, "text/plain; charset=utf-8", "ok\n"};
          return proxy::HttpReply{404, "text/plain; charset=utf-8",
                                  "not found: /metrics, /healthz\n"};
        });
    if (!m) {
      std::fprintf(stderr, "acp daemon: --metrics=%s: %s\n", o.metrics.c_str(),
                   m.error().message().c_str());
      return 1;
    }
    metrics = std::move(*m);
  }
  if (auto st = d.start(); !st) {
    std::fprintf(stderr, "acp daemon: %s\n", st.error().message().c_str());
    return 1;
  }
  log("ready on " + (o.socket.empty() ? default_socket_path() : o.socket) + " (pid " +
      std::to_string(::getpid()) + ", " + std::to_string(d.session_count()) +
      " session(s) re-adopted)" +
      (metrics ? ", metrics on http://" + o.metrics + "/metrics" : std::string()));
  if (auto st = sd_notify("READY=1\nSTATUS=serving " + std::to_string(d.session_count()) +
                          " session(s)\nMAINPID=" + std::to_string(::getpid()));
      !st)
    log("warning: " + st.error().message());
  std::function<void()> arm = [&] {
    signals.async_wait([&](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      if (sig == SIGHUP) {
        (void)sd_notify("RELOADING=1");
        d.reload_all();
        (void)sd_notify("READY=1");
        arm();
        return;
      }
      (void)sd_notify("STOPPING=1");
      log("stopping; the sessions stay confined until a daemon re-adopts them");
      if (metrics) metrics->stop();
      d.stop();
      signals.cancel();
      // Leave the stopped proxies' grace timers behind: nothing else runs after this.
      io.stop();
    });
  };
  arm();
  io.run();
  return 0;
}

}  // namespace acp::daemon
