// Internal to proxy/server: an established CONNECT (or door) tunnel held apart from the
// Connection that judged and opened it (issue 17: an idle tunnel in at most 4 KB).
//
// Once the 200 is out and nothing more needs judging yet, everything the Connection held to get
// there (its coroutine frames, the request parser, the beast streams and their timers) is
// released: what stays is the two sockets, what the judgement granted, and the request's event.
// Parked, it waits for the first side to speak with two plain socket waits and one timer:
//   - the origin first (ssh, SMTP): relayed raw;
//   - the client first: a Connection again (serve_resumed_tunnel), which reads what it sent and
//     serves plain HTTP request by request, refuses what cannot be judged where a rule reads
//     inside, or hands the tunnel back here to be relayed raw;
//   - nobody within idle_timeout, or ProxyServer::stop(): closed.
// Relayed (TunnelRelay: splice, no user-space buffer while idle), it ends with its event.
#pragma once

#include <utility>  // before boost/asio/awaitable.hpp (Boost 1.74)

#include <memory>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "acp/proxy/request_target.hpp"
#include "proxy_state.hpp"
#include "request_event.hpp"

namespace acp::proxy {

// What the judgement of a tunnel granted, as far as what follows the 200 needs it.
struct TunnelGrant {
  RequestTarget target;
  std::string request_id;
  bool inside_path = false;  // a path or method rule applies to the target: read inside
  bool inside_mcp = false;   // a kind: mcp rule could apply to the target: read inside
  bool restricted = false;   // the upstream's address needed a rule naming the host
  bool door = false;         // led in by the transparent door (Action::via, refusals unanswered)
};

struct TunnelParts {
  boost::asio::ip::tcp::socket client;
  boost::asio::ip::tcp::socket upstream;
  TunnelGrant grant;
  RequestEvent event;
  std::string sent_ahead;  // client bytes read while telling the tunnel apart: forwarded first
};

// Nobody has spoken since the 200: waits for the first speaker (above).
void park_tunnel(std::shared_ptr<ProxyServer::State> state, TunnelParts parts);
// Nothing on the tunnel needs judging: relays it raw until it ends.
void relay_parked_tunnel(std::shared_ptr<ProxyServer::State> state, TunnelParts parts);
// The client of a parked tunnel spoke first: a Connection reads what it sent and carries the
// tunnel on (proxy_connection.cpp).
boost::asio::awaitable<void> serve_resumed_tunnel(std::shared_ptr<ProxyServer::State> state,
                                                  TunnelParts parts);

}  // namespace acp::proxy
