// Internal to proxy/server: one client connection of the forward proxy. Its member functions are
// split by concern, one file each:
//   proxy_connection.cpp  request routing: read and parse a head, route it (absolute-form HTTP,
//                         CONNECT, a request inside a tunnel), judge, refuse(), CONNECT tunnels
//   http_forward.cpp      one HTTP request to the origin and its response back (100-continue,
//                         HTTP/1.0 reframing, kept-alive upstream reuse, streamed bodies)
//   tls_interception.cpp  an inspected CONNECT: TLS with the agent on a minted leaf, verified
//                         TLS to the origin, SNI/Host agreement
//   mcp_gate.cpp          MCP tools/call consent inside an allowed request body
//   transparent_door.cpp  a connection the wall led in (issue 16): original destination, first
//                         bytes (SNI, Host), then served as a CONNECT to that name would be
// and free-standing parts: upstream.hpp (resolve, destination check, connect, the kept-alive
// upstream) and tunnel_relay.hpp (byte pumping of a tunnel).
#pragma once

#include <utility>  // before boost/asio/awaitable.hpp (Boost 1.74)

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "acp/proxy/request_head.hpp"
#include "acp/proxy/request_target.hpp"
#include "parked_tunnel.hpp"
#include "proxy_state.hpp"
#include "proxy_stream.hpp"
#include "request_event.hpp"
#include "tunnel_relay.hpp"
#include "upstream.hpp"

namespace acp::proxy {

// How long writing an answer of ACP's own (a refusal, a 200 for a tunnel) to the client may take.
inline constexpr std::chrono::seconds kAnswerWriteTimeout{10};

class Connection final : public Closable {
 public:
  Connection(std::shared_ptr<ProxyServer::State> state, boost::asio::ip::tcp::socket socket);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  boost::asio::awaitable<void> run();
  // A connection the transparent door accepted (transparent_door.cpp, docs/transparent.md).
  boost::asio::awaitable<void> run_door();
  // A parked tunnel whose client spoke first (parked_tunnel.hpp): what it sent is read and the
  // tunnel carried on as if the client had sent it right behind the CONNECT.
  boost::asio::awaitable<void> resume_tunnel(TunnelParts parts);
  // From ProxyServer::stop(): aborts whatever the connection is waiting on.
  void close() override;

 private:
  // --- request routing (proxy_connection.cpp)
  enum class HeadRead { Ok, Closed, TooLarge, TimedOut };
  boost::asio::awaitable<HeadRead> read_head(bool first, size_t& head_len);
  // Reads, parses and serves one request; its event is emitted when it is over. False: close.
  boost::asio::awaitable<bool> serve_request(bool first);
  boost::asio::awaitable<bool> route(RequestParser& parser, RequestEvent& event);
  // A request inside an inspected CONNECT or a plain-HTTP tunnel: origin-form, for its host.
  boost::asio::awaitable<bool> route_inside_tunnel(RequestParser& parser, RequestEvent& event);
  // One request's Action (kind http) from its target, judged; noted in `event`.
  boost::asio::awaitable<Judgement> judge(const RequestTarget& target, std::string method,
                                          RequestEvent& event);
  boost::asio::awaitable<Judgement> judge(Action action);
  // The one way a refusal reaches the client: the answer, the event's status and reason, the
  // counters and (with r.audit) the audit entry, together. Closes unless r.close is false.
  boost::asio::awaitable<void> refuse(RequestEvent& event, Refusal r);
  boost::asio::awaitable<void> lingering_close();
  boost::asio::awaitable<void> close_tls();

  // After the last request: the upstream, the client's TLS and the socket closed.
  boost::asio::awaitable<void> finish();

  // --- the transparent door (transparent_door.cpp)
  // Judges a led-in connection by its original destination and first bytes and opens its
  // tunnel; true when requests follow (the client spoke HTTP: served as in a plain tunnel).
  boost::asio::awaitable<bool> open_door(RequestEvent& event);
  // A led-in connection whose client spoke HTTP: served request by request as a plain-HTTP
  // tunnel to `target`, each request judged (and its upstream dialled) on its own. True.
  bool serve_door_http(const RequestTarget& target, RequestEvent& event);
  // A led-in connection to port 53: DNS over TCP, answered by the session's DNS.
  boost::asio::awaitable<bool> serve_door_dns(RequestEvent& event);
  // The target a led-in connection is judged as: the SNI of its ClientHello, the Host of its
  // HTTP request, else the name the agent looked up (`looked_up`: the original is a synthetic
  // address of the session's DNS), else the original address (read from buffer_, filled here
  // within a bound). nullopt with `refused` set: a name that is not the one looked up.
  boost::asio::awaitable<std::optional<RequestTarget>> door_target(
      const boost::asio::ip::tcp::endpoint& original, const std::optional<std::string>& looked_up,
      RequestEvent& event, std::string& refused);
  // A led-in connection refused before any judgement: closed (answered only when it spoke
  // HTTP) and audited.
  boost::asio::awaitable<void> refuse_door(RequestEvent& event, std::string reason);

  // --- CONNECT tunnels (proxy_connection.cpp; the byte pumping is tunnel_relay.hpp)
  boost::asio::awaitable<bool> handle_connect(RequestParser& parser, RequestEvent& event);
  // Judges `target` like a CONNECT and serves what follows: TLS inspection, a plain-HTTP tunnel
  // served request by request, or a raw tunnel. `established` is sent to the client once the
  // upstream is connected (the CONNECT's 200); a door that takes connections without a CONNECT
  // (issue 16's transparent door, its target peeked from SNI or Host) passes it empty.
  boost::asio::awaitable<bool> serve_tunnel(const RequestTarget& target, RequestEvent& event,
                                            std::string_view established);
  // After the 200: who speaks first decides what the tunnel is (docs/proxy.md). Until one
  // does, the tunnel waits parked, without this Connection (parked_tunnel.hpp).
  boost::asio::awaitable<bool> classify_tunnel(const RequestTarget& target, const Judgement& j,
                                               UpstreamConnect up, RequestEvent& event);
  // The client spoke first: its bytes decide (plain HTTP served here request by request, a
  // refusal, or a raw tunnel relayed parked). True: requests follow.
  boost::asio::awaitable<bool> client_spoke(TunnelGrant grant,
                                            boost::asio::ip::tcp::socket upstream,
                                            RequestEvent& event);
  // Reads the client's first tunnel bytes into buffer_ until they can be told apart.
  boost::asio::awaitable<TunnelBytes> sniff_client();
  // The tunnel out of this Connection (its client socket, what buffer_ holds, the event).
  TunnelParts take_tunnel(TunnelGrant grant, boost::asio::ip::tcp::socket upstream,
                          RequestEvent& event);

  // --- TLS interception (tls_interception.cpp)
  // An allowed CONNECT to an inspected host: `established`, then TLS with the agent on a minted
  // leaf; the requests inside then go through run() and handle_http like plain ones.
  boost::asio::awaitable<bool> start_inspection(const RequestTarget& target,
                                                const std::string& request_id, RequestEvent& event,
                                                std::string_view established);
  // TLS to the origin on up_'s stream, verified; the refusal when it fails.
  boost::asio::awaitable<std::optional<Refusal>> upstream_tls(const RequestTarget& target,
                                                              const std::string& request_id);
  // A request inside an inspected CONNECT (or plain-HTTP tunnel) whose names disagree: 403,
  // audited as a name mismatch.
  Refusal name_mismatch(std::string reason, const std::string& request_id) const;

  // --- HTTP forwarding (http_forward.cpp)
  boost::asio::awaitable<bool> handle_http(RequestParser& parser, RequestEvent& event);
  struct Forward;  // one allowed request on its way: http_forward.cpp
  // Refuses what a path or method rule could not judge, then rewrites the request as the
  // origin gets it. False: refused.
  boost::asio::awaitable<bool> prepare_request(Forward& f, RequestEvent& event);
  // The request to the origin (a kept-alive upstream or a new one, 100-continue, header, body)
  // and its response header read, retried once on a fresh upstream when a reused one turns out
  // closed. Empty: the response is there; else answered here, whether to keep the connection.
  boost::asio::awaitable<std::optional<bool>> send_request(Forward& f, RequestEvent& event);
  boost::asio::awaitable<std::optional<bool>> open_upstream(Forward& f, RequestEvent& event);
  // The response to the client, reframed for its HTTP version. Whether to keep the connection.
  boost::asio::awaitable<bool> relay_response(Forward& f, RequestEvent& event);

  // --- MCP (mcp_gate.cpp, docs/mcp.md): tool-call consent on a plain HTTP request the policy
  // allowed. Reads a JSON-RPC body into buffer_ (raw, still unparsed, so the usual relay
  // forwards it unchanged) and judges each tools/call; refused ones are answered here.
  enum class McpGate { Forward, AnsweredKeep, AnsweredClose };
  // `j` is the request's judgement: j.inside_mcp (a kind: mcp rule could apply to the host)
  // makes every body on it inspected and what cannot be inspected refused.
  boost::asio::awaitable<McpGate> mcp_gate(RequestParser& parser, const RequestTarget& target,
                                           const Judgement& j, RequestEvent& event);
  // ACP's JSON-RPC answer to a refused message, in place of the server's (`reason`: the judge's).
  boost::asio::awaitable<McpGate> answer_mcp(RequestParser& parser, const std::string& reply,
                                             const std::string& request_id,
                                             const std::string& reason, RequestEvent& event);

  std::shared_ptr<ProxyServer::State> state_;
  ProxyStream client_;  // TLS once an inspected CONNECT is established
  boost::beast::flat_buffer buffer_;
  KeptUpstream up_;
  std::unique_ptr<char[]> relay_buffer_;  // bodies of plain HTTP requests and responses
  boost::asio::steady_timer* tunnel_timer_ = nullptr;  // close() cancels it: the door's wait
  bool closed_ = false;
  std::string peer_;
  // Set inside an inspected CONNECT, or a CONNECT tunnel whose client sent plain HTTP: where
  // every request on this connection goes.
  std::optional<RequestTarget> inspected_;
  bool plain_tunnel_ = false;  // inspected_ without TLS: the client spoke HTTP in a tunnel
  std::string peer_addr_;      // peer_ without the port: Action::client
  // Led in by the transparent door: the Action says so; a refusal is answered (403) only when
  // the client spoke HTTP (door_http_), else the connection is just closed.
  bool door_ = false;
  bool door_http_ = false;
};

}  // namespace acp::proxy
