// Internal to proxy/server: one client connection of the forward proxy.
#pragma once

#include <utility>  // before boost/asio/awaitable.hpp (Boost 1.74)

#include <memory>
#include <optional>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <nlohmann/json.hpp>

#include "acp/proxy/request_head.hpp"
#include "acp/proxy/request_target.hpp"
#include "proxy_state.hpp"
#include "proxy_stream.hpp"

namespace acp::proxy {

class Connection {
 public:
  Connection(std::shared_ptr<ProxyServer::State> state, boost::asio::ip::tcp::socket socket);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  boost::asio::awaitable<void> run();
  // From ProxyServer::stop(): aborts whatever the connection is waiting on.
  void close();

 private:
  enum class HeadRead { Ok, Closed, TooLarge, TimedOut };
  struct Upstream {
    std::optional<ProxyStream> stream;  // plain, or TLS inside an inspected CONNECT
    boost::beast::flat_buffer buffer;
    std::string key;          // host:port it was opened for
    bool restricted = false;  // its address needed a rule naming the host
  };
  struct Refusal {
    unsigned status = 0;
    std::string error, reason;
  };

  boost::asio::awaitable<HeadRead> read_head(bool first, size_t& head_len);
  boost::asio::awaitable<bool> handle_request(RequestParser& parser, nlohmann::json& event);
  boost::asio::awaitable<bool> handle_connect(RequestParser& parser, nlohmann::json& event);
  boost::asio::awaitable<bool> handle_http(RequestParser& parser, nlohmann::json& event);
  // One request's Action (kind http) from its target, judged; request id and verdict noted
  // in `event`.
  boost::asio::awaitable<Judgement> judge(const RequestTarget& target, std::string method,
                                          nlohmann::json& event);
  boost::asio::awaitable<Judgement> judge(Action action);
  // Resolves, checks and connects; on failure fills `refusal`.
  boost::asio::awaitable<std::optional<boost::beast::tcp_stream>> connect_upstream(
      const RequestTarget& target, const Judgement& j, Refusal& refusal, bool& restricted);
  // An allowed CONNECT to an inspected host: 200, then TLS with the agent on a minted leaf;
  // the requests inside then go through run() and handle_http like plain ones.
  boost::asio::awaitable<bool> start_inspection(const RequestTarget& target,
                                                const std::string& request_id,
                                                nlohmann::json& event);
  // TLS to the origin on up_.stream, verified; on failure fills `refusal`.
  boost::asio::awaitable<bool> upstream_tls(const RequestTarget& target, Refusal& refusal);
  // Denies a request inside an inspected CONNECT whose names disagree: 403 and close.
  boost::asio::awaitable<void> refuse_mismatch(const std::string& reason,
                                               const std::string& request_id,
                                               nlohmann::json& event);
  boost::asio::awaitable<void> tunnel(boost::beast::tcp_stream upstream, nlohmann::json& event);
  // After a CONNECT's 200: who sends first, the client or the origin? A client that sends
  // plain HTTP is served request by request (plain_tunnel_); see handle_connect.
  enum class Speaker { Client, Server, Neither };
  boost::asio::awaitable<Speaker> first_speaker(boost::asio::ip::tcp::socket& upstream);
  // Reads the client's first tunnel bytes into buffer_ until they can be told apart.
  boost::asio::awaitable<TunnelBytes> sniff_client();
  boost::asio::awaitable<void> send_refusal(unsigned status, const std::string& error,
                                            const std::string& reason, bool close,
                                            const std::string& request_id = {});
  boost::asio::awaitable<void> lingering_close();
  boost::asio::awaitable<void> close_tls();
  // MCP tool-call consent on a plain HTTP request the policy allowed (proxy_connection_mcp.cpp,
  // docs/mcp.md): reads a JSON-RPC body into buffer_ (raw, still unparsed, so the usual relay
  // forwards it unchanged) and judges each tools/call; refused ones are answered here.
  enum class McpGate { Forward, AnsweredKeep, AnsweredClose };
  // `j` is the request's judgement: j.inside_mcp (a kind: mcp rule could apply to the host)
  // makes every body on it inspected and what cannot be inspected refused.
  boost::asio::awaitable<McpGate> mcp_gate(RequestParser& parser, const RequestTarget& target,
                                           const Judgement& j, nlohmann::json& event);

  std::shared_ptr<ProxyServer::State> state_;
  ProxyStream client_;  // TLS once an inspected CONNECT is established
  boost::beast::flat_buffer buffer_;
  Upstream up_;
  std::unique_ptr<char[]> relay_buffer_;  // bodies of plain HTTP requests and responses
  boost::asio::steady_timer* tunnel_timer_ = nullptr;  // set while a tunnel runs
  bool closed_ = false;
  std::string peer_;
  // Set inside an inspected CONNECT, or a CONNECT tunnel whose client sent plain HTTP: where
  // every request on this connection goes.
  std::optional<RequestTarget> inspected_;
  bool plain_tunnel_ = false;  // inspected_ without TLS: the client spoke HTTP in a tunnel
  std::string peer_addr_;      // peer_ without the port: Action::client
};

}  // namespace acp::proxy
