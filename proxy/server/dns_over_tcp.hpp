// DNS over TCP answered by the session's responder (State::answer_dns): the transparent door's
// port-53 connections and the docker gateway's TCP listener (GatewayDns) share it.
#pragma once

#include <utility>  // before boost/asio/awaitable.hpp (Boost 1.74)

#include <array>
#include <chrono>
#include <cstdint>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include "coro.hpp"
#include "proxy_state.hpp"

namespace acp::proxy {

// RFC 7766 framing: a two-byte length, then the message; several may follow on one connection,
// each answered in turn. Bounded: messages per connection, time per message. Returns when the
// client stops, breaks a bound or sends what is no query.
template <class Stream>
boost::asio::awaitable<void> answer_dns_over_tcp(ProxyServer::State& state, Stream& client) {
  namespace net = boost::asio;
  constexpr int kMaxMessages = 64;
  for (int i = 0; i < kMaxMessages; ++i) {
    client.expires_after(std::chrono::seconds(10));
    std::array<uint8_t, 2> len{};
    boost::system::error_code ec;
    co_await net::async_read(client, net::buffer(len), redirect(ec));
    if (ec) break;
    const size_t n = (size_t{len[0]} << 8) | len[1];
    if (n == 0 || n > dns::kMaxQueryBytes) break;
    std::vector<uint8_t> query(n);
    co_await net::async_read(client, net::buffer(query), redirect(ec));
    if (ec) break;
    auto a = state.answer_dns(query);
    if (a.wire.empty()) break;  // not a query: the connection is no DNS client's
    std::vector<uint8_t> out(2 + a.wire.size());
    out[0] = static_cast<uint8_t>(a.wire.size() >> 8);
    out[1] = static_cast<uint8_t>(a.wire.size());
    std::copy(a.wire.begin(), a.wire.end(), out.begin() + 2);
    co_await net::async_write(client, net::buffer(out), redirect(ec));
    if (ec) break;
  }
}

}  // namespace acp::proxy
