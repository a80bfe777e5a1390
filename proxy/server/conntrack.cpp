#include "acp/proxy/conntrack.hpp"

#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <optional>
#include <span>
#include <vector>

#include "acp/proxy/peer_identity.hpp"

namespace acp::proxy {

namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

// SO_ORIGINAL_DST (linux/netfilter_ipv4.h) and IP6T_SO_ORIGINAL_DST
// (linux/netfilter_ipv6/ip6_tables.h): those headers' linux/if.h clashes with glibc's net/if.h,
// which Asio includes.
constexpr int kSoOriginalDst = 80;
constexpr int kIp6tSoOriginalDst = 80;
constexpr size_t kReplyBytes = 4096;
constexpr uint32_t kSeq = 1;

net::ip::address unmap(const net::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    return net::ip::make_address_v4(net::ip::v4_mapped, a.to_v6());
  return a;
}

void put_attr(std::vector<uint8_t>& b, uint16_t type, const void* data, size_t len) {
  const nlattr a{static_cast<uint16_t>(NLA_HDRLEN + len), type};
  const size_t at = b.size();
  b.resize(at + NLA_ALIGN(NLA_HDRLEN + len));
  std::memcpy(b.data() + at, &a, sizeof a);
  if (len > 0) std::memcpy(b.data() + at + NLA_HDRLEN, data, len);  // a nest's header: no data
}

// A nested attribute: its header now, its length once its content is in (end_nest).
size_t begin_nest(std::vector<uint8_t>& b, uint16_t type) {
  const size_t at = b.size();
  put_attr(b, type | NLA_F_NESTED, nullptr, 0);
  return at;
}

void end_nest(std::vector<uint8_t>& b, size_t at) {
  const auto len = static_cast<uint16_t>(b.size() - at);
  std::memcpy(b.data() + at, &len, sizeof len);
}

// CTA_TUPLE_IP and CTA_TUPLE_PROTO of a UDP tuple from `src` to `dst`.
void put_udp_tuple(std::vector<uint8_t>& b, uint16_t type, const net::ip::address& src,
                   uint16_t sport, const net::ip::address& dst, uint16_t dport) {
  const size_t tuple = begin_nest(b, type);
  const size_t ip = begin_nest(b, CTA_TUPLE_IP);
  if (src.is_v4()) {
    put_attr(b, CTA_IP_V4_SRC, src.to_v4().to_bytes().data(), 4);
    put_attr(b, CTA_IP_V4_DST, dst.to_v4().to_bytes().data(), 4);
  } else {
    put_attr(b, CTA_IP_V6_SRC, src.to_v6().to_bytes().data(), 16);
    put_attr(b, CTA_IP_V6_DST, dst.to_v6().to_bytes().data(), 16);
  }
  end_nest(b, ip);
  const size_t proto = begin_nest(b, CTA_TUPLE_PROTO);
  const uint8_t udp = IPPROTO_UDP;
  const uint16_t s = htons(sport), d = htons(dport);
  put_attr(b, CTA_PROTO_NUM, &udp, 1);
  put_attr(b, CTA_PROTO_SRC_PORT, &s, 2);
  put_attr(b, CTA_PROTO_DST_PORT, &d, 2);
  end_nest(b, proto);
  end_nest(b, tuple);
}

// The payload of attribute `type` among `attrs`; nullopt when absent or malformed.
std::optional<std::span<const uint8_t>> find_attr(std::span<const uint8_t> attrs, uint16_t type) {
  size_t off = 0;
  while (off + NLA_HDRLEN <= attrs.size()) {
    nlattr a;
    std::memcpy(&a, attrs.data() + off, sizeof a);
    if (a.nla_len < NLA_HDRLEN || off + a.nla_len > attrs.size()) return std::nullopt;
    if ((a.nla_type & NLA_TYPE_MASK) == type)
      return attrs.subspan(off + NLA_HDRLEN, a.nla_len - NLA_HDRLEN);
    off += NLA_ALIGN(a.nla_len);
  }
  return std::nullopt;
}

// The destination of CTA_TUPLE_ORIG in a conntrack message's attributes.
Result<tcp::endpoint> original_destination_in(std::span<const uint8_t> attrs) {
  auto orig = find_attr(attrs, CTA_TUPLE_ORIG);
  auto ip = orig ? find_attr(*orig, CTA_TUPLE_IP) : std::nullopt;
  auto proto = orig ? find_attr(*orig, CTA_TUPLE_PROTO) : std::nullopt;
  auto port = proto ? find_attr(*proto, CTA_PROTO_DST_PORT) : std::nullopt;
  if (!ip || !port || port->size() != 2)
    return make_error("conntrack reply without an original destination", EPROTO);
  uint16_t p;
  std::memcpy(&p, port->data(), 2);
  if (auto v4 = find_attr(*ip, CTA_IP_V4_DST); v4 && v4->size() == 4) {
    net::ip::address_v4::bytes_type a;
    std::memcpy(a.data(), v4->data(), 4);
    return tcp::endpoint(net::ip::address_v4(a), ntohs(p));
  }
  if (auto v6 = find_attr(*ip, CTA_IP_V6_DST); v6 && v6->size() == 16) {
    net::ip::address_v6::bytes_type a;
    std::memcpy(a.data(), v6->data(), 16);
    return tcp::endpoint(net::ip::address_v6(a), ntohs(p));
  }
  return make_error("conntrack reply without an original address", EPROTO);
}

}  // namespace

Result<tcp::endpoint> conntrack_original_destination(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0)
    return errno_error("getsockname of the door's connection");
  len = sizeof ss;
  const bool v6 = ss.ss_family == AF_INET6;
  if (::getsockopt(fd, v6 ? SOL_IPV6 : SOL_IP, v6 ? kIp6tSoOriginalDst : kSoOriginalDst, &ss,
                   &len) != 0)
    return errno_error(std::string(v6 ? "IP6T_SO_ORIGINAL_DST" : "SO_ORIGINAL_DST") +
                       " (conntrack holds no original destination for this connection)");
  if (v6) {
    sockaddr_in6 a;
    std::memcpy(&a, &ss, sizeof a);
    net::ip::address_v6::bytes_type b;
    std::memcpy(b.data(), &a.sin6_addr, b.size());
    return tcp::endpoint(net::ip::address_v6(b), ntohs(a.sin6_port));
  }
  sockaddr_in a;
  std::memcpy(&a, &ss, sizeof a);
  return tcp::endpoint(net::ip::address_v4(ntohl(a.sin_addr.s_addr)), ntohs(a.sin_port));
}

Result<std::vector<uint8_t>> conntrack_udp_request(const tcp::endpoint& self,
                                                   const tcp::endpoint& from, uint32_t seq) {
  const auto s = unmap(self.address()), f = unmap(from.address());
  if (s.is_v4() != f.is_v4()) return make_error("conntrack: mixed address families", EINVAL);
  std::vector<uint8_t> msg(NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(nfgenmsg)));
  const nfgenmsg g{static_cast<uint8_t>(s.is_v4() ? AF_INET : AF_INET6), NFNETLINK_V0, 0};
  std::memcpy(msg.data() + NLMSG_HDRLEN, &g, sizeof g);
  put_udp_tuple(msg, CTA_TUPLE_REPLY, s, self.port(), f, from.port());
  nlmsghdr h{};
  h.nlmsg_len = static_cast<uint32_t>(msg.size());
  h.nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
  h.nlmsg_flags = NLM_F_REQUEST;
  h.nlmsg_seq = seq;
  std::memcpy(msg.data(), &h, sizeof h);
  return msg;
}

Result<tcp::endpoint> parse_conntrack_reply(std::span<const uint8_t> reply, uint32_t seq) {
  if (reply.size() < sizeof(nlmsghdr)) return make_error("conntrack reply: short", EPROTO);
  nlmsghdr h;
  std::memcpy(&h, reply.data(), sizeof h);
  if (h.nlmsg_len < NLMSG_HDRLEN || h.nlmsg_len > reply.size() || h.nlmsg_seq != seq)
    return make_error("conntrack reply: malformed", EPROTO);
  auto body = reply.subspan(NLMSG_HDRLEN, h.nlmsg_len - NLMSG_HDRLEN);
  if (h.nlmsg_type == NLMSG_ERROR) {
    nlmsgerr e;
    if (body.size() < sizeof e) return make_error("conntrack reply: short error", EPROTO);
    std::memcpy(&e, body.data(), sizeof e);
    return make_error("conntrack holds no entry for this datagram",
                      e.error < 0 ? -e.error : EPROTO);
  }
  if (body.size() < NLMSG_ALIGN(sizeof(nfgenmsg)))
    return make_error("conntrack reply: short message", EPROTO);
  return original_destination_in(body.subspan(NLMSG_ALIGN(sizeof(nfgenmsg))));
}

Result<tcp::endpoint> conntrack_udp_original_destination(const tcp::endpoint& self,
                                                         const tcp::endpoint& from) {
  auto msg = conntrack_udp_request(self, from, kSeq);
  if (!msg) return msg.error();
  auto reply = netlink_exchange(NETLINK_NETFILTER, *msg, kReplyBytes,
                                "conntrack for " + endpoint_text(from));
  if (!reply) return reply.error();
  return parse_conntrack_reply(*reply, kSeq);
}

}  // namespace acp::proxy
