// The conntrack lookup of the iptables transparent door's DNS (acp/proxy/conntrack.hpp): the
// request it sends and how it reads the kernel's answer, byte by byte. The real kernel answers
// it in vmtests/iptables_door_test.cpp.
#include "acp/proxy/conntrack.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>

#include <cstring>
#include <vector>

namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;

// A netlink message builder for replies as the kernel writes them.
struct Msg {
  std::vector<uint8_t> b;
  void attr(uint16_t type, const void* data, size_t len) {
    const nlattr a{static_cast<uint16_t>(NLA_HDRLEN + len), type};
    const size_t at = b.size();
    b.resize(at + NLA_ALIGN(NLA_HDRLEN + len));
    std::memcpy(b.data() + at, &a, sizeof a);
    if (len) std::memcpy(b.data() + at + NLA_HDRLEN, data, len);
  }
  size_t nest(uint16_t type) {
    const size_t at = b.size();
    attr(type | NLA_F_NESTED, nullptr, 0);
    return at;
  }
  void end(size_t at) {
    const auto len = static_cast<uint16_t>(b.size() - at);
    std::memcpy(b.data() + at, &len, sizeof len);
  }
  void header(uint16_t type, uint32_t seq) {
    nlmsghdr h{};
    h.nlmsg_len = static_cast<uint32_t>(b.size());
    h.nlmsg_type = type;
    h.nlmsg_seq = seq;
    std::memcpy(b.data(), &h, sizeof h);
  }
};

// The kernel's IPCTNL_MSG_CT_NEW answer: the original tuple 10.0.0.2:5000 -> `dst`:53 (IPv4).
std::vector<uint8_t> reply(uint32_t seq, const char* dst, uint16_t dport) {
  Msg m;
  m.b.resize(NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(nfgenmsg)));
  const size_t orig = m.nest(CTA_TUPLE_ORIG);
  const size_t ip = m.nest(CTA_TUPLE_IP);
  in_addr src{}, d{};
  inet_pton(AF_INET, "10.0.0.2", &src);
  inet_pton(AF_INET, dst, &d);
  m.attr(CTA_IP_V4_SRC, &src, 4);
  m.attr(CTA_IP_V4_DST, &d, 4);
  m.end(ip);
  const size_t proto = m.nest(CTA_TUPLE_PROTO);
  const uint8_t udp = IPPROTO_UDP;
  const uint16_t sp = htons(5000), dp = htons(dport);
  m.attr(CTA_PROTO_NUM, &udp, 1);
  m.attr(CTA_PROTO_SRC_PORT, &sp, 2);
  m.attr(CTA_PROTO_DST_PORT, &dp, 2);
  m.end(proto);
  m.end(orig);
  m.header((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW, seq);
  return m.b;
}

TEST(ConntrackRequest, AsksByTheReplyTupleFromTheResponderToTheSender) {
  auto msg = acp::proxy::conntrack_udp_request(
      tcp::endpoint(net::ip::make_address("127.0.0.1"), 40002),
      tcp::endpoint(net::ip::make_address("::ffff:10.0.0.2"), 5000), 7);
  ASSERT_TRUE(msg.ok()) << msg.error().message();
  nlmsghdr h;
  std::memcpy(&h, msg->data(), sizeof h);
  EXPECT_EQ(h.nlmsg_len, msg->size());
  EXPECT_EQ(h.nlmsg_type, (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET);
  EXPECT_EQ(h.nlmsg_flags, NLM_F_REQUEST);
  EXPECT_EQ(h.nlmsg_seq, 7u);
  nfgenmsg g;
  std::memcpy(&g, msg->data() + NLMSG_HDRLEN, sizeof g);
  EXPECT_EQ(g.nfgen_family, AF_INET);  // the mapped sender asked as IPv4
  // CTA_TUPLE_REPLY { CTA_TUPLE_IP { src 127.0.0.1, dst 10.0.0.2 }, CTA_TUPLE_PROTO {...} }
  const uint8_t* a = msg->data() + NLMSG_HDRLEN + NLMSG_ALIGN(sizeof g);
  nlattr top;
  std::memcpy(&top, a, sizeof top);
  EXPECT_EQ(top.nla_type, CTA_TUPLE_REPLY | NLA_F_NESTED);
  EXPECT_EQ(NLMSG_HDRLEN + NLMSG_ALIGN(sizeof g) + top.nla_len, msg->size());
  const uint8_t want_src[] = {127, 0, 0, 1}, want_dst[] = {10, 0, 0, 2};
  // The IP nest's first two attributes, each 4 bytes after its header.
  EXPECT_EQ(std::memcmp(a + 2 * NLA_HDRLEN + NLA_HDRLEN, want_src, 4), 0);
  EXPECT_EQ(std::memcmp(a + 2 * NLA_HDRLEN + 2 * NLA_HDRLEN + 4, want_dst, 4), 0);
  EXPECT_FALSE(
      acp::proxy::conntrack_udp_request(tcp::endpoint(net::ip::make_address("::1"), 1),
                                        tcp::endpoint(net::ip::make_address("10.0.0.2"), 2), 1)
          .ok());
}

TEST(ConntrackReply, TheOriginalDestinationIsRead) {
  auto r = reply(3, "192.0.2.53", 53);
  auto dst = acp::proxy::parse_conntrack_reply(r, 3);
  ASSERT_TRUE(dst.ok()) << dst.error().message();
  EXPECT_EQ(*dst, tcp::endpoint(net::ip::make_address("192.0.2.53"), 53));
}

TEST(ConntrackReply, KernelErrorKeepsItsErrnoAndMalformedRepliesAreRefused) {
  Msg e;
  e.b.resize(NLMSG_HDRLEN + sizeof(nlmsgerr));
  nlmsgerr err{};
  err.error = -ENOENT;
  std::memcpy(e.b.data() + NLMSG_HDRLEN, &err, sizeof err);
  e.header(NLMSG_ERROR, 3);
  auto none = acp::proxy::parse_conntrack_reply(e.b, 3);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().err, ENOENT);

  auto r = reply(3, "192.0.2.53", 53);
  EXPECT_FALSE(acp::proxy::parse_conntrack_reply(r, 4).ok());  // another request's answer
  for (size_t cut = 0; cut < r.size(); ++cut) {
    std::vector<uint8_t> part(r.begin(), r.begin() + static_cast<std::ptrdiff_t>(cut));
    auto p = acp::proxy::parse_conntrack_reply(part, 3);
    EXPECT_FALSE(p.ok()) << "cut at " << cut;
  }
  // A reply whose tuple has no destination port names no destination.
  Msg m;
  m.b.resize(NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(nfgenmsg)));
  const size_t orig = m.nest(CTA_TUPLE_ORIG);
  m.end(orig);
  m.header((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW, 3);
  EXPECT_FALSE(acp::proxy::parse_conntrack_reply(m.b, 3).ok());
}

}  // namespace
