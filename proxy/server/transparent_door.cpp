// The transparent door's connections (issue 16 point 2, docs/transparent.md): the wall led a
// TCP connect() here instead of refusing it. The original destination comes from the kernel;
// the name judged comes from the client's first bytes; the proxy then dials that name itself,
// never the original address on the agent's word.
#include <utility>  // before boost/asio/awaitable.hpp (Boost 1.74)

#include <chrono>
#include <memory>

#include <boost/asio/read.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/write.hpp>

#include "acp/proxy/client_hello.hpp"
#include "acp/proxy/peer_identity.hpp"
#include "coro.hpp"
#include "dns_over_tcp.hpp"
#include "proxy_connection.hpp"

namespace acp::proxy {

namespace net = boost::asio;
namespace beast = boost::beast;
using tcp = net::ip::tcp;
using boost::system::error_code;

namespace {

// How long a led-in client may stay silent before it is taken for one whose server speaks
// first (ssh, SMTP, MySQL): then it is judged by its original address.
constexpr std::chrono::milliseconds kFirstBytesWait{300};

// "1.2.3.4:80" or "[::1]:80" as a target: the original address, judged literally.
std::optional<RequestTarget> address_target(const tcp::endpoint& original) {
  auto t = parse_authority(endpoint_text(original));
  if (!t) return std::nullopt;
  return *t;
}

// A name from SNI or Host, on the original port; nullopt when it is no host (canonical_host
// refuses it): the caller judges the address instead.
std::optional<RequestTarget> named_target(std::string_view name, uint16_t port) {
  RequestTarget t;
  if (auto a = parse_authority(name)) {
    t.host = a->host;  // a Host header's own port is checked per request (host_disagreement)
    t.ipv6_literal = a->ipv6_literal;
  } else {
    t.host = normalize_host(name);
  }
  if (t.host.empty()) return std::nullopt;
  t.port = port;
  return t;
}

// The Host header of the complete head at the start of `s`, "" when there is none or the head
// is refused (serve_request() then refuses it as it would any request).
std::string head_host(std::string_view head, const ProxyLimits& lim) {
  RequestParser p;
  size_t used = 0;
  if (parse_request_head(head, lim.max_body_bytes, p, used)) return {};
  return std::string(p.get()[boost::beast::http::field::host]);
}

// Whether `s` becomes readable within `wait`, without reading or closing it (a tcp_stream's
// timeout would close it). `wake`: set while waiting, for Connection::close() to cancel.
net::awaitable<bool> readable_within(tcp::socket& s, std::chrono::milliseconds wait,
                                     net::steady_timer*& wake) {
  // The handler holds only `race`: it may run after this frame (cancelled).
  struct Race {
    explicit Race(const net::any_io_executor& ex) : timer(ex) {}
    net::steady_timer timer;
    bool readable = false;
  };
  auto race = std::make_shared<Race>(co_await net::this_coro::executor);
  race->timer.expires_after(wait);
  s.async_wait(tcp::socket::wait_read, [race](error_code ec) {
    if (!ec) race->readable = true;
    race->timer.cancel();
  });
  wake = &race->timer;
  error_code ec;
  co_await race->timer.async_wait(redirect(ec));
  wake = nullptr;
  error_code ignored;
  s.cancel(ignored);
  co_return race->readable;
}

}  // namespace

net::awaitable<void> serve_door_connection(std::shared_ptr<ProxyServer::State> state,
                                           tcp::socket socket) {
  Connection c(state, std::move(socket));
  try {
    co_await c.run_door();
  } catch (const std::exception&) {
    state->n_errors.fetch_add(1, std::memory_order_relaxed);
  }
}

net::awaitable<void> Connection::run_door() {
  door_ = true;
  state_->n_door.fetch_add(1, std::memory_order_relaxed);
  RequestEvent event(++state_->next_request, peer_);
  event.note("via", "transparent");
  event.opens_tunnel();
  bool more = co_await open_door(event);
  state_->finish(event);
  while (more && !closed_) more = co_await serve_request(false);
  co_await finish();
}

net::awaitable<void> Connection::refuse_door(RequestEvent& event, std::string reason) {
  state_->n_door_refused.fetch_add(1, std::memory_order_relaxed);
  Refusal r{403, "Blocked by ACP", std::move(reason)};
  r.audit = {{"kind", "http"},
             {"event", "door_refused"},
             {"via", "transparent"},
             {"client", peer_},
             {"allowed", false}};
  if (auto h = event.json().find("original"); h != event.json().end()) r.audit["original"] = *h;
  co_await refuse(event, std::move(r));
}

net::awaitable<bool> Connection::open_door(RequestEvent& event) {
  error_code ec;
  const auto peer = client_.socket().remote_endpoint(ec);
  if (ec) co_return false;
  auto original = state_->cfg.door_origin(client_.socket().native_handle(), peer);
  if (!original) {
    co_await refuse_door(event, "the wall has no original destination for this connection (" +
                                    original.error().message() + "): refused");
    co_return false;
  }
  event.note("original", endpoint_text(*original));
  // DNS over TCP, to any address (resolv.conf's, 127.0.0.53, 8.8.8.8): the session's DNS
  // answers it, as it does over UDP; no query leaves.
  if (original->port() == 53) co_return co_await serve_door_dns(event);
  // The kernel leads loopback connects in too: local services stay unreachable (ACP's own
  // listeners among them), whatever the agent sends.
  if (original->address().is_loopback() || original->address().is_unspecified()) {
    co_await refuse_door(event, "the original destination " + endpoint_text(*original) +
                                    " is on this host: local services are not reachable");
    co_return false;
  }
  // A synthetic address the session's DNS handed out: the name the agent looked up is known
  // exactly (dns_responder.hpp). One it never handed out (or reused since) names nothing.
  std::optional<std::string> looked_up;
  if (state_->names.is_synthetic(original->address())) {
    looked_up = state_->names.name_of(original->address());
    if (!looked_up) {
      co_await refuse_door(event, "the address " + endpoint_text(*original) +
                                      " was not handed out by this session's DNS (or its name "
                                      "was reused since): look the name up again");
      co_return false;
    }
    event.note("dns_name", *looked_up);
  }
  std::string refused;
  auto target = co_await door_target(*original, looked_up, event, refused);
  if (closed_) co_return false;
  if (!target) {
    // Named first: GCC 12 destroys a ?: temporary twice inside a co_await expression.
    if (refused.empty()) refused = "no target could be made of " + endpoint_text(*original);
    co_await refuse_door(event, std::move(refused));
    co_return false;
  }
  if (door_http_) co_return serve_door_http(*target, event);
  co_return co_await serve_tunnel(*target, event, {});
}

bool Connection::serve_door_http(const RequestTarget& target, RequestEvent& event) {
  // Plain HTTP, as it would come through the explicit proxy: nothing is judged for the
  // connection itself (a human would be asked twice for one GET: "CONNECT" then the request),
  // nothing is dialled yet; each request on it is judged, and dialled, on its own (run_door).
  // Every request must name this host (route_inside_tunnel): the one judged first.
  event.target(target);
  event.note("tunnel", "http");
  inspected_ = target;
  plain_tunnel_ = true;
  return true;
}

net::awaitable<bool> Connection::serve_door_dns(RequestEvent& event) {
  event.note("dns", "tcp");
  co_await answer_dns_over_tcp(*state_, client_);
  co_return false;
}

net::awaitable<std::optional<RequestTarget>> Connection::door_target(
    const tcp::endpoint& original, const std::optional<std::string>& looked_up, RequestEvent& event,
    std::string& refused) {
  // Without a name in the first bytes: the name the agent looked up, else the address.
  auto fallback = [&]() -> std::optional<RequestTarget> {
    if (looked_up) return named_target(*looked_up, original.port());
    return address_target(original);
  };
  // A name in the first bytes must be the name the agent looked up, if it looked one up: an
  // allowed SNI sent to the address of another name is refused, not judged as either.
  auto named = [&](std::string_view name) -> std::optional<RequestTarget> {
    auto t = named_target(name, original.port());
    if (!t) return fallback();
    if (looked_up && t->host != *looked_up) {
      refused = "the connection names " + t->host + " but the agent looked up " + *looked_up +
                " for this address: refused";
      return std::nullopt;
    }
    return t;
  };
  // Silent within the wait: a server-speaks-first protocol, judged by its name or address.
  if (!co_await readable_within(client_.socket(), kFirstBytesWait, tunnel_timer_))
    co_return closed_ ? std::nullopt : fallback();
  const auto& lim = state_->cfg.limits;
  client_.expires_after(lim.header_timeout);
  for (;;) {
    error_code ec;
    const size_t n = co_await client_.async_read_some(buffer_.prepare(16 * 1024), redirect(ec));
    buffer_.commit(n);
    // The client left or stalled before it could be told apart: nothing to judge.
    if (ec || closed_) co_return std::nullopt;
    auto d = buffer_.data();
    std::string_view sv(static_cast<const char*>(d.data()), d.size());
    auto hello = client_hello_server_name(sv);
    if (hello.scan == HelloScan::Name) {
      event.note("sni", hello.name);
      co_return named(hello.name);
    }
    if (hello.scan == HelloScan::NoName) co_return fallback();
    if (hello.scan == HelloScan::NeedMore) continue;
    const auto kind = classify_tunnel_bytes(sv, lim.max_header_bytes);
    if (kind == TunnelBytes::NeedMore) continue;
    if (kind != TunnelBytes::Http) co_return fallback();
    door_http_ = true;
    if (auto end = find_header_end(sv); end != std::string_view::npos)
      co_return named(head_host(sv.substr(0, end), lim));
    // Too large a head: serve_request() refuses it (431) inside the tunnel it opens.
    if (sv.size() > lim.max_header_bytes) co_return fallback();
  }
}

}  // namespace acp::proxy
