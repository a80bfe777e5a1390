#include "acp/proxy/proxy_server.hpp"

#include <ifaddrs.h>
#include <malloc.h>
#include <netinet/in.h>

#include <array>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "acp/proxy/conntrack.hpp"
#include "acp/proxy/peer_identity.hpp"
#include "dns_over_tcp.hpp"
#include "proxy_connection.hpp"
#include "proxy_state.hpp"

namespace acp::proxy {

namespace net = boost::asio;
namespace beast = boost::beast;
using tcp = net::ip::tcp;
using udp = net::ip::udp;

namespace {

// Whether the kernel puts the client's socket of `socket` in the session's cgroup (or below):
// empty when it does, else why the connection is refused. Fail closed: a lookup that fails
// refuses.
// Empty when the cgroup with id `id` is the session's or below it, else why not.
std::string outside_session(const ProxyServer::State& state, uint64_t id) {
  if (id == state.client_cgroup_id) return {};
  auto within = cgroup_within(id, state.cfg.client_cgroup);
  if (!within) return "cannot list the session's cgroups: " + within.error().message();
  if (*within) return {};
  return "the client's socket is in cgroup " + std::to_string(id) + ", not in this session's " +
         state.cfg.client_cgroup;
}

// `door`: a connection the transparent door accepted.
std::string foreign_client(const ProxyServer::State& state, tcp::socket& socket,
                           nlohmann::json& audit, bool door) {
  boost::system::error_code ec1, ec2;
  const auto peer = socket.remote_endpoint(ec1);
  auto self = socket.local_endpoint(ec2);
  if (ec1 || ec2) return "the connection closed before its client could be identified";
  audit["client"] = endpoint_text(peer);
  audit["listener"] = endpoint_text(self);
  // A session whose clients live in another network namespace (a docker network): told by
  // their address, which only the session's network has.
  if (state.cfg.clients_at) {
    if (state.cfg.clients_at(unmapped(peer.address()))) return {};
    return "the client's address " + peer.address().to_string() +
           " is not on this session's network";
  }
  if (door && state.cfg.door_client_keeps_original) {
    // The client's socket is connected to where it was going, not to the door (nat REDIRECT).
    auto original = state.cfg.door_origin(socket.native_handle(), peer);
    if (!original)
      return "no original destination to find the client by: " + original.error().message();
    self = *original;
  }
  auto id = client_socket_cgroup(peer, self);
  if (!id) return "the kernel cannot say which cgroup the client is in: " + id.error().message();
  audit["client_cgroup_id"] = *id;
  return outside_session(state, *id);
}

// A listener bound, registered as one of ACP's own endpoints before it listens (so that no
// connection ever reaches it unregistered), and listening.
struct BoundListener {
  tcp::acceptor acceptor;
  OwnEndpoint own;
  tcp::endpoint bound;
};

Result<BoundListener> bind_listener(net::io_context& io, const tcp::endpoint& ep,
                                    const std::string& own_name) {
  boost::system::error_code ec;
  tcp::acceptor a(io);
  const std::string where =
      "listen on " + ep.address().to_string() + " port " + std::to_string(ep.port());
  if (a.open(ep.protocol(), ec); ec) return make_error(where, ec.value());
  a.set_option(tcp::acceptor::reuse_address(true), ec);
  if (ep.address().is_v6()) a.set_option(net::ip::v6_only(true), ec);
  if (a.bind(ep, ec); ec) return make_error(where, ec.value());
  auto reg = register_own_endpoint(a.native_handle(), own_name + " (" + endpoint_text(ep) + ")");
  if (!reg) return reg.error();
  if (a.listen(net::socket_base::max_listen_connections, ec); ec)
    return make_error(where, ec.value());
  auto bound = a.local_endpoint(ec);
  if (ec) return make_error(where, ec.value());
  return BoundListener{std::move(a), std::move(*reg), bound};
}

// Accepts on `acceptor` until the server stops; `door`: the transparent door's listener.
net::awaitable<void> accept_loop(std::shared_ptr<ProxyServer::State> state, tcp::acceptor& acceptor,
                                 bool door) {
  for (;;) {
    boost::system::error_code ec;
    tcp::socket socket =
        co_await acceptor.async_accept(net::redirect_error(net::use_awaitable, ec));
    if (state->stopped || ec == net::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec) {
      // EMFILE and friends: back off instead of spinning; the next accept may succeed.
      net::steady_timer t(state->io, std::chrono::milliseconds(50));
      co_await t.async_wait(net::redirect_error(net::use_awaitable, ec));
      continue;
    }
    state->n_connections.fetch_add(1, std::memory_order_relaxed);
    if (!state->cfg.client_cgroup.empty() || state->cfg.clients_at) {
      // Before a byte is read: a connection from outside the session is never parsed.
      nlohmann::json entry = {{"kind", "client"}, {"allowed", false}};
      if (auto why = foreign_client(*state, socket, entry, door); !why.empty()) {
        state->n_foreign.fetch_add(1, std::memory_order_relaxed);
        entry["reason"] = "refused: client not in this session (" + why + ")";
        state->audit(entry);
        net::co_spawn(state->io,
                      refuse_at_accept(state, std::move(socket), 403, "Blocked by ACP",
                                       entry["reason"].get<std::string>()),
                      net::detached);
        continue;
      }
    }
    if (state->connections.size() >= state->cfg.limits.max_connections) {
      state->n_errors.fetch_add(1, std::memory_order_relaxed);
      net::co_spawn(
          state->io,
          refuse_at_accept(state, std::move(socket), 503, "Too many connections",
                           "the proxy holds " + std::to_string(state->cfg.limits.max_connections) +
                               " connections (max_connections)"),
          net::detached);
    } else {
      net::co_spawn(state->io,
                    door ? serve_door_connection(state, std::move(socket))
                         : serve_connection(state, std::move(socket)),
                    net::detached);
    }
  }
}

// The door's listeners belong to the server only once it started (a server that failed to
// bind its port leaves them to the next try).
void stop_listening(ProxyServer::State& s) {
  s.stopped = true;
  boost::system::error_code ec;
  const bool started = !s.acceptors.empty();
  for (auto& a : s.acceptors) a.close(ec);
  if (s.cfg.door && started) {
    for (auto& a : s.cfg.door->acceptors) a.close(ec);
    for (auto& u : s.cfg.door->dns) u.close(ec);
    s.cfg.door->own.clear();
  }
  if (s.cfg.gateway_dns && started) {
    for (auto& u : s.cfg.gateway_dns->sockets) u.close(ec);
    for (auto& a : s.cfg.gateway_dns->acceptors) a.close(ec);
  }
  s.own.clear();
}

// Whether `a` is an address of one of this host's interfaces: a reply to it stays here.
bool is_host_address(const net::ip::address& a) {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return false;  // fail closed: no answer
  bool found = false;
  for (const ifaddrs* i = list; i != nullptr && !found; i = i->ifa_next) {
    if (i->ifa_addr == nullptr) continue;
    if (i->ifa_addr->sa_family == AF_INET && a.is_v4()) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
      found = ntohl(in->sin_addr.s_addr) == a.to_v4().to_uint();
    } else if (i->ifa_addr->sa_family == AF_INET6 && a.is_v6()) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(i->ifa_addr);
      found = std::memcmp(&in6->sin6_addr, a.to_v6().to_bytes().data(), 16) == 0;
    }
  }
  ::freeifaddrs(list);
  return found;
}

// The cgroup of the UDP socket at `from` that sent a query to the DNS at `self`. Behind the
// iptables wall the query was REDIRECTed: the sender's socket may be connected to the address
// it asked (glibc's is), so it is found by conntrack's original destination, not by `self`.
Result<uint64_t> dns_sender_cgroup(const ProxyServer::State& state, const tcp::endpoint& from,
                                   const tcp::endpoint& self) {
  if (!state.cfg.door_client_keeps_original) return udp_sender_cgroup(from, self);
  auto original = conntrack_udp_original_destination(self, from);
  if (!original) return original.error();
  return udp_sender_cgroup(from, *original);
}

// Whether a DNS datagram from `from` on `sock` is the session's to answer: on a docker
// gateway (gw), a sender on that network; else (the door's), one the wall led here.
bool dns_sender_is_the_session(ProxyServer::State& state, udp::socket& sock,
                               const udp::endpoint& from, const GatewayDns* gw) {
  if (gw) return gw->may_ask(from.address());
  // A pod's: from the pod's own address (its namespace's sockets are not this host's).
  if (state.cfg.door_clients_at) return state.cfg.door_clients_at(from.address());
  // The wall leads only the session's queries here, from an address of this host (loopback;
  // on iptables also the one routing chose for the address asked, nat keeps it). A reply to
  // any other source would leave the machine with bytes the sender chose (its question).
  if (!from.address().is_loopback() && !is_host_address(from.address())) return false;
  // Any local process can reach a loopback port: only the session's agent is answered (as
  // the TCP door serves only it), or others could fill its table and use up its rate.
  if (state.cfg.client_cgroup.empty()) return true;
  boost::system::error_code ec;
  const auto self = sock.local_endpoint(ec);
  if (ec) return false;
  auto id = dns_sender_cgroup(state, tcp::endpoint(from.address(), from.port()),
                              tcp::endpoint(self.address(), self.port()));
  return id && outside_session(state, *id).empty();
}

// The session's DNS over UDP (dns_responder.hpp): one datagram in, at most one out, on the
// io thread (the names are the door's too). `gw`: the socket is on a docker gateway.
net::awaitable<void> dns_loop(std::shared_ptr<ProxyServer::State> state, udp::socket& sock,
                              const GatewayDns* gw) {
  std::array<uint8_t, dns::kMaxQueryBytes + 1> buf;
  for (;;) {
    boost::system::error_code ec;
    udp::endpoint from;
    const size_t n = co_await sock.async_receive_from(net::buffer(buf), from,
                                                      net::redirect_error(net::use_awaitable, ec));
    if (state->stopped || ec == net::error::operation_aborted || !sock.is_open()) co_return;
    if (ec) continue;  // ECONNREFUSED from an earlier reply's ICMP and the like
    if (!dns_sender_is_the_session(*state, sock, from, gw)) {
      state->n_foreign.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    auto a = state->answer_dns(std::span<const uint8_t>(buf.data(), n));
    if (a.wire.empty()) continue;
    sock.send_to(net::buffer(a.wire), from, 0, ec);  // a full buffer drops it, as UDP would
  }
}

// One DNS-over-TCP client of the docker gateway's responder.
net::awaitable<void> gateway_dns_client(std::shared_ptr<ProxyServer::State> state,
                                        tcp::socket socket) {
  GatewayDns& gw = *state->cfg.gateway_dns;
  ++gw.tcp_clients;
  beast::tcp_stream client(std::move(socket));
  try {
    co_await answer_dns_over_tcp(*state, client);
  } catch (const std::exception&) {
    state->n_errors.fetch_add(1, std::memory_order_relaxed);
  }
  --gw.tcp_clients;
}

// The docker gateway's DNS over TCP: a sender off the session's network is closed unanswered.
net::awaitable<void> gateway_dns_accept_loop(std::shared_ptr<ProxyServer::State> state,
                                             tcp::acceptor& acceptor) {
  for (;;) {
    boost::system::error_code ec;
    tcp::socket socket = co_await acceptor.async_accept(redirect(ec));
    if (state->stopped || ec == net::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec) continue;
    const GatewayDns& gw = *state->cfg.gateway_dns;
    const auto peer = socket.remote_endpoint(ec);
    if (ec || !gw.may_ask(peer.address())) {
      state->n_foreign.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    if (gw.tcp_clients >= GatewayDns::kMaxTcpClients) continue;
    net::co_spawn(state->io, gateway_dns_client(state, std::move(socket)), net::detached);
  }
}

}  // namespace

namespace {
// One family's door listener and the DNS socket beside it, on `addr`.
Status open_door_on(net::io_context& io, DoorListeners& door, const net::ip::address& addr,
                    uint16_t port, uint16_t dns_port) {
  auto l = bind_listener(io, tcp::endpoint(addr, port), "transparent door");
  if (!l) return make_error("the transparent door: " + l.error().message(), l.error().err);
  const bool v6 = addr.is_v6();
  (v6 ? door.port6 : door.port4) = l->bound.port();
  door.acceptors.push_back(std::move(l->acceptor));
  door.own.push_back(std::move(l->own));
  boost::system::error_code ec;
  udp::socket u(io);
  const udp::endpoint ep(addr, dns_port);
  u.open(ep.protocol(), ec);
  if (!ec && v6) u.set_option(net::ip::v6_only(true), ec);
  if (!ec) u.bind(ep, ec);
  if (ec)
    return make_error("the transparent door's DNS on " + addr.to_string() + ": " + ec.message(),
                      ec.value());
  (v6 ? door.dns_port6 : door.dns_port4) = u.local_endpoint().port();
  door.dns.push_back(std::move(u));
  return {};
}
}  // namespace

Result<std::shared_ptr<DoorListeners>> open_door_listeners(net::io_context& io, uint16_t port4,
                                                           uint16_t port6, uint16_t dns_port4,
                                                           uint16_t dns_port6) {
  auto door = std::make_shared<DoorListeners>();
  if (auto st = open_door_on(io, *door, net::ip::make_address("127.0.0.1"), port4, dns_port4); !st)
    return st.error();
  auto st = open_door_on(io, *door, net::ip::make_address("::1"), port6, dns_port6);
  // A host without IPv6 loopback: IPv6 connects stay refused (port6 0).
  if (!st && st.error().err != EADDRNOTAVAIL && st.error().err != EAFNOSUPPORT) return st.error();
  return door;
}

Result<std::shared_ptr<DoorListeners>> open_door_listeners_on(
    net::io_context& io, const std::optional<net::ip::address_v4>& addr4,
    const std::optional<net::ip::address_v6>& addr6, uint16_t port) {
  if (!addr4 && !addr6) return make_error("the transparent door needs an address", EINVAL);
  auto door = std::make_shared<DoorListeners>();
  if (addr4) {
    if (auto st = open_door_on(io, *door, *addr4, port, 0); !st) return st.error();
    door->addr4 = *addr4;
  }
  if (addr6) {
    if (auto st = open_door_on(io, *door, *addr6, port, 0); !st) return st.error();
    door->addr6 = *addr6;
  }
  return door;
}

namespace {
uint32_t prefix_mask(unsigned prefix) {
  return prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix);
}
}  // namespace

bool GatewayDns::may_ask(const net::ip::address& a) const {
  if (!a.is_v4() || a.to_v4() == gateway) return false;
  return (a.to_v4().to_uint() & prefix_mask(prefix)) == subnet.to_uint();
}

Result<std::shared_ptr<GatewayDns>> open_gateway_dns(net::io_context& io,
                                                     const std::string& gateway,
                                                     const std::string& subnet, uint16_t port) {
  auto dns = std::make_shared<GatewayDns>();
  boost::system::error_code ec;
  dns->gateway = net::ip::make_address_v4(gateway, ec);
  if (ec)
    return make_error("the session's DNS: gateway \"" + gateway + "\" is not an IPv4 address");
  const auto slash = subnet.find('/');
  if (slash != std::string::npos) {
    dns->subnet = net::ip::make_address_v4(subnet.substr(0, slash), ec);
    dns->prefix = static_cast<unsigned>(std::atoi(subnet.c_str() + slash + 1));
  }
  const uint32_t mask = prefix_mask(dns->prefix);
  if (slash == std::string::npos || ec || dns->prefix < 8 || dns->prefix > 30 ||
      (dns->subnet.to_uint() & ~mask) != 0 ||
      (dns->gateway.to_uint() & mask) != dns->subnet.to_uint())
    return make_error("the session's DNS: \"" + subnet +
                      "\" is not an IPv4 network (A.B.C.D/8..30) that holds the gateway " +
                      gateway);
  udp::socket u(io);
  const udp::endpoint ep(dns->gateway, port);
  u.open(ep.protocol(), ec);
  // Beside a resolver bound to 0.0.0.0:53 that allows it (dnsmasq, for example).
  if (!ec) u.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) u.bind(ep, ec);
  if (ec)
    return make_error("the session's DNS on " + gateway + ":" + std::to_string(port) + ": " +
                          ec.message() + " (is another DNS server bound to every address?)",
                      ec.value());
  // TCP beside it, on the port UDP got (53, or a free one in tests).
  const tcp::endpoint tep(dns->gateway, u.local_endpoint().port());
  tcp::acceptor t(io);
  t.open(tep.protocol(), ec);
  if (!ec) t.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) t.bind(tep, ec);
  if (!ec) t.listen(net::socket_base::max_listen_connections, ec);
  if (ec)
    return make_error("the session's DNS on " + gateway + ":" + std::to_string(tep.port()) +
                          " (TCP): " + ec.message() +
                          " (is another DNS server bound to every address?)",
                      ec.value());
  dns->sockets.push_back(std::move(u));
  dns->acceptors.push_back(std::move(t));
  return dns;
}

ProxyServer::ProxyServer(net::io_context& io, ProxyConfig cfg, RequestJudge& judge)
    : state_(std::make_shared<State>(io, std::move(cfg), judge)) {}

ProxyServer::~ProxyServer() {
  stop_listening(*state_);
}

Status ProxyServer::start() {
  // A proxy writes into sockets whose peers may be gone: that must be EPIPE, not a SIGPIPE that
  // ends the process (and with it the agent's only door). Asio's sends pass MSG_NOSIGNAL, but
  // tunnels splice(2) into sockets, which cannot.
  ::signal(SIGPIPE, SIG_IGN);
  auto& s = *state_;
  if (!s.acceptors.empty()) return make_error("proxy already started");
  if (s.cfg.listen.empty() && !s.cfg.door) return make_error("proxy has no listen endpoint");
  if (!s.cfg.client_cgroup.empty()) {
    auto id = cgroup_id_of(s.cfg.client_cgroup);
    if (!id) return make_error("the session's cgroup: " + id.error().message(), id.error().err);
    s.client_cgroup_id = *id;
  }
  const std::string own_name = s.cfg.own_name.empty() ? "consent proxy" : s.cfg.own_name;
  std::vector<tcp::acceptor> acceptors;
  std::vector<OwnEndpoint> own;
  std::vector<tcp::endpoint> bound;
  for (const auto& ep : s.cfg.listen) {
    auto l = bind_listener(s.io, ep, own_name);
    if (!l) return l.error();
    acceptors.push_back(std::move(l->acceptor));
    own.push_back(std::move(l->own));
    bound.push_back(l->bound);
  }
  if (s.cfg.door && !s.cfg.door_origin)
    return make_error("the transparent door needs the wall's original destinations", EINVAL);
  s.acceptors = std::move(acceptors);
  s.bound = std::move(bound);
  s.own = std::move(own);
  s.stopped = false;
  for (auto& a : s.acceptors) net::co_spawn(s.io, accept_loop(state_, a, false), net::detached);
  if (s.cfg.door) {
    for (auto& a : s.cfg.door->acceptors)
      net::co_spawn(s.io, accept_loop(state_, a, true), net::detached);
    for (auto& u : s.cfg.door->dns)
      net::co_spawn(s.io, dns_loop(state_, u, nullptr), net::detached);
  }
  if (s.cfg.gateway_dns) {
    for (auto& u : s.cfg.gateway_dns->sockets)
      net::co_spawn(s.io, dns_loop(state_, u, s.cfg.gateway_dns.get()), net::detached);
    for (auto& a : s.cfg.gateway_dns->acceptors)
      net::co_spawn(s.io, gateway_dns_accept_loop(state_, a), net::detached);
  }
  return {};
}

std::vector<tcp::endpoint> ProxyServer::local_endpoints() const {
  return state_->bound;
}

void ProxyServer::stop() {
  auto& s = *state_;
  stop_listening(s);
  // close() removes nothing from the set itself; copy since a closed connection may finish
  // synchronously in some paths.
  auto live = std::vector<Closable*>(s.connections.begin(), s.connections.end());
  for (auto* c : live) c->close();
}

void ProxyServer::State::opened(Closable* c) {
  connections.insert(c);
  n_open.fetch_add(1, std::memory_order_relaxed);
  peak_since_trim = std::max(peak_since_trim, connections.size());
}

void ProxyServer::State::gone(Closable* c) {
  connections.erase(c);
  n_open.fetch_sub(1, std::memory_order_relaxed);
  // glibc keeps freed heap pages for reuse: after 10k tunnels the proxy stayed at its peak RSS
  // (bench/proxy_soak_bench). When a burst has drained, hand them back to the kernel, once per
  // burst, so an idle proxy is small again; a steady trickle of connections never pays for it.
  if (connections.empty() && peak_since_trim >= kTrimAfterBurst) {
    peak_since_trim = 0;
    ::malloc_trim(0);
  }
}

dns::Answer ProxyServer::State::answer_dns(std::span<const uint8_t> query) {
  const auto now = std::chrono::steady_clock::now();
  if (now - dns_window >= std::chrono::seconds(1)) {
    dns_window = now;
    dns_in_window = 0;
  }
  if (++dns_in_window > kDnsPerSecond) return {};
  const auto& may = cfg.dns_may_resolve;
  auto a = dns::answer(
      query, [&may](const std::string& name) { return may && may(name); }, names);
  if (a.outcome == dns::Outcome::kAnswered) n_dns_answered.fetch_add(1);
  if (a.outcome == dns::Outcome::kDenied) n_dns_denied.fetch_add(1);
  n_dns_names.store(names.size(), std::memory_order_relaxed);
  if (on_event && !a.name.empty())  // no JSON built per query when nobody listens
    emit({{"kind", "dns"},
          {"name", a.name},
          {"qtype", a.qtype},
          {"outcome", dns::to_string(a.outcome)}});
  return a;
}

ProxyCounters ProxyServer::counters() const {
  const auto& s = *state_;
  auto r = std::memory_order_relaxed;
  return ProxyCounters{.connections = s.n_connections.load(r),
                       .requests = s.n_requests.load(r),
                       .tunnels = s.n_tunnels.load(r),
                       .allowed = s.n_allowed.load(r),
                       .denied = s.n_denied.load(r),
                       .errors = s.n_errors.load(r),
                       .foreign = s.n_foreign.load(r),
                       .door = s.n_door.load(r),
                       .door_refused = s.n_door_refused.load(r),
                       .dns_answered = s.n_dns_answered.load(r),
                       .dns_denied = s.n_dns_denied.load(r),
                       .dns_names = s.n_dns_names.load(r),
                       .open = s.n_open.load(r),
                       .bytes_up = s.n_bytes_up.load(r),
                       .bytes_down = s.n_bytes_down.load(r)};
}

ProxyLatency ProxyServer::latency() const {
  return {state_->http_latency.snapshot(), state_->connect_latency.snapshot()};
}

void ProxyServer::State::finish(RequestEvent& event) {
  if (event.handed_off()) return;  // its new owner finishes it
  auto& j = event.json();
  const auto r = std::memory_order_relaxed;
  if (auto up = j.find("bytes_up"); up != j.end() && up->is_number_unsigned())
    n_bytes_up.fetch_add(up->get<uint64_t>(), r);
  if (auto down = j.find("bytes_down"); down != j.end() && down->is_number_unsigned())
    n_bytes_down.fetch_add(down->get<uint64_t>(), r);
  if (auto t = event.time_to_answer())
    (event.tunnel() ? connect_latency : http_latency).observe(*t);
  j["ms"] =
      std::chrono::duration<double, std::milli>(RequestEvent::Clock::now() - event.start()).count();
  emit(j);
}

void ProxyServer::set_event_callback(std::function<void(const nlohmann::json&)> cb) {
  state_->on_event = std::move(cb);
}

void ProxyServer::set_audit_callback(std::function<void(nlohmann::json)> cb) {
  state_->on_audit = std::move(cb);
}

}  // namespace acp::proxy
