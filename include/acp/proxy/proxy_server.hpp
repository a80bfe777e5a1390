// The consent proxy's network side: a Boost.Beast forward proxy (CONNECT tunnels and
// absolute-form HTTP) that asks a RequestJudge about every request and obeys the answer.
// One coroutine per client connection, all on the caller's io_context (one thread).
#pragma once

#include <utility>  // before boost/asio/awaitable.hpp (Boost 1.74)

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <nlohmann/json_fwd.hpp>

#include "acp/proxy/own_endpoints.hpp"
#include "acp/proxy/request_judge.hpp"
#include "acp/util/histogram.hpp"
#include "acp/util/result.hpp"

namespace acp::proxy {

class TlsInspector;

// Every resource a client (the agent) controls has a limit; each refusal has its own status.
struct ProxyLimits {
  size_t max_header_bytes = 64 * 1024;       // request line + headers; beyond: 431
  uint64_t max_body_bytes = 0;               // request body; 0 = unlimited (streamed); beyond: 413
  std::chrono::seconds idle_timeout{300};    // no byte either way on a connection or tunnel
  std::chrono::seconds connect_timeout{10};  // upstream TCP connect; beyond: 504
  std::chrono::seconds header_timeout{30};   // from the first byte to the end of the header
  std::chrono::seconds judge_timeout{0};     // 0 = wait for the judge as long as it takes
  size_t max_connections = 4096;             // concurrent client connections; beyond: 503
};

struct DoorListeners;  // below
struct GatewayDns;     // below

struct ProxyConfig {
  std::vector<boost::asio::ip::tcp::endpoint> listen;  // port 0: any free port
  ProxyLimits limits;
  std::string session_id;  // copied into every Action
  // Set: an allowed CONNECT to a host it does not exclude is inspected (docs/tls-inspection.md)
  // and every request inside is judged by method and path. Null: CONNECT is a blind tunnel.
  std::shared_ptr<TlsInspector> inspect_tls;
  // Set (a cgroup v2 directory): only a client whose socket the kernel puts in this cgroup or
  // below it is served; any other connection is answered 403 at accept, before a byte is read,
  // and audited. Empty: whoever reaches the listener (docs/architecture.md, "Who is talking to
  // the proxy").
  std::string client_cgroup;
  // Set (instead of client_cgroup): the session's clients live in a network namespace of
  // their own (a docker network), where the cgroup lookup cannot see their sockets; only a
  // client at an address this accepts is served, on every listener (the door's included),
  // any other is refused at accept and audited as client_cgroup's are.
  std::function<bool(const boost::asio::ip::address&)> clients_at;
  // How the listeners are known among ACP's own endpoints (own_endpoints.hpp), which no proxy
  // connects to; empty: "consent proxy".
  std::string own_name;
  // Set: the transparent door. A connection accepted there is judged by where it was going
  // (door_origin) and what it sends first (TLS SNI, HTTP Host), as a CONNECT to that name would
  // be (docs/transparent.md).
  std::shared_ptr<DoorListeners> door;
  // With door: whether the session's DNS may hand out an address for a name
  // (Policy::may_reach); unset: every name is NXDOMAIN (dns_responder.hpp).
  std::function<bool(const std::string&)> dns_may_resolve;
  // Where the door's client at `peer` was connecting to, from kernel state the agent cannot
  // forge; `fd` is the accepted socket. One of two, chosen by the wall: the bpf wall's
  // door_origin map (by `peer`), or conntrack (SO_ORIGINAL_DST on `fd`, the iptables wall's
  // REDIRECT: conntrack_original_destination). An error refuses the connection. Required with
  // door.
  std::function<Result<boost::asio::ip::tcp::endpoint>(int fd,
                                                       const boost::asio::ip::tcp::endpoint& peer)>
      door_origin;
  // With door: the client's socket still has its original destination as its remote end (nat
  // REDIRECT rewrites packets, not sockets), so its cgroup is looked up by that end, not by the
  // door listener's (client_cgroup).
  bool door_client_keeps_original = false;
  // With door: its clients live in network namespaces of their own (the node agent's pods), not
  // on this host. Their DNS queries are answered only from an address this accepts (the host
  // address and client_cgroup checks cannot see another namespace's sockets); a TCP client is
  // placed by door_origin alone (only the pod's own wall publishes there).
  std::function<bool(const boost::asio::ip::address&)> door_clients_at;
  // Set: the session's DNS on a docker network's gateway (GatewayDns), answered like the
  // door's (dns_may_resolve), to senders on that network only.
  std::shared_ptr<GatewayDns> gateway_dns;
};

// The transparent door's listeners (issue 16, docs/transparent.md): 127.0.0.1:0 and [::1]:0,
// registered as ACP's own endpoints and listening. Opened before the wall, whose connect hooks
// lead refused TCP connects to these ports; then handed to the ProxyServer (ProxyConfig::door).
struct DoorListeners {
  std::vector<boost::asio::ip::tcp::acceptor> acceptors;
  std::vector<OwnEndpoint> own;
  uint16_t port4 = 0;  // 127.0.0.1
  uint16_t port6 = 0;  // [::1]; 0 when the host has no IPv6 loopback
  // The session's DNS responder (dns_responder.hpp): UDP on the same addresses, where the wall
  // leads the agent's port-53 datagrams.
  std::vector<boost::asio::ip::udp::socket> dns;
  uint16_t dns_port4 = 0;
  uint16_t dns_port6 = 0;
  // Set by open_door_listeners_on: the addresses listened on instead of loopback.
  std::optional<boost::asio::ip::address_v4> addr4;
  std::optional<boost::asio::ip::address_v6> addr6;
};
// Ports 0: any free port (a new session); else exactly those (a daemon re-adopting a session
// whose wall leads connections and DNS to them).
Result<std::shared_ptr<DoorListeners>> open_door_listeners(boost::asio::io_context& io,
                                                           uint16_t port4 = 0, uint16_t port6 = 0,
                                                           uint16_t dns_port4 = 0,
                                                           uint16_t dns_port6 = 0);
// The same on a node address (one per family) instead of loopback: a door its clients reach
// from network namespaces of their own (the node agent's pods, a docker network). `port` 0:
// any free port for TCP; else exactly that one (EADDRINUSE when taken). The DNS socket beside
// it takes any free port.
Result<std::shared_ptr<DoorListeners>> open_door_listeners_on(
    boost::asio::io_context& io, const std::optional<boost::asio::ip::address_v4>& addr4,
    const std::optional<boost::asio::ip::address_v6>& addr6, uint16_t port = 0);

// The session's DNS responder where a docker container's DNS points (docs/backends.md, "Name
// resolution"): UDP and TCP on the network's gateway, port 53. Only senders in the network's
// subnet are answered, never the gateway itself (the host's own processes); no other source
// gets a byte back. Handed to the ProxyServer (ProxyConfig::gateway_dns), which closes it.
struct GatewayDns {
  static constexpr size_t kMaxTcpClients = 64;  // beyond: closed at accept
  std::vector<boost::asio::ip::udp::socket> sockets;
  std::vector<boost::asio::ip::tcp::acceptor> acceptors;
  boost::asio::ip::address_v4 gateway;
  boost::asio::ip::address_v4 subnet;  // the network address
  unsigned prefix = 32;
  size_t tcp_clients = 0;  // open now (the io thread's)
  bool may_ask(const boost::asio::ip::address& sender) const;
};
// `gateway` (an IPv4 address in `subnet`, "A.B.C.D/N"); port 0 in tests: any free port.
Result<std::shared_ptr<GatewayDns>> open_gateway_dns(boost::asio::io_context& io,
                                                     const std::string& gateway,
                                                     const std::string& subnet, uint16_t port = 53);

struct ProxyCounters {
  uint64_t connections = 0;   // accepted client connections (including refused with 503)
  uint64_t requests = 0;      // requests judged (HTTP requests and CONNECTs)
  uint64_t tunnels = 0;       // CONNECT tunnels established
  uint64_t allowed = 0;       // requests the judge allowed
  uint64_t denied = 0;        // requests refused by the judge or the destination check
  uint64_t errors = 0;        // malformed requests, limits, upstream failures
  uint64_t foreign = 0;       // connections refused because the client is not in client_cgroup
  uint64_t door = 0;          // connections the wall led to the transparent door
  uint64_t door_refused = 0;  // of those, refused before judging (no original, a local one)
  uint64_t dns_answered = 0;  // DNS queries of the agent answered with a synthetic address
  uint64_t dns_denied = 0;    // answered NXDOMAIN: names the policy denies everywhere
  uint64_t dns_names = 0;     // names holding a synthetic address now (a gauge)
  uint64_t open = 0;          // client connections open now (a gauge, not a count)
  uint64_t bytes_up = 0;      // bytes relayed from clients to origins, counted as each request
  uint64_t bytes_down = 0;    // or tunnel ends; and from origins to clients
};

// How long clients waited for their answer's status line (the origin's response header, a
// tunnel's 200, a refusal), from the request's head: plain HTTP requests (also those inside a
// tunnel) and CONNECTs (also the transparent door's connections).
struct ProxyLatency {
  util::HistogramSnapshot http;
  util::HistogramSnapshot connect;
};

class ProxyServer {
 public:
  // `judge` and `io` must outlive the server and every connection it started.
  ProxyServer(boost::asio::io_context& io, ProxyConfig cfg, RequestJudge& judge);
  ~ProxyServer();
  ProxyServer(const ProxyServer&) = delete;
  ProxyServer& operator=(const ProxyServer&) = delete;

  // Binds and listens on every endpoint, then accepts on the io_context. A port in use is
  // Error{err=EADDRINUSE} so the caller can try the next port; nothing stays bound on error.
  // Sets SIGPIPE to ignored for the process (tunnels splice(2) into sockets; see
  // tunnel_relay.hpp).
  Status start();
  // The bound endpoints (the real port when 0 was asked for).
  std::vector<boost::asio::ip::tcp::endpoint> local_endpoints() const;
  // Stops accepting and closes every connection and tunnel. Call on the io_context's thread
  // (or while it is not running).
  void stop();
  // Safe from any thread.
  ProxyCounters counters() const;
  ProxyLatency latency() const;
  // One JSON object per finished request (and per refused connection): see docs/proxy.md.
  void set_event_callback(std::function<void(const nlohmann::json&)> cb);
  // Refusals no judgement records (inspected TLS: SNI/Host mismatch, a bad upstream
  // certificate), as audit entries {"kind":"tls", ...}: the session writes them to the log.
  void set_audit_callback(std::function<void(nlohmann::json)> cb);

  struct State;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace acp::proxy
