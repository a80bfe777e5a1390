// Where a connection or datagram was going before netfilter's nat led it to the proxy: the
// iptables wall's transparent door REDIRECTs the agent's TCP to the door and its UDP port 53 to
// the door's DNS (docs/transparent.md, "The iptables backend"). Packets are rewritten, sockets
// are not: the agent's socket keeps its original destination, and conntrack knows it. Kernel
// state the agent cannot forge, like the bpf wall's door_origin map.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include <boost/asio/ip/tcp.hpp>

#include "acp/util/result.hpp"

namespace acp::proxy {

// The original destination of the client of the accepted TCP socket `fd`: SO_ORIGINAL_DST
// (IPv4) or IP6T_SO_ORIGINAL_DST (IPv6). A connection that was not NATed gives the socket's own
// local end; one conntrack does not hold: ENOENT.
Result<boost::asio::ip::tcp::endpoint> conntrack_original_destination(int fd);

// The original destination of the UDP datagram from `from` that reached the socket at `self`:
// conntrack's entry whose reply goes from `self` to `from` (NETLINK_NETFILTER, IPCTNL_MSG_CT_GET
// by the reply tuple). Not NATed: `self`; no entry: ENOENT.
Result<boost::asio::ip::tcp::endpoint> conntrack_udp_original_destination(
    const boost::asio::ip::tcp::endpoint& self, const boost::asio::ip::tcp::endpoint& from);

// The two halves of that lookup, for tests: the IPCTNL_MSG_CT_GET request (nlmsghdr, nfgenmsg,
// CTA_TUPLE_REPLY of a UDP tuple from `self` to `from`) and the destination of CTA_TUPLE_ORIG
// in its reply; the kernel's own error comes back with its errno (ENOENT: no entry), anything
// malformed as EPROTO.
Result<std::vector<uint8_t>> conntrack_udp_request(const boost::asio::ip::tcp::endpoint& self,
                                                   const boost::asio::ip::tcp::endpoint& from,
                                                   uint32_t seq);
Result<boost::asio::ip::tcp::endpoint> parse_conntrack_reply(std::span<const uint8_t> reply,
                                                             uint32_t seq);

}  // namespace acp::proxy
