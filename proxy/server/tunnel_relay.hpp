// Internal to proxy/server: the byte pumping of an established CONNECT tunnel, and the race that
// decides who speaks first after the 200. Plain Asio on the two sockets: no HTTP here.
#pragma once

#include <utility>  // before boost/asio/awaitable.hpp (Boost 1.74)

#include <chrono>
#include <cstdint>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

namespace acp::proxy {

// The owner's stop switch: `closed` is set and `wake` (set while one of these runs) cancelled by
// Connection::close(), from outside the coroutine.
struct TunnelStop {
  const bool& closed;
  boost::asio::steady_timer*& wake;
};

enum class Speaker { Client, Server, Neither };

// Who becomes readable first, the client or the origin: no fixed delay. Neither: closed, or
// nothing within `idle`.
boost::asio::awaitable<Speaker> first_speaker(boost::asio::ip::tcp::socket& client,
                                              boost::asio::ip::tcp::socket& upstream,
                                              std::chrono::seconds idle, TunnelStop stop);

struct TunnelTotals {
  uint64_t bytes_up = 0, bytes_down = 0;
  bool idled_out = false;  // closed for idle_timeout, not by either side
};

// Relays both ways until both directions end (a half-close is passed on, a reset or a close
// ends both), nothing moves for `idle`, or `stop`. The bytes go socket -> pipe -> socket with
// splice(2) and never enter user space; each direction's pipe is made when it first carries
// bytes. Where splice is refused (no fd for a pipe, a kernel without it) a direction reads and
// writes through a buffer that it drops whenever the peer goes quiet, so an idle tunnel holds
// no relay buffer either way. splice(2) has no MSG_NOSIGNAL: the process must ignore SIGPIPE
// (ProxyServer::start() makes sure).
boost::asio::awaitable<TunnelTotals> relay_tunnel(boost::asio::ip::tcp::socket& client,
                                                  boost::asio::ip::tcp::socket& upstream,
                                                  std::chrono::seconds idle, TunnelStop stop);

}  // namespace acp::proxy
