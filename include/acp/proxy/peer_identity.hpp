// Who is at the other end of a TCP connection, from kernel state the client cannot forge:
// NETLINK_SOCK_DIAG (inet_diag) looks up a socket by its 4-tuple and answers with the cgroup
// v2 id its creator was in (INET_DIAG_CGROUP_ID, kernel >= 5.9) and its inode. The proxy uses
// it to serve only its own session's agent (docs/architecture.md, "Who is talking to the
// proxy") and to find out which listening socket an upstream connect would reach.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <boost/asio/ip/tcp.hpp>

#include "acp/util/result.hpp"

namespace acp::proxy {

// What inet_diag says about one socket.
struct SockDiagInfo {
  uint8_t state = 0;                  // TCP_ESTABLISHED, TCP_LISTEN, ...
  uint32_t inode = 0;                 // 0 for sockets without one (time-wait, request)
  std::optional<uint64_t> cgroup_id;  // absent: the kernel sent no INET_DIAG_CGROUP_ID
};

// One netlink request to the kernel (`protocol`: NETLINK_SOCK_DIAG, NETLINK_NETFILTER) and its
// one reply (at most `reply_bytes`, within 2 s); `what` names the lookup in errors.
Result<std::vector<uint8_t>> netlink_exchange(int protocol, std::span<const uint8_t> request,
                                              size_t reply_bytes, const std::string& what);

// The netlink request (nlmsghdr + inet_diag_req_v2, no dump) for the TCP socket whose local
// end is `local` and whose remote end is `remote`. A remote of address 0 port 0 finds the
// listener that a connection to `local` would reach. IPv4-mapped addresses are asked as IPv4.
// `protocol` IPPROTO_UDP: the UDP table, whose lookup takes the two ends the other way round
// (the kernel's udp_dump_one: a datagram from `local` to `remote` finds the socket at `remote`).
std::vector<uint8_t> sock_diag_request(const boost::asio::ip::tcp::endpoint& local,
                                       const boost::asio::ip::tcp::endpoint& remote, uint32_t seq,
                                       int protocol = 6 /* IPPROTO_TCP */);
// The socket in a reply to request `seq`. The kernel's own error (NLMSG_ERROR) comes back with
// its errno (ENOENT: no such socket); anything malformed is an error without one.
Result<SockDiagInfo> parse_sock_diag_reply(std::span<const uint8_t> reply, uint32_t seq);
// Both, over a fresh NETLINK_SOCK_DIAG socket.
Result<SockDiagInfo> sock_diag_lookup(const boost::asio::ip::tcp::endpoint& local,
                                      const boost::asio::ip::tcp::endpoint& remote,
                                      int protocol = 6 /* IPPROTO_TCP */);

// "127.0.0.1:8443", "[::1]:8443": how refusals and audit entries name an endpoint.
std::string endpoint_text(const boost::asio::ip::tcp::endpoint& ep);

// The cgroup v2 id of the client's socket of an accepted connection (`peer` is its remote
// endpoint, `self` its local one). Errors when the socket is gone or carries no cgroup id.
Result<uint64_t> client_socket_cgroup(const boost::asio::ip::tcp::endpoint& peer,
                                      const boost::asio::ip::tcp::endpoint& self);
// The same for the UDP socket at `peer` that sent a datagram to `self` (the session's DNS).
Result<uint64_t> udp_sender_cgroup(const boost::asio::ip::tcp::endpoint& peer,
                                   const boost::asio::ip::tcp::endpoint& self);

// The inode of the listening socket a TCP connect() to `dest` from this network namespace
// would reach; nullopt when none listens there. 0.0.0.0 and :: are asked as the loopback
// address they connect to.
Result<std::optional<uint32_t>> listener_inode(const boost::asio::ip::tcp::endpoint& dest);

// Whether the cgroup with id `id` is the cgroup v2 directory `dir` or one below it (a cgroup's
// id is its directory's inode number).
Result<bool> cgroup_within(uint64_t id, const std::string& dir);
// The id of the cgroup v2 directory `dir`.
Result<uint64_t> cgroup_id_of(const std::string& dir);

}  // namespace acp::proxy
