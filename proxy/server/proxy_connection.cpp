#include "proxy_connection.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <exception>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "acp/proxy/peer_identity.hpp"
#include "acp/proxy/tls_inspector.hpp"
#include "coro.hpp"

namespace acp::proxy {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using boost::system::error_code;

namespace {

constexpr std::chrono::seconds kLingerTimeout{2};
constexpr size_t kLingerBytes = 1024 * 1024;
constexpr std::string_view kEstablished = "HTTP/1.1 200 Connection Established\r\n\r\n";

// A request inside an inspected CONNECT: its Host header must name the CONNECT's host (and
// port, when it gives one). Empty: they agree.
std::string host_disagreement(std::string_view host_header, const RequestTarget& t) {
  if (host_header.empty()) return {};  // HTTP/1.0 without Host: the CONNECT names it
  std::string host;
  std::optional<uint16_t> port;
  if (auto a = parse_authority(host_header)) {
    host = a->host;
    port = a->port;
  } else {
    host = normalize_host(host_header);
  }
  if (host != t.host || (port && *port != t.port))
    return "the Host header (" + std::string(host_header) + ") does not name the CONNECT host " +
           t.host + ":" + std::to_string(t.port);
  return {};
}

http::response<http::string_body> refusal_response(unsigned status, const std::string& error,
                                                   const std::string& reason) {
  http::response<http::string_body> res{static_cast<http::status>(status), 11};
  res.set(http::field::server, "acp");
  res.set(http::field::content_type, "application/json");
  res.body() = nlohmann::json{{"error", error}, {"reason", reason}}.dump();
  return res;
}

}  // namespace

net::awaitable<void> serve_connection(std::shared_ptr<ProxyServer::State> state,
                                      tcp::socket socket) {
  Connection c(state, std::move(socket));
  try {
    co_await c.run();
  } catch (const std::exception&) {
    state->n_errors.fetch_add(1, std::memory_order_relaxed);
  }
}

net::awaitable<void> refuse_at_accept(std::shared_ptr<ProxyServer::State> state, tcp::socket socket,
                                      unsigned status, std::string error, std::string reason) {
  beast::tcp_stream s(std::move(socket));
  auto res = refusal_response(status, error, reason);
  if (status == 503) res.set(http::field::retry_after, "1");
  res.keep_alive(false);
  res.prepare_payload();
  error_code ec;
  s.expires_after(kAnswerWriteTimeout);
  co_await http::async_write(s, res, redirect(ec));
  state->emit({{"event", "refused"}, {"status", status}, {"reason", reason}});
  if (ec) co_return;
  // Drain what the client sent so that closing does not reset the connection before the
  // client has read the answer.
  s.socket().shutdown(tcp::socket::shutdown_send, ec);
  s.expires_after(kLingerTimeout);
  std::array<char, 4096> sink;
  for (size_t total = 0; total < kLingerBytes;) {
    size_t n = co_await s.async_read_some(net::buffer(sink), redirect(ec));
    if (ec) break;
    total += n;
  }
}

Connection::Connection(std::shared_ptr<ProxyServer::State> state, tcp::socket socket)
    : state_(std::move(state)), client_(std::move(socket)) {
  error_code ec;
  auto ep = client_.socket().remote_endpoint(ec);
  if (!ec) {
    peer_ = endpoint_text(ep);
    peer_addr_ = unmapped(ep.address()).to_string();
  }
  client_.socket().set_option(tcp::no_delay(true), ec);
  state_->opened(this);
}

Connection::~Connection() {
  state_->gone(this);
}

void Connection::close() {
  closed_ = true;
  error_code ec;
  client_.socket().close(ec);
  up_.close_socket();
  if (tunnel_timer_) tunnel_timer_->cancel();
}

net::awaitable<Connection::HeadRead> Connection::read_head(bool first, size_t& head_len) {
  const auto& lim = state_->cfg.limits;
  bool header_clock = first;
  bool idle_clock = false;
  if (first) client_.expires_after(lim.header_timeout);
  for (;;) {
    // Empty lines before a request line are ignored (RFC 9112 2.2).
    {
      auto d = buffer_.data();
      buffer_.consume(leading_empty_lines({static_cast<const char*>(d.data()), d.size()}));
    }
    auto d = buffer_.data();
    std::string_view sv(static_cast<const char*>(d.data()), d.size());
    if (auto end = find_header_end(sv); end != std::string_view::npos) {
      head_len = end;
      co_return end > lim.max_header_bytes ? HeadRead::TooLarge : HeadRead::Ok;
    }
    if (sv.size() > lim.max_header_bytes) co_return HeadRead::TooLarge;
    if (!sv.empty() && !header_clock) {
      client_.expires_after(lim.header_timeout);
      header_clock = true;
    } else if (sv.empty() && !header_clock && !idle_clock) {
      client_.expires_after(lim.idle_timeout);
      idle_clock = true;
    }
    error_code ec;
    size_t n = co_await client_.async_read_some(buffer_.prepare(16 * 1024), redirect(ec));
    buffer_.commit(n);
    if (ec) {
      if (ec == beast::error::timeout && buffer_.size() > 0) co_return HeadRead::TimedOut;
      co_return HeadRead::Closed;
    }
  }
}

net::awaitable<void> Connection::run() {
  for (bool first = true; !closed_; first = false)
    if (!co_await serve_request(first)) break;
  co_await finish();
}

net::awaitable<void> Connection::finish() {
  error_code ec;
  up_.close_socket();
  if (client_.tls() && !closed_) co_await close_tls();
  client_.socket().close(ec);
}

net::awaitable<bool> Connection::serve_request(bool first) {
  const auto& lim = state_->cfg.limits;
  size_t head_len = 0;
  const auto got = co_await read_head(first, head_len);
  if (got == HeadRead::Closed || closed_) co_return false;
  RequestEvent event(++state_->next_request, peer_);
  bool keep = false;
  if (got == HeadRead::TimedOut) {
    co_await refuse(
        event, {408, "Request timeout", "the request header did not arrive within header_timeout"});
  } else if (got == HeadRead::TooLarge) {
    co_await refuse(event, {431, "Request header too large",
                            "the request header exceeds " + std::to_string(lim.max_header_bytes) +
                                " bytes (max_header_bytes)"});
  } else {
    RequestParser p;
    auto d = buffer_.data();
    size_t used = 0;
    auto bad = parse_request_head({static_cast<const char*>(d.data()), head_len},
                                  lim.max_body_bytes, p, used);
    buffer_.consume(used);
    if (bad) {
      co_await refuse(event, {bad->status, bad->error, bad->reason});
    } else {
      event.note("method", std::string(p.get().method_string()));
      keep = co_await route(p, event);
    }
  }
  state_->finish(event);
  co_return keep;
}

net::awaitable<bool> Connection::route(RequestParser& p, RequestEvent& event) {
  auto& req = p.get();
  if (inspected_) co_return co_await route_inside_tunnel(p, event);
  if (req.method() == http::verb::connect) co_return co_await handle_connect(p, event);
  auto target = req.target();
  if (target.empty() || target.front() == '/' || target == "*") {
    const bool keep = req.keep_alive() && p.is_done();
    co_await refuse(event,
                    {400,
                     "Not a proxy request",
                     "ACP is a forward proxy: send absolute-form requests (GET http://host/path) "
                     "or CONNECT host:port, e.g. set HTTP_PROXY and HTTPS_PROXY to this address",
                     {},
                     !keep});
    co_return keep;
  }
  co_return co_await handle_http(p, event);
}

net::awaitable<bool> Connection::route_inside_tunnel(RequestParser& p, RequestEvent& event) {
  auto& req = p.get();
  if (plain_tunnel_)
    event.note("tunnel", "http");
  else
    event.note("tls", "inspected");
  if (req.method() == http::verb::connect || req.target().empty() || req.target().front() != '/') {
    const std::string why = std::string("inside ") +
                            (plain_tunnel_ ? "a CONNECT tunnel" : "an inspected CONNECT") +
                            " only origin-form requests (GET /path) are served";
    co_await refuse(event, {400, "Bad request target", why});
    co_return false;
  }
  if (auto why = host_disagreement(field_value(req, http::field::host), *inspected_);
      !why.empty()) {
    event.target(*inspected_);
    co_await refuse(event, name_mismatch(std::move(why), {}));
    co_return false;
  }
  co_return co_await handle_http(p, event);
}

net::awaitable<Judgement> Connection::judge(const RequestTarget& target, std::string method,
                                            RequestEvent& event) {
  Action action;
  action.kind = "http";
  action.host = target.host;
  action.port = target.port;
  action.method = std::move(method);
  action.path = target.path;
  action.session = state_->cfg.session_id;
  action.client = peer_addr_;
  if (door_) action.via = "transparent";
  Judgement j = co_await judge(std::move(action));
  event.judged(j);
  co_return j;
}

net::awaitable<Judgement> Connection::judge(Action action) {
  state_->n_requests.fetch_add(1, std::memory_order_relaxed);
  auto timeout = state_->cfg.limits.judge_timeout;
  std::optional<Judgement> result;
  try {
    if (timeout.count() == 0) {
      result = co_await state_->judge.judge(std::move(action));
    } else {
      struct Pending {
        explicit Pending(const net::any_io_executor& ex) : timer(ex) {}
        std::optional<Judgement> j;
        net::steady_timer timer;
      };
      auto ex = co_await net::this_coro::executor;
      auto pending = std::make_shared<Pending>(ex);
      pending->timer.expires_after(timeout);
      net::co_spawn(ex, state_->judge.judge(std::move(action)),
                    [pending](std::exception_ptr e, Judgement j) {
                      if (e) {
                        pending->j = Judgement{false, "the judge failed", {}, false};
                      } else {
                        pending->j = std::move(j);
                      }
                      pending->timer.cancel();
                    });
      error_code ec;
      co_await pending->timer.async_wait(redirect(ec));
      result = pending->j;
      if (!result) {
        result = Judgement{
            false,
            "no decision within " + std::to_string(timeout.count()) + " s (judge_timeout)",
            {},
            false};
      }
    }
  } catch (const std::exception& e) {
    result = Judgement{false, std::string("the judge failed: ") + e.what(), {}, false};
  }
  co_return std::move(*result);
}

net::awaitable<void> Connection::refuse(RequestEvent& event, Refusal r) {
  event.refused(r);
  if (!r.audit.is_null()) {
    r.audit["reason"] = r.reason;
    state_->audit(std::move(r.audit));
  }
  (r.status == 403 ? state_->n_denied : state_->n_errors).fetch_add(1, std::memory_order_relaxed);
  if (door_ && !door_http_) r.answer = false;  // a TLS or other client: no HTTP answer
  if (!r.answer || closed_) co_return;
  auto res = refusal_response(r.status, r.error, r.reason);
  if (!r.request_id.empty()) res.set("X-ACP-Request-Id", r.request_id);
  res.keep_alive(!r.close);
  res.prepare_payload();
  error_code ec;
  client_.expires_after(kAnswerWriteTimeout);
  co_await http::async_write(client_, res, redirect(ec));
  if (ec) {
    client_.socket().close(ec);
    co_return;
  }
  if (r.close) co_await lingering_close();
}

net::awaitable<void> Connection::lingering_close() {
  // Read what the client is still sending, so the close does not reset the connection
  // before the client has read the answer.
  error_code ec;
  if (client_.tls()) {
    co_await close_tls();
    client_.socket().close(ec);
    co_return;
  }
  client_.socket().shutdown(tcp::socket::shutdown_send, ec);
  client_.expires_after(kLingerTimeout);
  std::array<char, 4096> sink;
  for (size_t total = 0; total < kLingerBytes && !closed_;) {
    size_t n = co_await client_.async_read_some(net::buffer(sink), redirect(ec));
    if (ec) break;
    total += n;
  }
  client_.socket().close(ec);
}

net::awaitable<void> Connection::close_tls() {
  // close_notify, so a body that ends with the connection is not taken for a truncation.
  error_code ec;
  client_.expires_after(kLingerTimeout);
  co_await client_.tls()->async_shutdown(redirect(ec));
}

net::awaitable<bool> Connection::handle_connect(RequestParser& p, RequestEvent& event) {
  event.opens_tunnel();
  auto target = parse_authority(p.get().target());
  if (!target) {
    co_await refuse(event, {400, "Bad CONNECT target", target.error().message()});
    co_return false;
  }
  co_return co_await serve_tunnel(*target, event, kEstablished);
}

net::awaitable<bool> Connection::serve_tunnel(const RequestTarget& target, RequestEvent& event,
                                              std::string_view established) {
  event.target(target);
  auto j = co_await judge(target, "CONNECT", event);
  if (closed_) co_return false;
  if (!j.allowed) {
    co_await refuse(event, {403, "Blocked by ACP", j.reason, j.request_id});
    co_return false;
  }
  if (state_->cfg.inspect_tls && !state_->cfg.inspect_tls->excluded(target.host))
    co_return co_await start_inspection(target, j.request_id, event, established);
  auto up = co_await connect_upstream(*state_, target, j.host_named);
  if (!up.stream) {
    up.refusal.request_id = j.request_id;
    co_await refuse(event, std::move(up.refusal));
    co_return false;
  }
  if (closed_) co_return false;
  state_->n_allowed.fetch_add(1, std::memory_order_relaxed);
  error_code ec;
  if (!established.empty()) {
    client_.expires_after(kAnswerWriteTimeout);
    co_await net::async_write(client_, net::buffer(established), redirect(ec));
  }
  event.answered(200);
  if (ec) co_return false;
  state_->n_tunnels.fetch_add(1, std::memory_order_relaxed);
  co_return co_await classify_tunnel(target, j, std::move(up), event);
}

net::awaitable<bool> Connection::classify_tunnel(const RequestTarget& target, const Judgement& j,
                                                 UpstreamConnect up, RequestEvent& event) {
  // What comes first decides. An origin that speaks first (ssh, SMTP) is not HTTP: a raw
  // tunnel. A client that sends a request line is served request by request, each judged as
  // an absolute-form request would be: a CONNECT to a plain-HTTP host:port must not pass what
  // a path or MCP rule there denies. A TLS ClientHello stays a raw tunnel (--inspect-tls reads
  // inside). Anything else is refused where a rule reads inside requests.
  if (closed_) co_return false;  // stop(): not parked either
  TunnelGrant grant{target, j.request_id, j.inside_path, j.inside_mcp, up.restricted, door_};
  up.stream->expires_never();
  tcp::socket upstream = std::move(up.stream->socket());
  // Bytes sent right behind the CONNECT header: the client spoke first. Otherwise the tunnel
  // waits for its first speaker parked, without this Connection's frames, parser and streams.
  if (buffer_.size() == 0) {
    park_tunnel(state_, take_tunnel(std::move(grant), std::move(upstream), event));
    co_return false;
  }
  co_return co_await client_spoke(std::move(grant), std::move(upstream), event);
}

net::awaitable<bool> Connection::client_spoke(TunnelGrant grant, tcp::socket upstream,
                                              RequestEvent& event) {
  const auto bytes = co_await sniff_client();
  if (closed_) co_return false;
  const auto& target = grant.target;
  if (bytes == TunnelBytes::Http) {
    event.note("tunnel", "http");
    up_.hold(beast::tcp_stream(std::move(upstream)),
             target.host + ":" + std::to_string(target.port), grant.restricted);
    inspected_ = target;
    plain_tunnel_ = true;
    co_return true;  // run() reads and judges the requests inside
  }
  if (bytes != TunnelBytes::Tls && (grant.inside_path || grant.inside_mcp)) {
    event.note("tunnel", "refused");
    Refusal r{403, "Blocked by ACP",
              "the tunnel's first bytes are neither HTTP nor TLS, and a " +
                  std::string(grant.inside_path ? "path or method" : "kind: mcp") +
                  " rule applies to " + target.host + ":" + std::to_string(target.port) +
                  ": ACP cannot judge what it cannot read there",
              grant.request_id};
    r.answer = false;  // run() closes both sides; nothing was forwarded
    r.audit = {{"kind", "http"},      {"event", "tunnel_refused"}, {"request_id", grant.request_id},
               {"host", target.host}, {"port", target.port},       {"allowed", false}};
    co_await refuse(event, std::move(r));
    co_return false;
  }
  relay_parked_tunnel(state_, take_tunnel(std::move(grant), std::move(upstream), event));
  co_return false;
}

TunnelParts Connection::take_tunnel(TunnelGrant grant, tcp::socket upstream, RequestEvent& event) {
  auto d = buffer_.data();
  std::string ahead(static_cast<const char*>(d.data()), d.size());
  buffer_.consume(buffer_.size());
  buffer_.shrink_to_fit();
  relay_buffer_.reset();
  client_.expires_never();
  // Nobody listens for events (acp run does not): the tunnel does not keep the event's JSON
  // (about 1 KB) for its whole life; finish() still counts its bytes and its time to answer.
  if (!state_->on_event) event.json() = nullptr;
  return TunnelParts{std::move(client_.socket()), std::move(upstream), std::move(grant),
                     event.take(), std::move(ahead)};
}

net::awaitable<void> serve_resumed_tunnel(std::shared_ptr<ProxyServer::State> state,
                                          TunnelParts parts) {
  tcp::socket client = std::move(parts.client);
  Connection c(state, std::move(client));
  try {
    co_await c.resume_tunnel(std::move(parts));
  } catch (const std::exception&) {
    state->n_errors.fetch_add(1, std::memory_order_relaxed);
  }
}

net::awaitable<void> Connection::resume_tunnel(TunnelParts parts) {
  door_ = parts.grant.door;
  RequestEvent event = std::move(parts.event);
  bool more = co_await client_spoke(std::move(parts.grant), std::move(parts.upstream), event);
  state_->finish(event);
  while (more && !closed_) more = co_await serve_request(false);
  co_await finish();
}

net::awaitable<TunnelBytes> Connection::sniff_client() {
  const auto& lim = state_->cfg.limits;
  client_.expires_after(lim.header_timeout);
  for (;;) {
    auto d = buffer_.data();
    auto kind =
        classify_tunnel_bytes({static_cast<const char*>(d.data()), d.size()}, lim.max_header_bytes);
    if (kind != TunnelBytes::NeedMore) co_return kind;
    error_code ec;
    size_t n = co_await client_.async_read_some(buffer_.prepare(16 * 1024), redirect(ec));
    buffer_.commit(n);
    // A client that stops (or half-closes) inside what could still be a request line: it is
    // not one that can be judged.
    if (ec || closed_) co_return TunnelBytes::Other;
  }
}

}  // namespace acp::proxy
