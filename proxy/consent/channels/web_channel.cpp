// The web page consent channel (acp/proxy/web_channel.hpp): one coroutine per connection, the
// page and a small JSON API, Server-Sent Events for live updates. Every handler runs on the
// gate's io_context; nothing here blocks it (the audit chain is verified on a thread of its own).
#include "acp/proxy/web_channel.hpp"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <charconv>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>

#include "acp/proxy/audit_log.hpp"
#include "acp/proxy/control.hpp"
#include "acp/proxy/display.hpp"
#include "acp/proxy/own_endpoints.hpp"
#include "acp/util/atomic_file.hpp"
#include "acp/util/json_text.hpp"
#include "acp/util/random_id.hpp"
#include "acp/util/redact.hpp"
#include "acp/util/scope_exit.hpp"
#include "web_page.hpp"

namespace acp::consent {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;

namespace {

constexpr int kFallbackPorts = 50;      // the default port taken: try the next 50
constexpr size_t kMaxConnections = 64;  // page loads, API calls and SSE streams together
constexpr auto kReadTimeout = std::chrono::seconds(30);
constexpr auto kWriteTimeout = std::chrono::seconds(10);  // an SSE client this slow is dropped
constexpr auto kKeepalive = std::chrono::seconds(15);
constexpr size_t kMaxSseBacklog = 256 * 1024;  // bytes queued for one SSE client before drop
constexpr int kMaxAuditEntries = 500;
constexpr off_t kAuditTailBytes = 1 << 20;  // the recent entries come from the last 1 MiB

bool equal_const_time(std::string_view a, std::string_view b) {
  // The length of the token is no secret (always 64); its content is compared in constant time.
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string url_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int v = 0;
      auto r = std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
      if (r.ec == std::errc() && r.ptr == s.data() + i + 3) {
        out += static_cast<char>(v);
        i += 2;
        continue;
      }
    }
    out += s[i] == '+' ? ' ' : s[i];
  }
  return out;
}

// The value of `key` in a query string ("" when absent).
std::string query_param(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    auto amp = query.find('&');
    auto part = query.substr(0, amp);
    auto eq = part.find('=');
    if (part.substr(0, eq) == key)
      return eq == std::string_view::npos ? "" : url_decode(part.substr(eq + 1));
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return "";
}

std::string cookie_value(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    auto semi = header.find(';');
    auto part = header.substr(0, semi);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    auto eq = part.find('=');
    if (eq != std::string_view::npos && part.substr(0, eq) == name)
      return std::string(part.substr(eq + 1));
    if (semi == std::string_view::npos) break;
    header.remove_prefix(semi + 1);
  }
  return "";
}

struct Listen {
  std::string host;  // without brackets
  uint16_t port = 0;
};

Result<Listen> parse_listen(const std::string& s) {
  auto colon = s.rfind(':');
  if (colon == std::string::npos) return make_error("listen address '" + s + "' is not HOST:PORT");
  Listen l;
  l.host = s.substr(0, colon);
  if (l.host.size() > 1 && l.host.front() == '[' && l.host.back() == ']')
    l.host = l.host.substr(1, l.host.size() - 2);
  int port = -1;
  auto ps = s.substr(colon + 1);
  auto r = std::from_chars(ps.data(), ps.data() + ps.size(), port);
  if (r.ec != std::errc() || r.ptr != ps.data() + ps.size() || port < 0 || port > 65535)
    return make_error("listen address '" + s + "' has no valid port");
  l.port = static_cast<uint16_t>(port);
  return l;
}

// Every string in `j` made visible (acp/proxy/display.hpp): what the page shows of the audit
// log and the session was partly chosen by the agent (paths, tool names, a process's comm).
void make_visible(nlohmann::json& j) {
  if (j.is_string())
    j = visible(j.get_ref<const std::string&>());
  else if (j.is_structured())
    for (auto& v : j) make_visible(v);
}

// The audit log's "action" object back as an Action, for summary().
Action action_from_json(const nlohmann::json& j) {
  Action a;
  auto str = [&](const char* k) {
    auto it = j.find(k);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  a.kind = str("kind");
  a.host = str("host");
  if (auto it = j.find("port"); it != j.end() && it->is_number_unsigned())
    a.port = static_cast<uint16_t>(it->get<unsigned>());
  a.method = str("method");
  a.path = str("path");
  a.name = str("name");
  a.args = str("args");
  a.tool = str("tool");
  a.server = str("server");
  return a;
}

// The newest `n` entries of the audit log, read from its last MiB (never the whole file).
nlohmann::json audit_tail(const std::string& path, int n) {
  nlohmann::json out = nlohmann::json::array();
  std::ifstream in(path, std::ios::binary);
  if (!in) return out;
  in.seekg(0, std::ios::end);
  const off_t size = static_cast<off_t>(in.tellg());
  const off_t from = size > kAuditTailBytes ? size - kAuditTailBytes : 0;
  in.seekg(from);
  std::string data(static_cast<size_t>(size - from), '\0');
  in.read(data.data(), static_cast<std::streamsize>(data.size()));
  data.resize(static_cast<size_t>(in.gcount()));
  if (from > 0) {  // the first line is probably cut: skip it
    auto nl = data.find('\n');
    data.erase(0, nl == std::string::npos ? data.size() : nl + 1);
  }
  std::vector<std::string_view> lines;
  std::string_view v(data);
  while (!v.empty()) {
    auto nl = v.find('\n');
    auto line = v.substr(0, nl);
    if (!line.empty()) lines.push_back(line);
    if (nl == std::string_view::npos) break;
    v.remove_prefix(nl + 1);
  }
  const size_t skip = lines.size() > static_cast<size_t>(n) ? lines.size() - n : 0;
  for (size_t i = skip; i < lines.size(); ++i) {
    auto j = acp::util::parse_json(lines[i]);
    if (j.is_discarded()) continue;
    make_visible(j);
    if (auto a = j.find("action"); a != j.end() && a->is_object())
      j["summary"] = summary(action_from_json(*a));  // strings already visible: unchanged
    out.push_back(std::move(j));
  }
  return out;
}

// The audit chain's state, verified on a thread of its own and cached by the file's size and
// mtime: /api/audit answers from the cache at once and asks for a fresh check when stale.
struct ChainCache {
  std::mutex mu;
  bool running = false;
  long long size = -1, mtime_ns = -1;  // of the file the cached report is for
  nlohmann::json report = {{"state", "checking"}};
};

void refresh_chain(asio::thread_pool& pool, const std::shared_ptr<ChainCache>& cache,
                   const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    std::lock_guard lk(cache->mu);
    cache->report = {{"state", "missing"}};
    return;
  }
  const long long mt =
      static_cast<long long>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
  {
    std::lock_guard lk(cache->mu);
    if (cache->running || (cache->size == st.st_size && cache->mtime_ns == mt)) return;
    cache->running = true;
  }
  asio::post(pool, [cache, path, size = static_cast<long long>(st.st_size), mt] {
    auto r = audit::AuditLog::verify(path);
    nlohmann::json rep;
    if (!r)
      rep = {{"state", "error"}, {"error", r.error().message()}};
    else if (r->ok())
      rep = {{"state", "ok"}, {"lines", r->lines_ok}};
    else
      rep = {{"state", "broken"},
             {"lines_ok", r->lines_ok},
             {"first_broken", *r->first_broken},
             {"reason", r->reason}};
    std::lock_guard lk(cache->mu);
    cache->report = std::move(rep);
    cache->size = size;
    cache->mtime_ns = mt;
    cache->running = false;
  });
}

using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

class WebChannelImpl;

// One Server-Sent Events client: events queue here and one coroutine writes them in order.
struct SseClient {
  explicit SseClient(asio::io_context& io) : wake(io) {}
  std::deque<std::string> queue;
  size_t bytes = 0;
  bool dead = false;
  asio::steady_timer wake;
  beast::tcp_stream* stream = nullptr;
};

struct Shared : std::enable_shared_from_this<Shared> {
  Shared(asio::io_context& io, ConsentGate& g, config::WebChannel c, ChannelContext x)
      : io(io), gate(g), cfg(std::move(c)), ctx(std::move(x)), acceptor(io), keepalive(io) {}
  ~Shared() { pool.join(); }

  asio::io_context& io;
  ConsentGate& gate;
  config::WebChannel cfg;
  ChannelContext ctx;
  tcp::acceptor acceptor;
  proxy::OwnEndpoint own;  // no proxy connects to the page (own_endpoints.hpp)
  asio::steady_timer keepalive;
  std::string token;
  bool token_created = false;
  Listen listen;
  uint16_t port = 0;
  bool stopped = false;
  std::set<beast::tcp_stream*> conns;
  std::set<std::shared_ptr<SseClient>> sse;
  asio::thread_pool pool{1};
  std::shared_ptr<ChainCache> chain = std::make_shared<ChainCache>();

  std::string cookie_name() const { return "acp_web_" + std::to_string(port); }
  std::string host_literal() const {
    return listen.host.find(':') != std::string::npos ? "[" + listen.host + "]" : listen.host;
  }

  // ---- what the page is told ----
  nlohmann::json pending_json(const PendingInfo& p) const {
    auto j = to_json(p);  // with summary and reach, made visible there
    j["agent_command"] = visible(ctx.agent_command);
    j["rule"] = visible(p.rule_text);
    return j;
  }
  nlohmann::json pending_list() const {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& p : gate.pending()) list.push_back(pending_json(p));
    return list;
  }

  void broadcast(const std::string& event, const nlohmann::json& data) {
    std::string msg = "event: " + event + "\ndata: " +
                      data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n\n";
    push_all(msg);
  }
  void push_all(const std::string& msg) {
    for (const auto& c : sse) push(c, msg);
  }
  void push(const std::shared_ptr<SseClient>& c, const std::string& msg) {
    if (c->dead) return;
    if (c->bytes + msg.size() > kMaxSseBacklog) {  // too slow: dropped, it reconnects later
      drop(c);
      return;
    }
    c->bytes += msg.size();
    c->queue.push_back(msg);
    c->wake.cancel();
  }
  void drop(const std::shared_ptr<SseClient>& c) {
    c->dead = true;
    c->wake.cancel();
    if (c->stream) {
      boost::system::error_code ig;
      c->stream->socket().close(ig);
    }
  }

  void arm_keepalive() {
    keepalive.expires_after(kKeepalive);
    keepalive.async_wait([w = weak_from_this()](boost::system::error_code ec) {
      auto self = w.lock();
      if (ec || !self || self->stopped) return;
      self->push_all(": keepalive\n\n");
      self->arm_keepalive();
    });
  }

  // ---- listening ----
  Status bind() {
    auto l = parse_listen(cfg.listen);
    if (!l) return l.error();
    listen = *l;
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(listen.host, ec);
    if (ec) return make_error("web listen address '" + cfg.listen + "' is not an IP address");
    if (!addr.is_loopback())
      return make_error("web listen address '" + cfg.listen + "' is not loopback");
    const bool fallback = cfg.listen == config::WebChannel{}.listen;
    const int last = fallback ? std::min<int>(65535, listen.port + kFallbackPorts) : listen.port;
    int err = 0;
    for (int p = listen.port; p <= last; ++p) {
      tcp::acceptor a(io);
      tcp::endpoint ep(addr, static_cast<uint16_t>(p));
      a.open(ep.protocol(), ec);
      if (!ec) a.set_option(tcp::acceptor::reuse_address(true), ec);
      if (!ec) a.bind(ep, ec);
      if (!ec) {
        // Before listen(): no connection ever reaches the page unregistered.
        auto reg = proxy::register_own_endpoint(a.native_handle(),
                                                "web page (port " + std::to_string(p) + ")");
        if (!reg) return reg.error();
        own = std::move(*reg);
      }
      if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
      if (!ec) {
        port = a.local_endpoint().port();
        acceptor = std::move(a);
        return {};
      }
      err = ec.value();
      if (ec != asio::error::address_in_use) break;
    }
    if (err == EADDRINUSE && fallback)
      return make_error("web page ports " + std::to_string(listen.port) + "-" +
                            std::to_string(last) +
                            " are all in use: set channels.web.listen in the config",
                        err);
    return make_error("cannot listen on " + cfg.listen + " for the web page", err);
  }

  asio::awaitable<void> accept_loop() {
    auto self = shared_from_this();
    while (!stopped) {
      boost::system::error_code ec;
      tcp::socket s(io);
      co_await acceptor.async_accept(s, asio::redirect_error(asio::use_awaitable, ec));
      if (stopped || ec == asio::error::operation_aborted) break;
      if (ec) continue;  // EMFILE and the like: the next accept may work
      if (conns.size() >= kMaxConnections) continue;  // closed by s going out of scope
      asio::co_spawn(io, serve(std::move(s)), asio::detached);
    }
  }

  // ---- one connection ----
  asio::awaitable<void> serve(tcp::socket s) {
    auto self = shared_from_this();
    beast::tcp_stream stream(std::move(s));
    conns.insert(&stream);
    auto untrack = util::on_scope_exit([&] { conns.erase(&stream); });
    beast::flat_buffer buf;
    while (!stopped) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(16 * 1024);
      parser.body_limit(16 * 1024);
      stream.expires_after(kReadTimeout);
      boost::system::error_code ec;
      co_await http::async_read(stream, buf, parser, asio::redirect_error(asio::use_awaitable, ec));
      if (ec || stopped) break;
      Request req = parser.release();
      bool sse_stream = false;
      Response res = handle(req, sse_stream);
      if (sse_stream) {
        co_await serve_sse(stream);
        break;
      }
      res.keep_alive(res.keep_alive() && req.keep_alive());
      res.prepare_payload();
      stream.expires_after(kWriteTimeout);
      co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
      if (ec || !res.keep_alive()) break;
    }
    boost::system::error_code ig;
    stream.socket().shutdown(tcp::socket::shutdown_both, ig);
    stream.socket().close(ig);
  }

  asio::awaitable<void> serve_sse(beast::tcp_stream& stream) {
    auto c = std::make_shared<SseClient>(io);
    c->stream = &stream;
    sse.insert(c);
    auto forget = util::on_scope_exit([this, c] {
      c->stream = nullptr;
      sse.erase(c);
    });
    // Close-delimited: no length, no chunking; the browser's EventSource reconnects by itself.
    push(c,
         "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
         "X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\nretry: 2000\n\n");
    push(c, "event: snapshot\ndata: " +
                nlohmann::json{{"session", ctx.session_id}, {"pending", pending_list()}}.dump(
                    -1, ' ', false, nlohmann::json::error_handler_t::replace) +
                "\n\n");
    while (!stopped && !c->dead) {
      if (c->queue.empty()) {
        c->wake.expires_at(asio::steady_timer::time_point::max());
        boost::system::error_code ig;
        co_await c->wake.async_wait(asio::redirect_error(asio::use_awaitable, ig));
        continue;
      }
      std::string msg = std::move(c->queue.front());
      c->queue.pop_front();
      c->bytes -= msg.size();
      stream.expires_after(kWriteTimeout);
      boost::system::error_code ec;
      co_await asio::async_write(stream, asio::buffer(msg),
                                 asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
    }
  }

  // ---- requests ----
  Response plain(http::status st, const std::string& body, const Request& req,
                 const char* type = "text/plain; charset=utf-8") {
    Response r{st, req.version()};
    r.set(http::field::server, "acp");
    r.set(http::field::content_type, type);
    r.set(http::field::cache_control, "no-store");
    r.set("X-Content-Type-Options", "nosniff");
    r.set("X-Frame-Options", "DENY");
    r.set("Referrer-Policy", "no-referrer");
    r.body() = body;
    return r;
  }
  Response forbidden(const Request& req) {
    auto r = plain(http::status::forbidden, "forbidden\n", req);
    r.keep_alive(false);
    return r;
  }
  Response json(http::status st, const nlohmann::json& j, const Request& req) {
    return plain(st, j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n", req,
                 "application/json");
  }

  // The Host header must name this server: a page from another site that re-points its own
  // name at 127.0.0.1 (DNS rebinding) sends its own name.
  bool host_ok(const Request& req) const {
    auto h = req[http::field::host];
    const std::string p = ":" + std::to_string(port);
    return h == host_literal() + p || h == "localhost" + p;
  }

  enum class Auth { None, Query, Cookie, Bearer };
  Auth authenticate(const Request& req, std::string_view query) const {
    auto authz = req[http::field::authorization];
    if (authz.substr(0, 7) == "Bearer " && equal_const_time(authz.substr(7), token))
      return Auth::Bearer;
    if (auto q = query_param(query, "token"); !q.empty() && equal_const_time(q, token))
      return Auth::Query;
    if (auto c = cookie_value(req[http::field::cookie], cookie_name());
        !c.empty() && equal_const_time(c, token))
      return Auth::Cookie;
    return Auth::None;
  }

  Response handle(const Request& req, bool& sse_stream) {
    if (!host_ok(req)) return forbidden(req);
    std::string_view target = req.target();
    auto qpos = target.find('?');
    std::string_view path = target.substr(0, qpos);
    std::string_view query = qpos == std::string_view::npos ? "" : target.substr(qpos + 1);
    const Auth auth = authenticate(req, query);
    if (auth == Auth::None) return forbidden(req);
    if (req.method() == http::verb::post) {
      // A POST from the page carries its own origin; one from elsewhere is refused. Without an
      // Origin (curl, scripts), only the bearer or query token counts, never the cookie alone.
      auto origin = req[http::field::origin];
      if (origin.empty() ? auth == Auth::Cookie
                         : origin != "http://" + std::string(req[http::field::host]))
        return forbidden(req);
    }
    const bool get = req.method() == http::verb::get;
    if (path == "/" || path == "/index.html") {
      if (!get) return plain(http::status::method_not_allowed, "GET only\n", req);
      if (auth == Auth::Query) {
        // The token leaves the address bar (and the history) for a cookie only this page sees.
        auto r = plain(http::status::see_other, "", req);
        r.set(http::field::location, "/");
        r.set(http::field::set_cookie,
              cookie_name() + "=" + token + "; Path=/; HttpOnly; SameSite=Strict");
        return r;
      }
      auto r =
          plain(http::status::ok, std::string(web_page_html()), req, "text/html; charset=utf-8");
      r.set("Content-Security-Policy",
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
            "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'");
      return r;
    }
    if (path == "/api/pending") {
      if (!get) return plain(http::status::method_not_allowed, "GET only\n", req);
      return json(http::status::ok, {{"session", ctx.session_id}, {"pending", pending_list()}},
                  req);
    }
    if (path == "/api/events") {
      if (!get) return plain(http::status::method_not_allowed, "GET only\n", req);
      sse_stream = true;
      return {};
    }
    if (path == "/api/session") {
      if (!get) return plain(http::status::method_not_allowed, "GET only\n", req);
      nlohmann::json j{{"session", ctx.session_id},
                       {"agent_command", ctx.agent_command},
                       {"proxy_url", ctx.proxy_url},
                       {"audit_path", ctx.audit_path},
                       {"status", nullptr}};
      if (ctx.session_status) j["status"] = ctx.session_status();
      make_visible(j);
      return json(http::status::ok, j, req);
    }
    if (path == "/api/audit") {
      if (!get) return plain(http::status::method_not_allowed, "GET only\n", req);
      int n = 50;
      auto ns = query_param(query, "n");
      if (!ns.empty()) {
        auto r = std::from_chars(ns.data(), ns.data() + ns.size(), n);
        if (r.ec != std::errc() || n < 1) n = 50;
      }
      n = std::min(n, kMaxAuditEntries);
      refresh_chain(pool, chain, ctx.audit_path);
      nlohmann::json rep;
      {
        std::lock_guard lk(chain->mu);
        rep = chain->report;
      }
      return json(
          http::status::ok,
          {{"path", ctx.audit_path}, {"entries", audit_tail(ctx.audit_path, n)}, {"chain", rep}},
          req);
    }
    if (path == "/api/answer") {
      if (req.method() != http::verb::post)
        return plain(http::status::method_not_allowed, "POST only\n", req);
      auto body = acp::util::parse_json(req.body());
      if (!body.is_object() || !body.contains("approve") || !body["approve"].is_boolean())
        return json(http::status::bad_request,
                    {{"ok", false},
                     {"code", "bad_request"},
                     {"error", "expected {id, approve: bool, scope, duration_s, reason}"}},
                    req);
      // The control socket's checks, once: the same scopes, limits and errors.
      nlohmann::json creq{{"op", body["approve"].get<bool>() ? "approve" : "deny"}};
      for (const char* k : {"id", "scope", "duration_s", "reason"})
        if (body.contains(k)) creq[k] = body[k];
      auto resp = handle_control_request(gate, creq, "web");
      const std::string code = resp.value("code", "");
      auto st = resp.value("ok", false) ? http::status::ok
                : code == "unknown_id"  ? http::status::not_found
                : code == "bad_request" ? http::status::bad_request
                                        : http::status::internal_server_error;
      return json(st, resp, req);
    }
    return plain(http::status::not_found, "not found\n", req);
  }
};

class WebChannelImpl final : public WebChannel {
 public:
  WebChannelImpl(asio::io_context& io, ConsentGate& gate, const config::WebChannel& cfg,
                 const ChannelContext& ctx)
      : s_(std::make_shared<Shared>(io, gate, cfg, ctx)) {}
  ~WebChannelImpl() override { stop(); }

  std::string name() const override { return "web"; }

  Status start() override {
    bool created = false;
    auto tok = load_or_create_web_token(s_->cfg.token_file, &created);
    if (!tok) return tok.error();
    s_->token = *tok;
    s_->token_created = created;
    if (auto st = s_->bind(); !st) return st;
    asio::co_spawn(s_->io, s_->accept_loop(), asio::detached);
    s_->arm_keepalive();
    return {};
  }

  void stop() override {
    if (s_->stopped) return;
    s_->stopped = true;
    boost::system::error_code ig;
    s_->acceptor.close(ig);
    s_->own = {};
    s_->keepalive.cancel();
    for (const auto& c : s_->sse) c->wake.cancel();
    for (auto* c : s_->conns) c->socket().close(ig);
  }

  // Never the token: this line reaches streams the agent may read (acp's stderr, which it
  // inherits, or a log in its workspace) and the world-readable session record. Where it is
  // stored is said instead; acp shows url() only on a terminal (session/channel_notice.hpp).
  std::string describe() const override {
    std::string d = "web: " + util::redact_url(url()) + " (the token is in " + s_->cfg.token_file +
                    ", root only";
    if (s_->token_created) d += "; a new token was written there";
    return d + ")";
  }

  void on_request(const PendingInfo& p) override {
    if (!s_->stopped) s_->broadcast("request", s_->pending_json(p));
  }

  void on_resolved(const PendingInfo& p, const ConsentOutcome& o) override {
    if (s_->stopped) return;
    s_->broadcast("resolved", {{"id", p.id},
                               {"session", p.session},
                               {"action", action_to_json(p.action)},
                               {"summary", summary(p.action)},
                               {"approved", o.approved},
                               {"scope", o.scope},
                               {"decided_by", o.decided_by},
                               {"by", o.answered_by},
                               {"reason", visible(o.reason)}});
  }

  uint16_t port() const override { return s_->port; }
  const std::string& token() const override { return s_->token; }
  std::string url() const override {
    return "http://" + s_->host_literal() + ":" + std::to_string(s_->port) + "/?token=" + s_->token;
  }

 private:
  std::shared_ptr<Shared> s_;
};

}  // namespace

Result<std::string> load_or_create_web_token(const std::string& path, bool* created) {
  if (created) *created = false;
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0 && errno == ENOENT) {
    auto tok = util::random_hex(32);
    if (!tok) return make_error("web page token " + path + ": " + tok.error().message());
    if (auto d = util::create_directories(std::filesystem::path(path).parent_path(), 0755); !d)
      return make_error("web page token " + path + ": " + d.error().message(), d.error().err);
    // kKeep: a token another acp wrote meanwhile is kept, and read below.
    auto w = util::write_file_atomic(path, *tok + "\n", 0600, util::IfExists::kKeep);
    if (w) {
      if (created) *created = true;
    } else if (w.error().err != EEXIST) {
      return make_error("web page token " + path + ": " + w.error().message());
    }
  }
  auto tok = config::read_secret_file(path);
  if (!tok) return tok.error();
  if (tok->size() < 32)
    return make_error("web page token in " + path +
                      " is too short (32 characters at least): remove the file and acp makes a "
                      "new one");
  return tok;
}

std::unique_ptr<WebChannel> WebChannel::create(asio::io_context& io, ConsentGate& gate,
                                               const config::WebChannel& cfg,
                                               const ChannelContext& ctx) {
  return std::make_unique<WebChannelImpl>(io, gate, cfg, ctx);
}

}  // namespace acp::consent
