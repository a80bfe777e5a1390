// Internal to proxy/server: what the listener and every connection share.
#pragma once

#include <utility>  // before boost/asio/awaitable.hpp (Boost 1.74)

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <unordered_set>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <nlohmann/json.hpp>

#include "acp/proxy/dns_responder.hpp"
#include "acp/proxy/own_endpoints.hpp"
#include "acp/proxy/proxy_server.hpp"
#include "acp/util/histogram.hpp"

namespace acp::proxy {

class RequestEvent;

// What stop() can close: a Connection, or a tunnel parked apart from the one that opened it
// (parked_tunnel.hpp). Each registers itself for its lifetime (State::opened / State::gone).
class Closable {
 public:
  // Aborts whatever it waits on; it ends (and unregisters) on its own afterwards.
  virtual void close() = 0;

 protected:
  ~Closable() = default;
};

struct ProxyServer::State : std::enable_shared_from_this<ProxyServer::State> {
  State(boost::asio::io_context& io, ProxyConfig cfg, RequestJudge& judge)
      : io(io), cfg(std::move(cfg)), judge(judge) {}

  boost::asio::io_context& io;
  ProxyConfig cfg;
  RequestJudge& judge;
  std::vector<boost::asio::ip::tcp::acceptor> acceptors;
  std::vector<boost::asio::ip::tcp::endpoint> bound;
  std::vector<OwnEndpoint> own;               // the listeners, registered as ACP's own endpoints
  uint64_t client_cgroup_id = 0;              // cfg.client_cgroup's id, read at start()
  std::unordered_set<Closable*> connections;  // live ones, for stop() and max_connections
  // The most connections open at once since the allocator was last asked to give memory back
  // (gone() does, when a burst of at least kTrimAfterBurst has drained).
  size_t peak_since_trim = 0;
  static constexpr size_t kTrimAfterBurst = 64;
  // A client connection is open (counted, closable by stop()) / has ended.
  void opened(Closable* c);
  void gone(Closable* c);
  std::function<void(const nlohmann::json&)> on_event;
  std::function<void(nlohmann::json)> on_audit;
  bool stopped = false;
  uint64_t next_request = 0;

  std::atomic<uint64_t> n_connections{0}, n_requests{0}, n_tunnels{0}, n_allowed{0}, n_denied{0},
      n_errors{0}, n_foreign{0}, n_door{0}, n_door_refused{0}, n_open{0}, n_bytes_up{0},
      n_bytes_down{0}, n_dns_answered{0}, n_dns_denied{0},
      n_dns_names{0};  // names.size(), published for counters() (another thread)
  // The names the session's DNS handed out (with cfg.door), looked up by the door.
  dns::SyntheticNames names;
  // The session's DNS, over UDP and TCP alike: at most kDnsPerSecond answers a second (beyond,
  // a query gets no reply: the agent's resolver retries), counted, by cfg.dns_may_resolve.
  static constexpr uint64_t kDnsPerSecond = 2000;
  std::chrono::steady_clock::time_point dns_window{};
  uint64_t dns_in_window = 0;
  dns::Answer answer_dns(std::span<const uint8_t> query);
  util::Histogram http_latency, connect_latency;  // RequestEvent::time_to_answer()

  // A request is over: its bytes and time to answer counted, its "ms" noted, its event
  // emitted. The one place every request event ends (proxy_connection.cpp).
  void finish(RequestEvent& event);

  void emit(const nlohmann::json& event) const {
    if (on_event) on_event(event);
  }
  void audit(nlohmann::json entry) const {
    if (on_audit) on_audit(std::move(entry));
  }
};

// Serves one client connection until it closes; `self` keeps the connection alive.
boost::asio::awaitable<void> serve_connection(std::shared_ptr<ProxyServer::State> state,
                                              boost::asio::ip::tcp::socket socket);
// Serves one connection the transparent door led in (transparent_door.cpp, docs/transparent.md).
boost::asio::awaitable<void> serve_door_connection(std::shared_ptr<ProxyServer::State> state,
                                                   boost::asio::ip::tcp::socket socket);
// Answers a connection that is not served (beyond max_connections: 503; a client outside the
// session: 403) with `status` and a JSON {error, reason}, then closes it.
boost::asio::awaitable<void> refuse_at_accept(std::shared_ptr<ProxyServer::State> state,
                                              boost::asio::ip::tcp::socket socket, unsigned status,
                                              std::string error, std::string reason);

}  // namespace acp::proxy
