#include "proxy_connection.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <exception>
#include <limits>
#include <string_view>
#include <vector>

#include <malloc.h>

#include <openssl/ssl.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/rfc7230.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "acp/proxy/tls_inspector.hpp"

namespace acp::proxy {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kRelayBufferBytes = 64 * 1024;
constexpr size_t kResponseHeaderLimit = 256 * 1024;
constexpr std::chrono::seconds kRefusalWriteTimeout{10};
constexpr std::chrono::seconds kLingerTimeout{2};
constexpr size_t kLingerBytes = 1024 * 1024;

auto redirect(error_code& ec) {
  return net::redirect_error(net::use_awaitable, ec);
}

// Hop-by-hop headers (RFC 9110 7.6.1) and the ones the Connection header names. Framing
// headers are never removed on a Connection header's word: Beast re-frames the body itself.
template <class Fields>
void strip_hop_by_hop(Fields& f) {
  std::vector<std::string> named;
  for (const auto& h : f) {
    if (h.name() != http::field::connection) continue;
    for (auto tok : http::token_list{h.value()}) named.emplace_back(tok);
  }
  for (const auto& n : named) {
    auto fld = http::string_to_field(n);
    if (fld == http::field::content_length || fld == http::field::transfer_encoding ||
        fld == http::field::host)
      continue;
    f.erase(n);
  }
  for (auto fld : {http::field::connection, http::field::keep_alive, http::field::proxy_connection,
                   http::field::proxy_authorization, http::field::proxy_authenticate,
                   http::field::te, http::field::trailer, http::field::upgrade})
    f.erase(fld);
}

enum class RelayFail { None, Read, Write, BodyLimit };

// Streams one message body from `in` (through parser `p`) to `out` (through serializer
// `sr`, whose header is already written), one buffer at a time.
template <bool isRequest>
net::awaitable<RelayFail> relay_body(http::parser<isRequest, http::buffer_body>& p, ProxyStream& in,
                                     beast::flat_buffer& in_buffer, ProxyStream& out,
                                     http::serializer<isRequest, http::buffer_body>& sr, char* buf,
                                     std::chrono::seconds idle, uint64_t& bytes, error_code& ec) {
  while (!sr.is_done()) {
    auto& body = p.get().body();
    if (!p.is_done()) {
      body.data = buf;
      body.size = kRelayBufferBytes;
      in.expires_after(idle);
      co_await http::async_read_some(in, in_buffer, p, redirect(ec));
      if (ec == http::error::need_buffer) ec = {};
      if (ec == http::error::body_limit) co_return RelayFail::BodyLimit;
      if (ec) co_return RelayFail::Read;
      body.size = kRelayBufferBytes - body.size;
      // Never an empty buffer with data: a chunked serializer would end the body with it.
      body.data = body.size > 0 ? buf : nullptr;
      body.more = !p.is_done();
      bytes += body.size;
    } else {
      body.data = nullptr;
      body.size = 0;
      body.more = false;
    }
    out.expires_after(idle);
    co_await http::async_write(out, sr, redirect(ec));
    if (ec == http::error::need_buffer) ec = {};
    if (ec) co_return RelayFail::Write;
  }
  co_return RelayFail::None;
}

// One direction of a tunnel. Reads only when the socket is readable and drops its buffer
// whenever the peer goes quiet, so an idle tunnel holds no relay buffer.
struct TunnelState {
  explicit TunnelState(const net::any_io_executor& ex) : timer(ex) {}
  net::steady_timer timer;
  int done = 0;
  Clock::time_point last = Clock::now();
};

net::awaitable<void> pump(tcp::socket& from, tcp::socket& to, TunnelState& st, uint64_t& bytes) {
  std::unique_ptr<char[]> buf;
  error_code ec, ignored;
  for (;;) {
    if (!buf) {
      co_await from.async_wait(tcp::socket::wait_read, redirect(ec));
      if (ec) break;
      buf.reset(new char[kRelayBufferBytes]);
    }
    size_t n = from.read_some(net::buffer(buf.get(), kRelayBufferBytes), ec);
    if (ec == net::error::would_block || ec == net::error::try_again) {
      buf.reset();
      continue;
    }
    if (ec == net::error::eof) {
      to.shutdown(tcp::socket::shutdown_send, ignored);  // half-close: pass it on
      co_return;
    }
    if (ec) break;
    co_await net::async_write(to, net::buffer(buf.get(), n), redirect(ec));
    if (ec) break;
    bytes += n;
    st.last = Clock::now();
  }
  // A reset or a local close: end the other direction too.
  from.close(ignored);
  to.close(ignored);
}

std::string endpoint_text(const tcp::endpoint& ep) {
  auto a = ep.address();
  return (a.is_v6() ? "[" + a.to_string() + "]" : a.to_string()) + ":" + std::to_string(ep.port());
}

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

net::ip::address unmapped(const net::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    return net::ip::make_address_v4(net::ip::v4_mapped, a.to_v6());
  return a;
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
  http::response<http::string_body> res{static_cast<http::status>(status), 11};
  res.set(http::field::server, "acp");
  res.set(http::field::content_type, "application/json");
  if (status == 503) res.set(http::field::retry_after, "1");
  res.body() = nlohmann::json{{"error", error}, {"reason", reason}}.dump();
  res.keep_alive(false);
  res.prepare_payload();
  error_code ec;
  s.expires_after(kRefusalWriteTimeout);
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
    auto addr = ep.address();
    if (addr.is_v6() && addr.to_v6().is_v4_mapped())
      addr = net::ip::make_address_v4(net::ip::v4_mapped, addr.to_v6());
    peer_addr_ = addr.to_string();
  }
  client_.socket().set_option(tcp::no_delay(true), ec);
  state_->connections.insert(this);
  state_->peak_since_trim = std::max(state_->peak_since_trim, state_->connections.size());
}

Connection::~Connection() {
  state_->connections.erase(this);
  // glibc keeps freed heap pages for reuse: after 10k tunnels the proxy stayed at its peak RSS
  // (bench/proxy_soak_bench). When a burst has drained, hand them back to the kernel, once per
  // burst, so an idle proxy is small again; a steady trickle of connections never pays for it.
  if (state_->connections.empty() &&
      state_->peak_since_trim >= ProxyServer::State::kTrimAfterBurst) {
    state_->peak_since_trim = 0;
    ::malloc_trim(0);
  }
}

void Connection::close() {
  closed_ = true;
  error_code ec;
  client_.socket().close(ec);
  if (up_.stream) up_.stream->socket().close(ec);
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
  const auto& lim = state_->cfg.limits;
  for (bool first = true; !closed_; first = false) {
    size_t head_len = 0;
    auto got = co_await read_head(first, head_len);
    if (got == HeadRead::Closed || closed_) break;
    if (got == HeadRead::TimedOut) {
      co_await send_refusal(408, "Request timeout",
                            "the request header did not arrive within header_timeout", true);
      break;
    }
    if (got == HeadRead::TooLarge) {
      co_await send_refusal(431, "Request header too large",
                            "the request header exceeds " + std::to_string(lim.max_header_bytes) +
                                " bytes (max_header_bytes)",
                            true);
      break;
    }
    RequestParser p;
    auto d = buffer_.data();
    size_t used = 0;
    auto refusal = parse_request_head({static_cast<const char*>(d.data()), head_len},
                                      lim.max_body_bytes, p, used);
    buffer_.consume(used);
    if (refusal) {
      co_await send_refusal(refusal->status, refusal->error, refusal->reason, true);
      break;
    }
    const auto& req = p.get();

    nlohmann::json event = {{"event", "request"},
                            {"id", ++state_->next_request},
                            {"client", peer_},
                            {"method", std::string(req.method_string())}};
    auto start = Clock::now();
    bool keep = co_await handle_request(p, event);
    event["ms"] = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    state_->emit(event);
    if (!keep) break;
  }
  error_code ec;
  if (up_.stream) up_.stream->socket().close(ec);
  if (client_.tls() && !closed_) co_await close_tls();
  client_.socket().close(ec);
}

net::awaitable<void> Connection::close_tls() {
  // close_notify, so a body that ends with the connection is not taken for a truncation.
  error_code ec;
  client_.expires_after(kLingerTimeout);
  co_await client_.tls()->async_shutdown(redirect(ec));
}

net::awaitable<bool> Connection::handle_request(RequestParser& p, nlohmann::json& event) {
  auto& req = p.get();
  if (inspected_) {
    if (plain_tunnel_)
      event["tunnel"] = "http";
    else
      event["tls"] = "inspected";
    if (req.method() == http::verb::connect || req.target().empty() ||
        req.target().front() != '/') {
      event["status"] = 400;
      const std::string why = std::string("inside ") +
                              (plain_tunnel_ ? "a CONNECT tunnel" : "an inspected CONNECT") +
                              " only origin-form requests (GET /path) are served";
      co_await send_refusal(400, "Bad request target", why, true);
      co_return false;
    }
    const std::string why = host_disagreement(field_value(req, http::field::host), *inspected_);
    if (!why.empty()) {
      event["host"] = inspected_->host;
      event["port"] = inspected_->port;
      co_await refuse_mismatch(why, {}, event);
      co_return false;
    }
    co_return co_await handle_http(p, event);
  }
  if (req.method() == http::verb::connect) co_return co_await handle_connect(p, event);
  auto target = req.target();
  if (target.empty() || target.front() == '/' || target == "*") {
    bool keep = req.keep_alive() && p.is_done();
    event["status"] = 400;
    co_await send_refusal(
        400, "Not a proxy request",
        "ACP is a forward proxy: send absolute-form requests (GET http://host/path) or "
        "CONNECT host:port, e.g. set HTTP_PROXY and HTTPS_PROXY to this address",
        !keep);
    co_return keep;
  }
  co_return co_await handle_http(p, event);
}

net::awaitable<Judgement> Connection::judge(const RequestTarget& target, std::string method,
                                            nlohmann::json& event) {
  Action action;
  action.kind = "http";
  action.host = target.host;
  action.port = target.port;
  action.method = std::move(method);
  action.path = target.path;
  action.session = state_->cfg.session_id;
  action.client = peer_addr_;
  Judgement j = co_await judge(std::move(action));
  event["request_id"] = j.request_id;
  event["allowed"] = j.allowed;
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

net::awaitable<std::optional<beast::tcp_stream>> Connection::connect_upstream(
    const RequestTarget& target, const Judgement& j, Refusal& refusal, bool& restricted) {
  auto ex = co_await net::this_coro::executor;
  const auto& lim = state_->cfg.limits;
  const std::string where = (target.ipv6_literal ? "[" + target.host + "]" : target.host) + ":" +
                            std::to_string(target.port);
  error_code ec;
  // Resolved once: the addresses checked here are the only ones connected to. An IP literal
  // skips the resolver (it would run getaddrinfo on its own thread).
  std::vector<tcp::endpoint> candidates;
  if (auto literal = net::ip::make_address(target.host, ec); !ec) {
    candidates.emplace_back(literal, target.port);
  } else {
    ec = {};
    tcp::resolver resolver(ex);
    auto results = co_await resolver.async_resolve(target.host, std::to_string(target.port),
                                                   tcp::resolver::numeric_service, redirect(ec));
    if (ec) {
      refusal = {502, "Cannot resolve host", target.host + ": " + ec.message()};
      co_return std::nullopt;
    }
    for (const auto& r : results) candidates.push_back(r.endpoint());
  }
  std::vector<tcp::endpoint> endpoints;
  std::string why;
  for (const auto& ep : candidates) {
    auto addr = unmapped(ep.address());
    bool own = std::any_of(state_->bound.begin(), state_->bound.end(), [&](const auto& b) {
      return b.port() == ep.port() &&
             (unmapped(b.address()) == addr || b.address().is_unspecified());
    });
    if (own) {
      why =
          addr.to_string() + " port " + std::to_string(ep.port()) + " is this proxy's own address";
      continue;
    }
    // ACP's own listeners (any session's proxy, the web page, ...): never, whatever the policy.
    if (auto mine = own_endpoint_refusal(ep)) {
      why = *mine;
      continue;
    }
    if (auto reason = restricted_address_reason(addr); reason && !j.host_named) {
      why = target.host + " resolves to " + addr.to_string() + ", " + *reason +
            "; only a policy rule naming the host literally allows it";
      continue;
    }
    endpoints.push_back(ep);
  }
  if (endpoints.empty()) {
    refusal = {403, "Blocked by ACP", why};
    co_return std::nullopt;
  }
  beast::tcp_stream up(ex);
  up.expires_after(lim.connect_timeout);
  auto connected = co_await up.async_connect(endpoints, redirect(ec));
  if (ec == beast::error::timeout) {
    refusal = {504, "Upstream connect timeout",
               where + " did not answer within " + std::to_string(lim.connect_timeout.count()) +
                   " s (connect_timeout)"};
    co_return std::nullopt;
  }
  if (ec) {
    refusal = {502, "Upstream connect failed", where + ": " + ec.message()};
    co_return std::nullopt;
  }
  up.expires_never();
  up.socket().set_option(tcp::no_delay(true), ec);
  restricted = restricted_address_reason(unmapped(connected.address())).has_value();
  co_return std::optional<beast::tcp_stream>(std::move(up));
}

net::awaitable<bool> Connection::handle_connect(RequestParser& p, nlohmann::json& event) {
  auto target = parse_authority(p.get().target());
  if (!target) {
    event["status"] = 400;
    co_await send_refusal(400, "Bad CONNECT target", target.error().message(), true);
    co_return false;
  }
  event["host"] = target->host;
  event["port"] = target->port;
  auto j = co_await judge(*target, "CONNECT", event);
  if (closed_) co_return false;
  if (!j.allowed) {
    event["status"] = 403;
    event["reason"] = j.reason;
    co_await send_refusal(403, "Blocked by ACP", j.reason, true, j.request_id);
    co_return false;
  }
  if (state_->cfg.inspect_tls && !state_->cfg.inspect_tls->excluded(target->host))
    co_return co_await start_inspection(*target, j.request_id, event);
  Refusal rf;
  bool restricted = false;
  auto up = co_await connect_upstream(*target, j, rf, restricted);
  if (!up) {
    event["status"] = rf.status;
    event["reason"] = rf.reason;
    co_await send_refusal(rf.status, rf.error, rf.reason, true, j.request_id);
    co_return false;
  }
  if (closed_) co_return false;
  state_->n_allowed.fetch_add(1, std::memory_order_relaxed);
  static constexpr std::string_view kEstablished = "HTTP/1.1 200 Connection Established\r\n\r\n";
  error_code ec;
  client_.expires_after(kRefusalWriteTimeout);
  co_await net::async_write(client_, net::buffer(kEstablished), redirect(ec));
  event["status"] = 200;
  if (ec) co_return false;
  state_->n_tunnels.fetch_add(1, std::memory_order_relaxed);
  // What comes first decides. An origin that speaks first (ssh, SMTP) is not HTTP: a raw
  // tunnel. A client that sends a request line is served request by request, each judged as
  // an absolute-form request would be: a CONNECT to a plain-HTTP host:port must not pass what
  // a path or MCP rule there denies. A TLS ClientHello stays a raw tunnel (--inspect-tls reads
  // inside). Anything else is refused where a rule reads inside requests.
  const auto speaker = co_await first_speaker(up->socket());
  if (closed_ || speaker == Speaker::Neither) co_return false;
  if (speaker == Speaker::Client) {
    const auto bytes = co_await sniff_client();
    if (closed_) co_return false;
    if (bytes == TunnelBytes::Http) {
      event["tunnel"] = "http";
      up_.stream.emplace(std::move(*up));
      up_.buffer.clear();
      up_.key = target->host + ":" + std::to_string(target->port);
      up_.restricted = restricted;
      inspected_ = *target;
      plain_tunnel_ = true;
      co_return true;  // run() reads and judges the requests inside
    }
    if (bytes != TunnelBytes::Tls && (j.inside_path || j.inside_mcp)) {
      const std::string reason = "the tunnel's first bytes are neither HTTP nor TLS, and a " +
                                 std::string(j.inside_path ? "path or method" : "kind: mcp") +
                                 " rule applies to " + target->host + ":" +
                                 std::to_string(target->port) +
                                 ": ACP cannot judge what it cannot read there";
      event["reason"] = reason;
      event["tunnel"] = "refused";
      state_->n_denied.fetch_add(1, std::memory_order_relaxed);
      state_->audit({{"kind", "http"},
                     {"event", "tunnel_refused"},
                     {"request_id", j.request_id},
                     {"host", target->host},
                     {"port", target->port},
                     {"allowed", false},
                     {"reason", reason}});
      co_return false;  // run() closes both sides; nothing was forwarded
    }
  }
  co_await tunnel(std::move(*up), event);
  co_return false;
}

net::awaitable<Connection::Speaker> Connection::first_speaker(tcp::socket& upstream) {
  if (buffer_.size() > 0) co_return Speaker::Client;  // sent right behind the CONNECT header
  buffer_.shrink_to_fit();  // an idle tunnel holds no header buffer while it waits
  // Two waits race; the first readable side wins. The handlers hold only `race`: they may run
  // after this frame (cancelled), never touching the sockets.
  struct Race {
    explicit Race(const net::any_io_executor& ex) : timer(ex) {}
    net::steady_timer timer;
    std::optional<Speaker> who;
  };
  auto race = std::make_shared<Race>(co_await net::this_coro::executor);
  auto on = [race](Speaker s) {
    return [race, s](error_code ec) {
      if (!ec && !race->who) race->who = s;
      race->timer.cancel();
    };
  };
  race->timer.expires_after(state_->cfg.limits.idle_timeout);
  client_.socket().async_wait(tcp::socket::wait_read, on(Speaker::Client));
  upstream.async_wait(tcp::socket::wait_read, on(Speaker::Server));
  tunnel_timer_ = &race->timer;  // close() wakes it
  error_code ec;
  co_await race->timer.async_wait(redirect(ec));
  tunnel_timer_ = nullptr;
  error_code ignored;
  client_.socket().cancel(ignored);
  upstream.cancel(ignored);
  if (closed_ || !race->who) co_return Speaker::Neither;  // closed, or idle_timeout
  co_return *race->who;
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

net::awaitable<bool> Connection::start_inspection(const RequestTarget& target,
                                                  const std::string& request_id,
                                                  nlohmann::json& event) {
  auto& insp = *state_->cfg.inspect_tls;
  const auto& lim = state_->cfg.limits;
  up_.stream.reset();  // never reuse a plain upstream for the inspected requests
  static constexpr std::string_view kEstablished = "HTTP/1.1 200 Connection Established\r\n\r\n";
  error_code ec;
  client_.expires_after(kRefusalWriteTimeout);
  co_await net::async_write(client_, net::buffer(kEstablished), redirect(ec));
  if (ec || closed_) co_return false;
  event["tls"] = "inspected";
  auto& tls = client_.start_tls(insp.client_side());
  if (auto st = insp.use_leaf(tls.native_handle(), target.host); !st) {
    event["status"] = 500;
    event["reason"] = st.error().message();
    state_->n_errors.fetch_add(1, std::memory_order_relaxed);
    co_return false;
  }
  // The ClientHello may already sit behind the CONNECT header.
  client_.expires_after(lim.header_timeout);
  co_await tls.async_handshake(net::ssl::stream_base::server, buffer_.data(), redirect(ec));
  buffer_.consume(buffer_.size());
  if (ec || closed_) {
    // Typically the agent does not trust the ACP CA, or pins the certificate.
    event["status"] = 0;
    event["reason"] = "TLS handshake with the agent failed: " + ec.message();
    state_->n_errors.fetch_add(1, std::memory_order_relaxed);
    state_->audit({{"kind", "tls"},
                   {"event", "agent_handshake_failed"},
                   {"request_id", request_id},
                   {"host", target.host},
                   {"port", target.port},
                   {"reason", ec.message()}});
    co_return false;
  }
  inspected_ = target;
  state_->n_tunnels.fetch_add(1, std::memory_order_relaxed);
  event["status"] = 200;
  // SNI is optional (clients leave it out for IP literals), but when given it must be the
  // host the CONNECT was judged for.
  if (const char* sni = SSL_get_servername(tls.native_handle(), TLSEXT_NAMETYPE_host_name)) {
    if (normalize_host(sni) != target.host) {
      nlohmann::json inner = {{"event", "request"},  {"id", ++state_->next_request},
                              {"client", peer_},     {"tls", "inspected"},
                              {"host", target.host}, {"port", target.port}};
      co_await refuse_mismatch(
          "the TLS SNI (" + std::string(sni) + ") does not name the CONNECT host " + target.host,
          request_id, inner);
      state_->emit(inner);
      co_return false;
    }
  }
  co_return true;
}

net::awaitable<void> Connection::refuse_mismatch(const std::string& reason,
                                                 const std::string& request_id,
                                                 nlohmann::json& event) {
  event["status"] = 403;
  event["reason"] = reason;
  state_->audit({{"kind", plain_tunnel_ ? "http" : "tls"},
                 {"event", "name_mismatch"},
                 {"request_id", request_id},
                 {"host", inspected_ ? inspected_->host : std::string()},
                 {"port", inspected_ ? inspected_->port : 0},
                 {"allowed", false},
                 {"reason", reason}});
  co_await send_refusal(403, "Blocked by ACP", reason, true, request_id);
}

net::awaitable<bool> Connection::upstream_tls(const RequestTarget& target, Refusal& refusal) {
  auto& insp = *state_->cfg.inspect_tls;
  auto& up = *up_.stream;
  auto& tls = up.start_tls(insp.upstream_side());
  const std::string where = target.host + ":" + std::to_string(target.port);
  if (auto st = TlsInspector::expect_upstream(tls.native_handle(), target.host); !st) {
    refusal = {502, "Upstream TLS failed", where + ": " + st.error().message()};
    co_return false;
  }
  error_code ec;
  up.expires_after(state_->cfg.limits.connect_timeout);
  co_await tls.async_handshake(net::ssl::stream_base::client, redirect(ec));
  up.expires_never();
  if (!ec) co_return true;
  if (auto why = TlsInspector::verify_failure(tls.native_handle()); !why.empty())
    refusal = {502, "Upstream certificate refused",
               where + ": the origin's certificate does not verify: " + why};
  else if (ec == beast::error::timeout)
    refusal = {504, "Upstream connect timeout", where + ": the TLS handshake timed out"};
  else
    refusal = {502, "Upstream TLS failed", where + ": " + ec.message()};
  co_return false;
}

net::awaitable<void> Connection::tunnel(beast::tcp_stream upstream, nlohmann::json& event) {
  client_.expires_never();
  upstream.expires_never();
  auto& a = client_.socket();
  auto& b = upstream.socket();
  error_code ec;
  uint64_t up_bytes = 0, down_bytes = 0;
  // Bytes the client sent right behind the CONNECT header (a TLS ClientHello, say).
  if (buffer_.size() > 0) {
    up_bytes += buffer_.size();
    co_await net::async_write(b, buffer_.data(), redirect(ec));
    buffer_.consume(buffer_.size());
    if (ec) co_return;
  }
  // A tunnel never parses HTTP again: give the header buffer back (idle tunnel memory).
  buffer_.shrink_to_fit();
  relay_buffer_.reset();
  a.non_blocking(true, ec);
  b.non_blocking(true, ec);
  auto ex = co_await net::this_coro::executor;
  TunnelState st(ex);
  tunnel_timer_ = &st.timer;
  auto finished = [&st](std::exception_ptr) {
    ++st.done;
    st.timer.cancel();
  };
  net::co_spawn(ex, pump(a, b, st, up_bytes), finished);
  net::co_spawn(ex, pump(b, a, st, down_bytes), finished);
  const auto idle = state_->cfg.limits.idle_timeout;
  bool idled_out = false;
  while (st.done < 2) {
    st.timer.expires_after(idle);
    co_await st.timer.async_wait(redirect(ec));
    if (st.done >= 2) break;
    if (closed_ || (!ec && Clock::now() - st.last >= idle)) {
      idled_out = !closed_;
      error_code ignored;
      a.close(ignored);
      b.close(ignored);
    }
  }
  tunnel_timer_ = nullptr;
  event["bytes_up"] = up_bytes;
  event["bytes_down"] = down_bytes;
  if (idled_out) event["closed_by"] = "idle_timeout";
}

net::awaitable<bool> Connection::handle_http(RequestParser& p, nlohmann::json& event) {
  auto& req = p.get();
  const auto& lim = state_->cfg.limits;
  bool client_keep = req.keep_alive();
  const unsigned client_version = req.version();
  auto keep_after_refusal = [&] { return client_keep && p.is_done(); };
  // Canonical (request_target.hpp): what the policy, the gate and the audit see is what the
  // origin gets, target and Host alike.
  auto target =
      inspected_ ? parse_origin_form(req.target(), *inspected_) : parse_absolute_url(req.target());
  if (!target) {
    event["status"] = 400;
    bool keep = keep_after_refusal();
    co_await send_refusal(400, "Bad request target", target.error().message(), !keep);
    co_return keep;
  }
  event["host"] = target->host;
  event["port"] = target->port;
  event["path"] = target->path;
  auto j = co_await judge(*target, std::string(req.method_string()), event);
  if (closed_) co_return false;
  if (!j.allowed) {
    event["status"] = 403;
    event["reason"] = j.reason;
    bool keep = keep_after_refusal();
    co_await send_refusal(403, "Blocked by ACP", j.reason, !keep, j.request_id);
    co_return keep;
  }
  // MCP tool-call consent (proxy_connection_mcp.cpp): each tools/call in a JSON-RPC body is
  // judged before anything is forwarded; a refused message is answered here.
  if (auto gate = co_await mcp_gate(p, *target, j, event); gate != McpGate::Forward)
    co_return gate == McpGate::AnsweredKeep;

  // Where a path or method rule could apply, the origin must run exactly the request that was
  // judged. Content on a method whose handlers commonly ignore it (GET, HEAD, OPTIONS, TRACE)
  // would be read by such an origin as a second, unjudged request (python's http.server does):
  // refused. A body on any other method is forwarded on an upstream connection that closes
  // after it, so bytes the origin left unread are never parsed as a request. Headers that make
  // origins run another method or path are removed.
  const bool has_content = p.chunked() || p.content_length().value_or(0) > 0;
  bool close_upstream_after = false;
  if (j.inside_path) {
    const auto v = req.method();
    if (has_content && (v == http::verb::get || v == http::verb::head || v == http::verb::options ||
                        v == http::verb::trace)) {
      event["status"] = 400;
      const std::string why = std::string(req.method_string()) +
                              " with a body, where a path or method rule applies: an origin "
                              "that ignores the body would run it as another request";
      event["reason"] = why;
      co_await send_refusal(400, "Bad request", why, true, j.request_id);
      co_return false;
    }
    for (std::string_view h : {"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override",
                               "X-Original-URL", "X-Rewrite-URL", "X-Original-Method"})
      req.erase(h);
    close_upstream_after = has_content;
  }

  // The request as the origin gets it: origin-form target, our Host, no hop-by-hop headers.
  const bool head = req.method() == http::verb::head;
  const bool expect_continue =
      has_token(field_value(req, http::field::expect), "100-continue") && !p.is_done();
  req.erase(http::field::expect);
  strip_hop_by_hop(req);
  req.target(target->path);
  req.version(11);
  req.set(http::field::host, target->host_header(inspected_ && !plain_tunnel_ ? 443 : 80));
  // One framing, the parser's: "Content-Length: 5, 5" is forwarded as 5.
  if (!p.chunked() && p.content_length()) req.content_length(*p.content_length());
  if (close_upstream_after) req.set(http::field::connection, "close");
  const bool had_body = !p.is_done();

  if (!relay_buffer_) relay_buffer_.reset(new char[kRelayBufferBytes]);
  char* const buf = relay_buffer_.get();
  const std::string key = target->host + ":" + std::to_string(target->port);
  uint64_t bytes_up = 0, bytes_down = 0;
  std::optional<http::response_parser<http::buffer_body>> rp;
  bool sent_continue = false;
  for (int attempt = 0;; ++attempt) {
    // Never a connection with unread response bytes: they would answer this request.
    bool reused = up_.stream && up_.key == key && up_.stream->socket().is_open() &&
                  up_.buffer.size() == 0 && !close_upstream_after &&
                  (!up_.restricted || j.host_named);
    if (!reused) {
      up_.stream.reset();
      up_.buffer.clear();
      Refusal rf;
      bool restricted = false;
      auto s = co_await connect_upstream(*target, j, rf, restricted);
      if (closed_) co_return false;
      if (!s) {
        event["status"] = rf.status;
        event["reason"] = rf.reason;
        bool keep = keep_after_refusal();
        co_await send_refusal(rf.status, rf.error, rf.reason, !keep, j.request_id);
        co_return keep;
      }
      up_.stream.emplace(std::move(*s));
      up_.key = key;
      up_.restricted = restricted;
      if (inspected_ && !plain_tunnel_ && !co_await upstream_tls(*target, rf)) {
        up_.stream.reset();
        event["status"] = rf.status;
        event["reason"] = rf.reason;
        state_->audit({{"kind", "tls"},
                       {"event", "upstream_refused"},
                       {"request_id", j.request_id},
                       {"host", target->host},
                       {"port", target->port},
                       {"reason", rf.reason}});
        co_await send_refusal(rf.status, rf.error, rf.reason, true, j.request_id);
        co_return false;
      }
    }
    auto& up = *up_.stream;
    // The proxy answers Expect itself once it knows the request can go through.
    error_code ec;
    if (expect_continue && !sent_continue) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      client_.expires_after(lim.idle_timeout);
      co_await net::async_write(client_, net::buffer(kContinue), redirect(ec));
      if (ec) co_return false;
      sent_continue = true;
    }
    http::serializer<true, http::buffer_body> sr{req};
    // The header goes out on its own only when the body is not already here; otherwise
    // header and body leave in one write.
    if (!p.is_done() && buffer_.size() == 0) {
      up.expires_after(lim.idle_timeout);
      co_await http::async_write_header(up, sr, redirect(ec));
    }
    RelayFail fail = ec ? RelayFail::Write : RelayFail::None;
    if (!ec)
      fail = co_await relay_body(p, client_, buffer_, up, sr, buf, lim.idle_timeout, bytes_up, ec);
    const bool retry = reused && !had_body && attempt == 0;
    if (fail == RelayFail::BodyLimit) {
      up_.stream.reset();
      event["status"] = 413;
      co_await send_refusal(413, "Request body too large",
                            "the request body exceeds " + std::to_string(lim.max_body_bytes) +
                                " bytes (max_body_bytes)",
                            true, j.request_id);
      co_return false;
    }
    if (fail == RelayFail::Read) {  // the client went away or sent a broken body
      up_.stream.reset();
      event["status"] = 0;
      event["reason"] = "client closed during the request body";
      state_->n_errors.fetch_add(1, std::memory_order_relaxed);
      co_return false;
    }
    if (fail == RelayFail::Write) {
      if (retry) continue;  // a kept-alive upstream the origin had closed
      up_.stream.reset();
      event["status"] = 502;
      co_await send_refusal(502, "Upstream write failed", key + ": " + ec.message(), true,
                            j.request_id);
      co_return false;
    }
    // Interim 1xx responses are dropped: the proxy answered Expect itself.
    for (;;) {
      rp.emplace();
      rp->header_limit(kResponseHeaderLimit);
      rp->body_limit(std::numeric_limits<std::uint64_t>::max());
      if (head) rp->skip(true);
      up.expires_after(lim.idle_timeout);
      co_await http::async_read_header(up, up_.buffer, *rp, redirect(ec));
      if (ec) break;
      auto code = rp->get().result_int();
      if (code < 100 || code >= 200 || code == 101) break;
    }
    if (ec && retry) {
      rp.reset();
      continue;
    }
    if (ec) {
      up_.stream.reset();
      unsigned status = ec == beast::error::timeout ? 504 : 502;
      event["status"] = status;
      co_await send_refusal(status,
                            status == 504 ? "Upstream response timeout" : "Bad upstream response",
                            key + ": " + ec.message(), true, j.request_id);
      co_return false;
    }
    break;
  }
  state_->n_allowed.fetch_add(1, std::memory_order_relaxed);
  auto& res = rp->get();
  const unsigned code = res.result_int();
  if (code == 101) {
    up_.stream.reset();
    event["status"] = 502;
    co_await send_refusal(502, "Bad upstream response", "the origin switched protocols", true,
                          j.request_id);
    co_return false;
  }
  const bool until_eof =
      !head && code != 204 && code != 304 && !rp->chunked() && !rp->content_length().has_value();
  bool up_keep = res.keep_alive() && !until_eof && !close_upstream_after;
  strip_hop_by_hop(res);
  if (client_version < 11) {
    res.version(10);
    if (rp->chunked() || until_eof) {
      res.chunked(false);  // a 1.0 client reads to the end of the connection
      client_keep = false;
    }
  } else {
    res.version(11);
    if (until_eof) res.chunked(true);  // re-framed so the client connection can stay
  }
  client_keep = client_keep && p.is_done();
  res.keep_alive(client_keep);
  event["status"] = code;

  error_code ec;
  http::serializer<false, http::buffer_body> sr{res};
  if (!rp->is_done() && up_.buffer.size() == 0) {
    client_.expires_after(lim.idle_timeout);
    co_await http::async_write_header(client_, sr, redirect(ec));
  }
  auto fail = ec ? RelayFail::Write
                 : co_await relay_body(*rp, *up_.stream, up_.buffer, client_, sr, buf,
                                       lim.idle_timeout, bytes_down, ec);
  event["bytes_up"] = bytes_up;
  event["bytes_down"] = bytes_down;
  if (fail == RelayFail::Read && until_eof && rp->is_done()) fail = RelayFail::None;
  if (fail != RelayFail::None || !up_keep) up_.stream.reset();
  if (fail != RelayFail::None) {
    state_->n_errors.fetch_add(1, std::memory_order_relaxed);
    co_return false;
  }
  co_return client_keep;
}

net::awaitable<void> Connection::send_refusal(unsigned status, const std::string& error,
                                              const std::string& reason, bool close,
                                              const std::string& request_id) {
  if (status == 403) {
    state_->n_denied.fetch_add(1, std::memory_order_relaxed);
  } else {
    state_->n_errors.fetch_add(1, std::memory_order_relaxed);
  }
  if (closed_) co_return;
  http::response<http::string_body> res{static_cast<http::status>(status), 11};
  res.set(http::field::server, "acp");
  res.set(http::field::content_type, "application/json");
  if (!request_id.empty()) res.set("X-ACP-Request-Id", request_id);
  res.body() = nlohmann::json{{"error", error}, {"reason", reason}}.dump();
  res.keep_alive(!close);
  res.prepare_payload();
  error_code ec;
  client_.expires_after(kRefusalWriteTimeout);
  co_await http::async_write(client_, res, redirect(ec));
  if (ec) {
    client_.socket().close(ec);
    co_return;
  }
  if (close) co_await lingering_close();
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

}  // namespace acp::proxy
