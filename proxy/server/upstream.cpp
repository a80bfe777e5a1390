#include "upstream.hpp"

#include <algorithm>
#include <vector>

#include <boost/asio/this_coro.hpp>

#include "acp/proxy/own_endpoints.hpp"
#include "coro.hpp"

namespace acp::proxy {

namespace net = boost::asio;
namespace beast = boost::beast;
using tcp = net::ip::tcp;
using boost::system::error_code;

namespace {

// Why `ep` may not be reached for `target`, or empty when it may.
std::string unreachable_reason(const ProxyServer::State& state, const RequestTarget& target,
                               const tcp::endpoint& ep, bool host_named) {
  auto addr = unmapped(ep.address());
  bool own = std::any_of(state.bound.begin(), state.bound.end(), [&](const auto& b) {
    return b.port() == ep.port() && (unmapped(b.address()) == addr || b.address().is_unspecified());
  });
  if (own)
    return addr.to_string() + " port " + std::to_string(ep.port()) + " is this proxy's own address";
  // ACP's own listeners (any session's proxy, the web page, ...): never, whatever the policy.
  if (auto mine = own_endpoint_refusal(ep)) return *mine;
  if (auto reason = restricted_address_reason(addr); reason && !host_named)
    return target.host + " resolves to " + addr.to_string() + ", " + *reason +
           "; only a policy rule naming the host literally allows it";
  return {};
}

}  // namespace

net::awaitable<UpstreamConnect> connect_upstream(const ProxyServer::State& state,
                                                 const RequestTarget& target, bool host_named) {
  auto ex = co_await net::this_coro::executor;
  const auto& lim = state.cfg.limits;
  const std::string where = (target.ipv6_literal ? "[" + target.host + "]" : target.host) + ":" +
                            std::to_string(target.port);
  UpstreamConnect out;
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
      out.refusal = {502, "Cannot resolve host", target.host + ": " + ec.message()};
      co_return out;
    }
    for (const auto& r : results) candidates.push_back(r.endpoint());
  }
  std::vector<tcp::endpoint> endpoints;
  std::string why;
  for (const auto& ep : candidates) {
    if (auto reason = unreachable_reason(state, target, ep, host_named); !reason.empty())
      why = std::move(reason);
    else
      endpoints.push_back(ep);
  }
  if (endpoints.empty()) {
    out.refusal = {403, "Blocked by ACP", why};
    co_return out;
  }
  beast::tcp_stream up(ex);
  up.expires_after(lim.connect_timeout);
  auto connected = co_await up.async_connect(endpoints, redirect(ec));
  if (ec == beast::error::timeout) {
    out.refusal = {504, "Upstream connect timeout",
                   where + " did not answer within " + std::to_string(lim.connect_timeout.count()) +
                       " s (connect_timeout)"};
    co_return out;
  }
  if (ec) {
    out.refusal = {502, "Upstream connect failed", where + ": " + ec.message()};
    co_return out;
  }
  up.expires_never();
  up.socket().set_option(tcp::no_delay(true), ec);
  out.restricted = restricted_address_reason(unmapped(connected.address())).has_value();
  out.stream.emplace(std::move(up));
  co_return out;
}

}  // namespace acp::proxy
