// The BPF decisions (bpf/acp_decide.h) compiled for the host: every branch the kernel takes.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <cstring>
#include <set>

#include "acp_decide.h"

namespace {

acp_endpoint key4(const char* ip, uint16_t port, uint8_t proto) {
  in_addr a{};
  EXPECT_EQ(inet_pton(AF_INET, ip, &a), 1);
  acp_endpoint k;
  std::memset(&k, 0xaa, sizeof(k));  // garbage: every byte must be written
  acp_key_from_ip4(&k, a.s_addr, port, proto);
  return k;
}

acp_endpoint key6(const char* ip, uint16_t port, uint8_t proto) {
  in6_addr a{};
  EXPECT_EQ(inet_pton(AF_INET6, ip, &a), 1);
  __u32 words[4];
  std::memcpy(words, &a, sizeof(words));  // as bpf_sock_addr.user_ip6: network byte order
  acp_endpoint k;
  std::memset(&k, 0x55, sizeof(k));
  acp_key_from_ip6(&k, words, port, proto);
  return k;
}

bool same(const acp_endpoint& a, const acp_endpoint& b) {
  return std::memcmp(&a, &b, sizeof(a)) == 0;  // the kernel hashes the key as bytes
}

TEST(KernelDecide, Ip4KeyIsTheMappedIp6Key) {
  acp_endpoint k4 = key4("127.0.0.1", 8443, ACP_PROTO_TCP);
  acp_endpoint k6 = key6("::ffff:127.0.0.1", 8443, ACP_PROTO_TCP);
  EXPECT_TRUE(same(k4, k6));
  EXPECT_EQ(k4.pad, 0);
  EXPECT_EQ(k4.port, 8443);
  const uint8_t want[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
  EXPECT_EQ(std::memcmp(k4.addr, want, 16), 0);
  EXPECT_TRUE(acp_key_is_mapped4(&k4));
  EXPECT_TRUE(acp_key_is_mapped4(&k6));
}

TEST(KernelDecide, NonMappedIp6DiffersFromIp4) {
  acp_endpoint k4 = key4("127.0.0.1", 8443, ACP_PROTO_TCP);
  // IPv4-compatible (deprecated, ::a.b.c.d) and NAT64 forms are not the IPv4 address.
  EXPECT_FALSE(same(k4, key6("::127.0.0.1", 8443, ACP_PROTO_TCP)));
  EXPECT_FALSE(same(k4, key6("64:ff9b::127.0.0.1", 8443, ACP_PROTO_TCP)));
  EXPECT_FALSE(same(k4, key6("::1", 8443, ACP_PROTO_TCP)));
  acp_endpoint l6 = key6("::1", 8443, ACP_PROTO_TCP);
  EXPECT_FALSE(acp_key_is_mapped4(&l6));
  acp_endpoint compat = key6("::127.0.0.1", 1, ACP_PROTO_TCP);
  EXPECT_FALSE(acp_key_is_mapped4(&compat));
}

TEST(KernelDecide, PortAndProtocolArePartOfTheKey) {
  acp_endpoint a = key4("127.0.0.1", 8443, ACP_PROTO_TCP);
  EXPECT_FALSE(same(a, key4("127.0.0.1", 8444, ACP_PROTO_TCP)));
  EXPECT_FALSE(same(a, key4("127.0.0.1", 8443, ACP_PROTO_UDP)));
  EXPECT_FALSE(same(a, key4("127.0.0.2", 8443, ACP_PROTO_TCP)));
}

TEST(KernelDecide, ProtoOf) {
  EXPECT_EQ(acp_proto_of(SOCK_STREAM, 0), ACP_PROTO_TCP);
  EXPECT_EQ(acp_proto_of(SOCK_STREAM, IPPROTO_TCP), ACP_PROTO_TCP);
  EXPECT_EQ(acp_proto_of(SOCK_DGRAM, 0), ACP_PROTO_UDP);
  EXPECT_EQ(acp_proto_of(SOCK_DGRAM, IPPROTO_UDP), ACP_PROTO_UDP);
  EXPECT_EQ(acp_proto_of(SOCK_STREAM, IPPROTO_SCTP), 0);
  EXPECT_EQ(acp_proto_of(SOCK_STREAM, IPPROTO_MPTCP), 0);
  EXPECT_EQ(acp_proto_of(SOCK_DGRAM, IPPROTO_ICMP), 0);
  EXPECT_EQ(acp_proto_of(SOCK_DGRAM, IPPROTO_ICMPV6), 0);
  EXPECT_EQ(acp_proto_of(SOCK_DGRAM, IPPROTO_UDPLITE), 0);
  EXPECT_EQ(acp_proto_of(SOCK_RAW, IPPROTO_TCP), 0);
  EXPECT_EQ(acp_proto_of(SOCK_SEQPACKET, 0), 0);
  EXPECT_EQ(acp_proto_of(SOCK_STREAM, IPPROTO_UDP), 0);
}

TEST(KernelDecide, VerdictFor) {
  EXPECT_EQ(acp_verdict_for(1, ACP_MODE_ENFORCE), ACP_VERDICT_ALLOW);
  EXPECT_EQ(acp_verdict_for(1, ACP_MODE_AUDIT), ACP_VERDICT_ALLOW);
  EXPECT_EQ(acp_verdict_for(0, ACP_MODE_ENFORCE), ACP_VERDICT_DENY);
  EXPECT_EQ(acp_verdict_for(0, ACP_MODE_AUDIT), ACP_VERDICT_AUDIT_DENY);
  // An unknown mode is never audit: a corrupt config fails closed.
  EXPECT_EQ(acp_verdict_for(0, 7), ACP_VERDICT_DENY);
}

TEST(KernelDecide, SocketAllowed) {
  struct Case {
    int family, type, protocol;
    bool allowed;
    const char* what;
  };
  const Case cases[] = {
      {AF_INET, SOCK_STREAM, 0, true, "tcp4"},
      {AF_INET, SOCK_STREAM, IPPROTO_TCP, true, "tcp4 explicit"},
      {AF_INET6, SOCK_STREAM, 0, true, "tcp6"},
      {AF_INET, SOCK_DGRAM, 0, true, "udp4"},
      {AF_INET6, SOCK_DGRAM, IPPROTO_UDP, true, "udp6 explicit"},
      {AF_UNIX, SOCK_STREAM, 0, true, "unix stream"},
      {AF_UNIX, SOCK_DGRAM, 0, true, "unix dgram"},
      {AF_NETLINK, SOCK_RAW, 0, true, "netlink route"},
      {AF_INET, SOCK_RAW, IPPROTO_ICMP, false, "raw icmp"},
      {AF_INET, SOCK_RAW, IPPROTO_TCP, false, "raw tcp"},
      {AF_INET6, SOCK_RAW, IPPROTO_ICMPV6, false, "raw icmpv6"},
      {AF_INET, SOCK_DGRAM, IPPROTO_ICMP, false, "ping socket"},
      {AF_INET6, SOCK_DGRAM, IPPROTO_ICMPV6, false, "ping6 socket"},
      {AF_INET, SOCK_STREAM, IPPROTO_SCTP, false, "sctp stream"},
      {AF_INET, SOCK_SEQPACKET, IPPROTO_SCTP, false, "sctp seqpacket"},
      {AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE, false, "udplite"},
      {AF_INET, SOCK_STREAM, IPPROTO_MPTCP, false, "mptcp"},
      {AF_PACKET, SOCK_RAW, 0x0300, false, "packet raw"},
      {AF_PACKET, SOCK_DGRAM, 0, false, "packet dgram"},
      {AF_VSOCK, SOCK_STREAM, 0, false, "vsock"},
      {AF_BLUETOOTH, SOCK_STREAM, 0, false, "bluetooth"},
      {AF_XDP, SOCK_RAW, 0, false, "xdp"},
      {AF_TIPC, SOCK_RDM, 0, false, "tipc"},
  };
  for (const auto& c : cases)
    EXPECT_EQ(acp_socket_allowed(c.family, c.type, c.protocol) != 0, c.allowed) << c.what;
}

TEST(KernelDecide, CounterIndexUniqueAndInRange) {
  std::set<uint32_t> seen;
  for (uint32_t fam = 0; fam < ACP_FAM_MAX; fam++)
    for (uint32_t pro = 0; pro < ACP_PRO_MAX; pro++)
      for (uint32_t denied = 0; denied < 2; denied++) {
        uint32_t idx = acp_counter_index(fam, pro, denied);
        EXPECT_LT(idx, ACP_COUNTER_SLOTS);
        EXPECT_TRUE(seen.insert(idx).second) << fam << "/" << pro << "/" << denied;
      }
  EXPECT_EQ(seen.size(), ACP_COUNTER_SLOTS);
  // Any non-zero "denied" is the denied slot.
  EXPECT_EQ(acp_counter_index(ACP_FAM_INET, ACP_PRO_TCP, 5),
            acp_counter_index(ACP_FAM_INET, ACP_PRO_TCP, 1));
}

TEST(KernelDecide, ProtoIdx) {
  EXPECT_EQ(acp_proto_idx(ACP_PROTO_TCP), ACP_PRO_TCP);
  EXPECT_EQ(acp_proto_idx(ACP_PROTO_UDP), ACP_PRO_UDP);
  EXPECT_EQ(acp_proto_idx(0), ACP_PRO_OTHER);
  EXPECT_EQ(acp_proto_idx(IPPROTO_SCTP), ACP_PRO_OTHER);
}

TEST(KernelDecide, SpelledOutConstantsMatchLibc) {
  EXPECT_EQ(ACP_AF_UNIX, AF_UNIX);
  EXPECT_EQ(ACP_AF_INET, AF_INET);
  EXPECT_EQ(ACP_AF_INET6, AF_INET6);
  EXPECT_EQ(ACP_AF_NETLINK, AF_NETLINK);
  EXPECT_EQ(ACP_SOCK_STREAM, SOCK_STREAM);
  EXPECT_EQ(ACP_SOCK_DGRAM, SOCK_DGRAM);
  EXPECT_EQ(ACP_SOCK_RAW, SOCK_RAW);
  EXPECT_EQ(ACP_IPPROTO_TCP, IPPROTO_TCP);
  EXPECT_EQ(ACP_IPPROTO_UDP, IPPROTO_UDP);
  EXPECT_EQ(ACP_PROTO_TCP, IPPROTO_TCP);
  EXPECT_EQ(ACP_PROTO_UDP, IPPROTO_UDP);
}

}  // namespace
