#include "acp/proxy/control.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "acp/util/json_text.hpp"
#include "acp/util/scope_exit.hpp"
#include "acp/util/unique_fd.hpp"

namespace acp::consent {

namespace asio = boost::asio;
using stream = asio::local::stream_protocol;

namespace {

constexpr int kMaxConnections = 32;
constexpr auto kIdleTimeout = std::chrono::seconds(60);
constexpr long kMaxDurationS = 366L * 24 * 3600;

nlohmann::json fail(const std::string& code, const std::string& error) {
  return {{"ok", false}, {"code", code}, {"error", error}};
}

bool safe_for_path(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')) return false;
  return true;
}

// Connects to a unix socket: 0 when something listens there, else the errno. Non-blocking:
// a live server whose backlog is full (busy or hung) must not hang a starting session; it
// answers EAGAIN and counts as live.
int probe_socket(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return errno;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof sa.sun_path) return ENAMETOOLONG;
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) return 0;
  return errno == EAGAIN ? 0 : errno;
}

// Ready `path` for bind(): false when a live server holds it. A stale socket file is removed.
Result<bool> claim_path(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return true;
    return errno_error("stat " + path);
  }
  if (!S_ISSOCK(st.st_mode))
    return make_error(path + " exists and is not a socket: remove it or choose another path");
  int e = probe_socket(path);
  if (e == 0) return false;
  if (e != ECONNREFUSED && e != ENOENT) return make_error("probe control socket " + path, e);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return errno_error("remove stale " + path);
  return true;
}

}  // namespace

std::string control_run_dir() {
  const char* d = std::getenv("ACP_RUN_DIR");
  return d && *d ? d : kDefaultRunDir;
}

nlohmann::json handle_control_request(ConsentGate& gate, const nlohmann::json& req,
                                      const std::string& peer) {
  if (!req.is_object()) return fail("bad_request", "request is not a JSON object");
  auto op_it = req.find("op");
  if (op_it == req.end() || !op_it->is_string())
    return fail("bad_request", "request has no \"op\" string");
  const std::string op = *op_it;
  if (op == "ping") return {{"ok", true}, {"session", gate.session_id()}};
  if (op == "pending") {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& p : gate.pending()) list.push_back(to_json(p));
    return {{"ok", true}, {"session", gate.session_id()}, {"pending", list}};
  }
  if (op != "approve" && op != "deny") return fail("bad_request", "unknown op \"" + op + "\"");
  auto id_it = req.find("id");
  if (id_it == req.end() || !id_it->is_string() || id_it->get<std::string>().empty())
    return fail("bad_request", "request has no \"id\" string");
  const std::string id = *id_it;
  Answer a;
  a.by = peer;
  if (op == "approve") {
    a.approve = true;
    std::string scope = "once";
    if (auto s = req.find("scope"); s != req.end()) {
      if (!s->is_string() || !parse_scope(s->get<std::string>(), a.scope))
        return fail("bad_request", "scope must be once, duration, session or always");
    }
    if (auto d = req.find("duration_s"); d != req.end() && !d->is_null()) {
      if (!d->is_number_integer() || d->get<long long>() < 0 || d->get<long long>() > kMaxDurationS)
        return fail("bad_request",
                    "duration_s must be an integer from 0 to " + std::to_string(kMaxDurationS));
      a.duration = std::chrono::seconds(d->get<long long>());
    }
  } else {
    if (auto r = req.find("reason"); r != req.end() && !r->is_null()) {
      if (!r->is_string()) return fail("bad_request", "reason must be a string");
      a.reason = r->get<std::string>().substr(0, 1024);
    }
  }
  if (auto st = gate.answer(id, a); !st)
    return fail(st.error().err == ENOENT ? "unknown_id" : "failed", st.error().context);
  nlohmann::json ok{{"ok", true}, {"id", id}, {"session", gate.session_id()}};
  if (a.approve) ok["scope"] = to_string(a.scope);
  return ok;
}

std::optional<nlohmann::json> handle_control_line(ConsentGate& gate, std::string_view line,
                                                  const std::string& peer) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.empty()) return std::nullopt;
  auto req = acp::util::parse_json(line);
  if (req.is_discarded()) return fail("bad_request", "request is not valid JSON");
  return handle_control_request(gate, req, peer);
}

std::string control_reply_text(const nlohmann::json& reply) {
  return reply.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

struct ControlServer::Impl : std::enable_shared_from_this<ControlServer::Impl> {
  Impl(asio::io_context& io, ConsentGate& g) : io(io), gate(g), acceptor(io) {}

  struct Conn {
    Conn(asio::io_context& io) : sock(io), timer(io) {}
    stream::socket sock;
    asio::steady_timer timer;
    uint64_t serial = 0;  // accept order: the oldest is evicted when the table is full
    void arm() {
      timer.expires_after(kIdleTimeout);
      timer.async_wait([this](boost::system::error_code ec) {
        if (!ec) {
          boost::system::error_code ig;
          sock.close(ig);
        }
      });
    }
  };

  asio::io_context& io;
  ConsentGate& gate;
  stream::acceptor acceptor;
  std::string path;
  bool stopped = false;
  uint64_t next_serial = 0;
  std::set<std::shared_ptr<Conn>> conns;
  std::function<nlohmann::json()> stats;  // {"op":"stats"}

  asio::awaitable<void> accept_loop() {
    auto self = shared_from_this();
    while (!stopped) {
      auto c = std::make_shared<Conn>(io);
      boost::system::error_code ec;
      co_await acceptor.async_accept(c->sock, asio::redirect_error(asio::use_awaitable, ec));
      if (stopped) break;
      if (ec) {
        if (ec == asio::error::operation_aborted) break;
        continue;  // EMFILE and the like: the next accept may work
      }
      asio::co_spawn(io, serve(c), asio::detached);
    }
  }

  asio::awaitable<void> reply(const std::shared_ptr<Conn>& c, const nlohmann::json& j) {
    std::string out = control_reply_text(j);
    boost::system::error_code ec;
    co_await asio::async_write(c->sock, asio::buffer(out),
                               asio::redirect_error(asio::use_awaitable, ec));
  }

  asio::awaitable<void> serve(std::shared_ptr<Conn> c) {
    auto self = shared_from_this();
    auto closer = util::on_scope_exit([self, c] {
      boost::system::error_code ig;
      c->timer.cancel();
      c->sock.close(ig);
      self->conns.erase(c);
    });
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(c->sock.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      co_await reply(c, fail("forbidden", "cannot read peer credentials"));
      co_return;
    }
    // Root only. The server's own uid too, so an unprivileged test can talk to its own server;
    // under acp that uid is root.
    if (cred.uid != 0 && cred.uid != ::geteuid()) {
      co_await reply(c, fail("forbidden",
                             "permission denied: only root may use the control "
                             "socket (uid " +
                                 std::to_string(cred.uid) + ")"));
      co_return;
    }
    // A full table drops its oldest connection rather than refusing the new one: clients that
    // connect and never finish a line (stalled, or hung) must not lock the human out of
    // pending/approve/deny until their idle timeout.
    if (static_cast<int>(conns.size()) >= kMaxConnections) {
      auto oldest = std::min_element(conns.begin(), conns.end(), [](const auto& a, const auto& b) {
        return a->serial < b->serial;
      });
      boost::system::error_code ig;
      (*oldest)->timer.cancel();
      (*oldest)->sock.close(ig);
      conns.erase(oldest);
    }
    c->serial = next_serial++;
    conns.insert(c);
    std::string peer =
        "control uid=" + std::to_string(cred.uid) + " pid=" + std::to_string(cred.pid);
    std::string buf;
    while (!stopped) {
      c->arm();
      boost::system::error_code ec;
      std::size_t n =
          co_await asio::async_read_until(c->sock, asio::dynamic_buffer(buf, kMaxControlLine), '\n',
                                          asio::redirect_error(asio::use_awaitable, ec));
      if (stopped) co_return;
      if (ec == asio::error::not_found) {
        co_await reply(c, fail("bad_request", "request line longer than " +
                                                  std::to_string(kMaxControlLine) + " bytes"));
        co_return;
      }
      if (ec) co_return;  // closed, idle timeout, reset
      std::string line = buf.substr(0, n - 1);
      buf.erase(0, n);
      if (stats) {
        auto req = acp::util::parse_json(line);
        if (req.is_object() && req.value("op", nlohmann::json()) == "stats") {
          nlohmann::json answer = {
              {"ok", true}, {"session", gate.session_id()}, {"proxy", stats()}};
          co_await reply(c, answer);
          continue;
        }
      }
      auto resp = handle_control_line(gate, line, peer);
      if (!resp) continue;
      co_await reply(c, *resp);
    }
  }

  void stop() {
    if (stopped) return;
    stopped = true;
    boost::system::error_code ig;
    acceptor.close(ig);
    for (auto& c : conns) {
      c->timer.cancel();
      c->sock.close(ig);
    }
    if (!path.empty()) ::unlink(path.c_str());
  }
};

Result<std::unique_ptr<ControlServer>> ControlServer::start(asio::io_context& io,
                                                            const std::string& path,
                                                            ConsentGate& gate) {
  namespace fs = std::filesystem;
  fs::path dir = fs::path(path).parent_path();
  if (!dir.empty()) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) {
      std::error_code ec;
      fs::create_directories(dir, ec);
      if (ec) return make_error("create control socket directory " + dir.string(), ec.value());
      ::chmod(dir.c_str(), 0755);
    } else if (!S_ISDIR(st.st_mode)) {
      return make_error(dir.string() + " is not a directory");
    }
  }
  auto impl = std::make_shared<Impl>(io, gate);
  std::string chosen = path;
  auto claimed = claim_path(chosen);
  if (!claimed) return claimed.error();
  auto session_path = [&]() -> Result<std::string> {
    if (!safe_for_path(gate.session_id()))
      return make_error("session id \"" + gate.session_id() +
                        "\" cannot name a control socket (letters, digits, - and _ only)");
    return (dir / ("control-" + gate.session_id() + ".sock")).string();
  };
  for (int attempt = 0;; ++attempt) {
    if (!*claimed) {  // a live server holds it: this session gets its own socket
      auto sp = session_path();
      if (!sp) return sp.error();
      if (chosen == *sp) return make_error("a live server already answers on " + chosen);
      chosen = *sp;
      claimed = claim_path(chosen);
      if (!claimed) return claimed.error();
      continue;
    }
    boost::system::error_code ec;
    impl->acceptor.open(stream(), ec);
    if (!ec) impl->acceptor.bind(stream::endpoint(chosen), ec);
    if (ec == asio::error::address_in_use && attempt == 0) {
      // Another session bound it between our probe and our bind.
      boost::system::error_code ig;
      impl->acceptor.close(ig);
      claimed = false;
      continue;
    }
    if (ec) return make_error("bind control socket " + chosen, ec.value());
    break;
  }
  impl->path = chosen;
  if (::chmod(chosen.c_str(), 0600) != 0) {
    Error e = errno_error("chmod 0600 " + chosen);
    ::unlink(chosen.c_str());
    return e;
  }
  boost::system::error_code ec;
  impl->acceptor.listen(16, ec);
  if (ec) {
    ::unlink(chosen.c_str());
    return make_error("listen on control socket " + chosen, ec.value());
  }
  asio::co_spawn(io, impl->accept_loop(), asio::detached);
  return std::unique_ptr<ControlServer>(new ControlServer(impl));
}

ControlServer::~ControlServer() {
  impl_->stop();
}

std::string ControlServer::path() const {
  return impl_->path;
}

void ControlServer::set_stats(std::function<nlohmann::json()> stats) {
  impl_->stats = std::move(stats);
}

}  // namespace acp::consent
