// The BPF decisions (bpf/acp_decide.h) compiled for the host: every branch the kernel takes.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/if_ether.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cstring>
#include <set>
#include <vector>

#include "acp/proxy/dns_responder.hpp"
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

// A temporary's address for a call (it lives to the end of the full expression).
const acp_endpoint* ptr(const acp_endpoint& k) {
  return &k;
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

// ---- egress packets: headers built with libc's own structs, parsed by the BPF helpers ----

std::vector<uint8_t> ip4_header(const char* dst, uint8_t protocol, uint16_t frag_off = 0,
                                uint8_t ihl = 5) {
  std::vector<uint8_t> h(ihl * 4u < sizeof(iphdr) ? sizeof(iphdr) : ihl * 4u, 0);
  iphdr ip{};
  ip.version = 4;
  ip.ihl = ihl;
  ip.ttl = 64;
  ip.protocol = protocol;
  ip.frag_off = htons(frag_off);
  inet_pton(AF_INET, "10.200.1.1", &ip.saddr);
  inet_pton(AF_INET, dst, &ip.daddr);
  std::memcpy(h.data(), &ip, sizeof(ip));
  return h;
}

std::vector<uint8_t> ip6_header(const char* dst, uint8_t next_header,
                                const char* src = "fd00:acb:1::1") {
  ip6_hdr ip{};
  ip.ip6_vfc = 6 << 4;
  ip.ip6_nxt = next_header;
  ip.ip6_hlim = 64;
  inet_pton(AF_INET6, src, &ip.ip6_src);
  inet_pton(AF_INET6, dst, &ip.ip6_dst);
  std::vector<uint8_t> h(sizeof(ip));
  std::memcpy(h.data(), &ip, sizeof(ip));
  return h;
}

struct Parsed {
  int ok = 0;
  acp_endpoint key{};
  uint8_t l4proto = 0;
  uint32_t l4_off = 0;
};

Parsed parse4(const std::vector<uint8_t>& h) {
  Parsed p;
  std::memset(&p.key, 0xaa, sizeof(p.key));
  p.ok = acp_parse_ip4(h.data(), &p.key, &p.l4proto, &p.l4_off);
  return p;
}
Parsed parse6(const std::vector<uint8_t>& h) {
  Parsed p;
  std::memset(&p.key, 0x55, sizeof(p.key));
  p.ok = acp_parse_ip6(h.data(), &p.key, &p.l4proto, &p.l4_off);
  return p;
}

TEST(KernelDecide, EgressParsesIp4IntoTheSockAddrKey) {
  Parsed p = parse4(ip4_header("10.200.1.2", IPPROTO_TCP));
  ASSERT_EQ(p.ok, 1);
  EXPECT_EQ(p.l4proto, IPPROTO_TCP);
  EXPECT_EQ(p.l4_off, 20u);
  // With the port filled in, the same bytes as the connect4 key: one allow entry serves both.
  p.key.port = 8080;
  EXPECT_TRUE(same(p.key, key4("10.200.1.2", 8080, ACP_PROTO_TCP)));
  EXPECT_EQ(parse4(ip4_header("10.200.1.2", IPPROTO_UDP)).key.proto, ACP_PROTO_UDP);
  // Options: the transport header moves.
  EXPECT_EQ(parse4(ip4_header("10.200.1.2", IPPROTO_TCP, 0, 7)).l4_off, 28u);
}

TEST(KernelDecide, EgressIp4WhatCannotBeJudged) {
  // Not TCP/UDP: proto 0, never matches an allow entry.
  for (uint8_t proto : {IPPROTO_ICMP, IPPROTO_SCTP, IPPROTO_UDPLITE, IPPROTO_GRE}) {
    Parsed p = parse4(ip4_header("10.200.1.2", proto));
    EXPECT_EQ(p.ok, 1);
    EXPECT_EQ(p.key.proto, 0) << int(proto);
    EXPECT_EQ(p.l4proto, proto);
  }
  // A later fragment carries no ports; the first one (MF set, offset 0) does.
  EXPECT_EQ(parse4(ip4_header("10.200.1.2", IPPROTO_UDP, 185)).key.proto, 0);
  EXPECT_EQ(parse4(ip4_header("10.200.1.2", IPPROTO_UDP, IP_MF)).key.proto, ACP_PROTO_UDP);
  EXPECT_EQ(parse4(ip4_header("10.200.1.2", IPPROTO_UDP, IP_MF | 1)).key.proto, 0);
  EXPECT_EQ(parse4(ip4_header("10.200.1.2", IPPROTO_TCP, IP_DF)).key.proto, ACP_PROTO_TCP);
  // Broken headers are not headers.
  auto bad = ip4_header("10.200.1.2", IPPROTO_TCP);
  bad[0] = 0x45 & 0x0f;  // version 0
  EXPECT_EQ(parse4(bad).ok, 0);
  EXPECT_EQ(parse4(ip4_header("10.200.1.2", IPPROTO_TCP, 0, 4)).ok, 0);  // IHL < 5
  EXPECT_EQ(parse4(ip6_header("::1", IPPROTO_TCP)).ok, 0);  // IPv6 where IPv4 was expected
}

TEST(KernelDecide, EgressParsesIp6) {
  Parsed p = parse6(ip6_header("fd00:acb:1::2", IPPROTO_TCP));
  ASSERT_EQ(p.ok, 1);
  EXPECT_EQ(p.l4_off, 40u);
  p.key.port = 443;
  EXPECT_TRUE(same(p.key, key6("fd00:acb:1::2", 443, ACP_PROTO_TCP)));
  EXPECT_EQ(parse6(ip6_header("fd00:acb:1::2", IPPROTO_UDP)).key.proto, ACP_PROTO_UDP);
  // Extension headers (hop-by-hop 0, routing 43, fragment 44, destination options 60), ESP,
  // ICMPv6, "no next header": never judged as the destination field says.
  for (uint8_t nh : {0, 43, 44, 60, 50, 58, 59}) {
    Parsed x = parse6(ip6_header("fd00:acb:1::2", nh));
    EXPECT_EQ(x.ok, 1);
    EXPECT_EQ(x.key.proto, 0) << int(nh);
    EXPECT_EQ(x.l4proto, nh);
  }
  EXPECT_EQ(parse6(ip4_header("10.0.0.1", IPPROTO_TCP)).ok, 0);
}

TEST(KernelDecide, EgressDestinationPort) {
  tcphdr t{};
  t.th_dport = htons(8443);
  t.th_flags = TH_SYN | TH_ACK;
  uint8_t b[sizeof(t)];
  std::memcpy(b, &t, sizeof(t));
  EXPECT_EQ(acp_l4_dport(b), 8443);
  EXPECT_EQ(b[13] & ACP_TCP_SYN, ACP_TCP_SYN) << "the flags byte the program reads";
  EXPECT_EQ(ACP_TCP_FLAGS_LEN, 14);
}

TEST(KernelDecide, EgressLoopback) {
  auto lo4 = [](const char* ip) {
    acp_endpoint k = key4(ip, 1, ACP_PROTO_TCP);
    return acp_key_is_loopback(&k) != 0;
  };
  auto lo6 = [](const char* ip) {
    acp_endpoint k = key6(ip, 1, ACP_PROTO_TCP);
    return acp_key_is_loopback(&k) != 0;
  };
  for (const char* ip : {"127.0.0.1", "127.0.0.2", "127.255.255.254"}) EXPECT_TRUE(lo4(ip)) << ip;
  for (const char* ip : {"::1", "::ffff:127.0.0.1", "::ffff:127.1.2.3"}) EXPECT_TRUE(lo6(ip)) << ip;
  for (const char* ip : {"128.0.0.1", "10.200.1.2", "0.0.0.0", "126.255.255.255"})
    EXPECT_FALSE(lo4(ip)) << ip;
  // IPv4-compatible and NAT64 forms, :: and ::2 are not loopback.
  for (const char* ip : {"::127.0.0.1", "64:ff9b::127.0.0.1", "::", "::2", "fe80::1", "1::1"})
    EXPECT_FALSE(lo6(ip)) << ip;
}

// To loopback only from loopback: a forged IPv6 source (IPV6_FREEBIND) would have the proxy's
// SYN-ACK or the session DNS's reply routed off the machine to it.
TEST(KernelDecide, EgressIp6LoopbackNeedsALoopbackSource) {
  for (const char* src : {"::1", "::ffff:127.0.0.1", "::ffff:127.9.8.7"})
    EXPECT_TRUE(acp_ip6_src_is_loopback(ip6_header("::1", IPPROTO_UDP, src).data())) << src;
  for (const char* src : {"2001:db8::99", "fd00:acb:1::1", "::", "::2", "::127.0.0.1",
                          "::ffff:10.0.0.1", "::ffff:128.0.0.1", "fe80::1", "1::1"})
    EXPECT_FALSE(acp_ip6_src_is_loopback(ip6_header("::1", IPPROTO_UDP, src).data())) << src;
}

TEST(KernelDecide, EgressVerdict) {
  const acp_endpoint lo = key4("127.0.0.1", 9, ACP_PROTO_TCP);
  const acp_endpoint lo_other = key6("::1", 0, 0);  // even an unjudgeable protocol on lo
  const acp_endpoint far = key4("10.200.1.2", 9, ACP_PROTO_TCP);
  const acp_endpoint far_unknown = key6("fd00::2", 0, 0);
  for (uint32_t mode : {ACP_MODE_ENFORCE, ACP_MODE_AUDIT}) {
    EXPECT_EQ(acp_egress_verdict(1, &lo, 0, mode), ACP_VERDICT_ALLOW);
    EXPECT_EQ(acp_egress_verdict(1, &lo_other, 0, mode), ACP_VERDICT_ALLOW);
    EXPECT_EQ(acp_egress_verdict(1, &far, 1, mode), ACP_VERDICT_ALLOW) << "allowed endpoint";
  }
  EXPECT_EQ(acp_egress_verdict(1, &far, 0, ACP_MODE_ENFORCE), ACP_VERDICT_DENY);
  EXPECT_EQ(acp_egress_verdict(1, &far, 0, ACP_MODE_AUDIT), ACP_VERDICT_AUDIT_DENY);
  // Fail closed: no transport protocol, or no parsable header, is never allowed, not even
  // when the caller claims an allow-map hit, and not even "to loopback" (the bytes lie).
  EXPECT_EQ(acp_egress_verdict(1, &far_unknown, 1, ACP_MODE_ENFORCE), ACP_VERDICT_DENY);
  EXPECT_EQ(acp_egress_verdict(0, &far, 1, ACP_MODE_ENFORCE), ACP_VERDICT_DENY);
  EXPECT_EQ(acp_egress_verdict(0, &lo, 1, ACP_MODE_ENFORCE), ACP_VERDICT_DENY);
  EXPECT_EQ(acp_egress_verdict(0, &far, 0, ACP_MODE_AUDIT), ACP_VERDICT_AUDIT_DENY);
  EXPECT_EQ(acp_egress_verdict(1, &far, 0, 7), ACP_VERDICT_DENY) << "corrupt mode";
}

TEST(KernelDecide, EgressReportsOncePerSocket) {
  EXPECT_TRUE(acp_egress_should_report(42, 0, IPPROTO_TCP, 0));
  EXPECT_FALSE(acp_egress_should_report(42, 1, IPPROTO_TCP, ACP_TCP_SYN)) << "retransmission";
  EXPECT_FALSE(acp_egress_should_report(42, 1, IPPROTO_UDP, 0));
  // Without a socket cookie: TCP only when SYN is set (each connection try), others always.
  EXPECT_TRUE(acp_egress_should_report(0, 0, IPPROTO_TCP, ACP_TCP_SYN));
  EXPECT_TRUE(acp_egress_should_report(0, 0, IPPROTO_TCP, ACP_TCP_SYN | 0x10));
  EXPECT_FALSE(acp_egress_should_report(0, 0, IPPROTO_TCP, 0x10));
  EXPECT_TRUE(acp_egress_should_report(0, 0, IPPROTO_UDP, 0));
}

// The transparent door: which connect() is led in, and to which listener.
TEST(KernelDecide, DoorLeadsOnlyRefusedTcpConnectsInEnforceMode) {
  acp_endpoint v4 = key4("10.0.0.7", 443, ACP_PROTO_TCP);
  acp_endpoint mapped = key6("::ffff:10.0.0.7", 443, ACP_PROTO_TCP);
  acp_endpoint v6 = key6("2001:db8::7", 443, ACP_PROTO_TCP);
  EXPECT_EQ(acp_door_port(&v4, 0, ACP_MODE_ENFORCE, 8444, 8446), 8444);
  EXPECT_EQ(acp_door_port(&mapped, 0, ACP_MODE_ENFORCE, 8444, 8446), 8444) << "mapped: IPv4";
  EXPECT_EQ(acp_door_port(&v6, 0, ACP_MODE_ENFORCE, 8444, 8446), 8446);
  // Allowed: connects where it asked. Door off (port 0): refused as ever.
  EXPECT_EQ(acp_door_port(&v4, 1, ACP_MODE_ENFORCE, 8444, 8446), 0);
  EXPECT_EQ(acp_door_port(&v4, 0, ACP_MODE_ENFORCE, 0, 0), 0);
  EXPECT_EQ(acp_door_port(&v6, 0, ACP_MODE_ENFORCE, 8444, 0), 0) << "IPv6 door off only";
  EXPECT_EQ(acp_door_port(&v4, 0, ACP_MODE_ENFORCE, 0, 8446), 0) << "IPv4 door off only";
  // Audit mode lets everything through to where it asked, reported: the door stays out.
  EXPECT_EQ(acp_door_port(&v4, 0, ACP_MODE_AUDIT, 8444, 8446), 0);
  // UDP (and anything that is not TCP) is refused as ever.
  acp_endpoint udp = key4("10.0.0.7", 53, ACP_PROTO_UDP);
  acp_endpoint other = key4("10.0.0.7", 53, 0);
  EXPECT_EQ(acp_door_port(&udp, 0, ACP_MODE_ENFORCE, 8444, 8446), 0);
  EXPECT_EQ(acp_door_port(&other, 0, ACP_MODE_ENFORCE, 8444, 8446), 0);
}

// The door's config as the wall's config map holds it: ports, and the listen addresses
// (addr4/addr6 empty: loopback, as for `acp run`).
acp_config door_cfg(uint16_t p4, uint16_t p6, uint16_t d4 = 0, uint16_t d6 = 0,
                    const char* addr4 = nullptr, const char* addr6 = nullptr) {
  acp_config c{};
  c.door_port4 = p4;
  c.door_port6 = p6;
  c.dns_port4 = d4;
  c.dns_port6 = d6;
  if (addr4) {
    EXPECT_EQ(inet_pton(AF_INET, addr4, &c.door_addr4), 1);
  }
  if (addr6) {
    EXPECT_EQ(inet_pton(AF_INET6, addr6, c.door_addr6), 1);
  }
  return c;
}

TEST(KernelDecide, DoorTargetIsTheLoopbackListenerOfTheSameFamily) {
  const acp_config cfg = door_cfg(8444, 8446);
  acp_endpoint t;
  std::memset(&t, 0xaa, sizeof(t));
  acp_endpoint v4 = key4("10.0.0.7", 443, ACP_PROTO_TCP);
  acp_door_target(&t, &v4, 8444, &cfg);
  EXPECT_TRUE(same(t, key4("127.0.0.1", 8444, ACP_PROTO_TCP)));
  acp_endpoint mapped = key6("::ffff:10.0.0.7", 443, ACP_PROTO_TCP);
  std::memset(&t, 0x55, sizeof(t));
  acp_door_target(&t, &mapped, 8444, &cfg);
  EXPECT_TRUE(same(t, key6("::ffff:127.0.0.1", 8444, ACP_PROTO_TCP)));
  acp_endpoint v6 = key6("2001:db8::7", 443, ACP_PROTO_TCP);
  std::memset(&t, 0xaa, sizeof(t));
  acp_door_target(&t, &v6, 8446, &cfg);
  EXPECT_TRUE(same(t, key6("::1", 8446, ACP_PROTO_TCP)));
}

// A pod's door (the node agent): the node address the pod reaches, never the pod's loopback.
TEST(KernelDecide, DoorTargetIsTheNodeAddressWhenTheConfigNamesOne) {
  const acp_config cfg = door_cfg(9444, 9446, 0, 0, "10.201.3.1", "fd00:acb:3::1");
  acp_endpoint t;
  acp_endpoint v4 = key4("10.0.0.7", 443, ACP_PROTO_TCP);
  acp_door_target(&t, &v4, 9444, &cfg);
  EXPECT_TRUE(same(t, key4("10.201.3.1", 9444, ACP_PROTO_TCP)));
  acp_endpoint mapped = key6("::ffff:10.0.0.7", 443, ACP_PROTO_TCP);
  acp_door_target(&t, &mapped, 9444, &cfg);
  EXPECT_TRUE(same(t, key6("::ffff:10.201.3.1", 9444, ACP_PROTO_TCP)));
  acp_endpoint v6 = key6("2001:db8::7", 443, ACP_PROTO_TCP);
  acp_door_target(&t, &v6, 9446, &cfg);
  EXPECT_TRUE(same(t, key6("fd00:acb:3::1", 9446, ACP_PROTO_TCP)));
  // Only the node listener counts as the door: the same port on loopback does not.
  EXPECT_TRUE(acp_door_is_target(ptr(key4("10.201.3.1", 9444, ACP_PROTO_TCP)), &v4, &cfg));
  EXPECT_FALSE(acp_door_is_target(ptr(key4("127.0.0.1", 9444, ACP_PROTO_TCP)), &v4, &cfg));
  EXPECT_FALSE(acp_door_is_target(ptr(key6("::1", 9446, ACP_PROTO_TCP)), &v6, &cfg));
  // One family set, the other left at loopback.
  const acp_config only4 = door_cfg(9444, 9446, 0, 0, "10.201.3.1");
  acp_door_target(&t, &v6, 9446, &only4);
  EXPECT_TRUE(same(t, key6("::1", 9446, ACP_PROTO_TCP)));
}

TEST(KernelDecide, DoorRecordCountsOnlyWhileConnectedToItsListener) {
  const acp_config cfg = door_cfg(8444, 8446);
  acp_endpoint v4 = key4("10.0.0.7", 443, ACP_PROTO_TCP);
  acp_endpoint v6 = key6("2001:db8::7", 443, ACP_PROTO_TCP);
  acp_endpoint v4_door = key4("127.0.0.1", 8444, ACP_PROTO_TCP);
  EXPECT_TRUE(acp_door_is_target(&v4_door, &v4, &cfg));
  acp_endpoint mapped_door = key6("::ffff:127.0.0.1", 8444, ACP_PROTO_TCP);
  EXPECT_TRUE(acp_door_is_target(&mapped_door, &v4, &cfg)) << "v4-mapped socket";
  acp_endpoint v6_door = key6("::1", 8446, ACP_PROTO_TCP);
  EXPECT_TRUE(acp_door_is_target(&v6_door, &v6, &cfg));
  // The socket connected again elsewhere (another port, another loopback address, the other
  // family's listener, the explicit proxy port): its record is stale.
  for (const acp_endpoint& peer :
       {key4("127.0.0.1", 8443, ACP_PROTO_TCP), key4("127.0.0.2", 8444, ACP_PROTO_TCP),
        key6("::1", 8444, ACP_PROTO_TCP), key4("10.0.0.7", 443, ACP_PROTO_TCP),
        key4("127.0.0.1", 8444, ACP_PROTO_UDP)})
    EXPECT_FALSE(acp_door_is_target(&peer, &v4, &cfg));
  EXPECT_FALSE(acp_door_is_target(&mapped_door, &v6, &cfg));
  // The door turned off: no record counts.
  const acp_config off6 = door_cfg(8444, 0);
  EXPECT_FALSE(acp_door_is_target(&v6_door, &v6, &off6));
}

// DNS beside the door: only UDP to port 53, in enforce mode, not an allowed destination; the
// port of the destination's family.
TEST(KernelDecide, OnlyUdpPort53IsLedToTheDnsResponder) {
  acp_endpoint v4 = key4("8.8.8.8", 53, ACP_PROTO_UDP);
  acp_endpoint stub = key4("127.0.0.53", 53, ACP_PROTO_UDP);
  acp_endpoint v6 = key6("2001:4860::8888", 53, ACP_PROTO_UDP);
  acp_endpoint mapped = key6("::ffff:8.8.8.8", 53, ACP_PROTO_UDP);
  EXPECT_EQ(acp_dns_port(&v4, 0, ACP_MODE_ENFORCE, 5353, 5354), 5353);
  EXPECT_EQ(acp_dns_port(&stub, 0, ACP_MODE_ENFORCE, 5353, 5354), 5353);
  EXPECT_EQ(acp_dns_port(&mapped, 0, ACP_MODE_ENFORCE, 5353, 5354), 5353);
  EXPECT_EQ(acp_dns_port(&v6, 0, ACP_MODE_ENFORCE, 5353, 5354), 5354);
  acp_endpoint tcp53 = key4("8.8.8.8", 53, ACP_PROTO_TCP);
  acp_endpoint udp54 = key4("8.8.8.8", 54, ACP_PROTO_UDP);
  EXPECT_EQ(acp_dns_port(&tcp53, 0, ACP_MODE_ENFORCE, 5353, 5354), 0);  // TCP: the door's
  EXPECT_EQ(acp_dns_port(&udp54, 0, ACP_MODE_ENFORCE, 5353, 5354), 0);
  EXPECT_EQ(acp_dns_port(&v4, 1, ACP_MODE_ENFORCE, 5353, 5354), 0);  // --allow'ed: as asked
  EXPECT_EQ(acp_dns_port(&v4, 0, ACP_MODE_AUDIT, 5353, 5354), 0);
  EXPECT_EQ(acp_dns_port(&v4, 0, ACP_MODE_ENFORCE, 0, 0), 0);  // no responder: refused
}

// A reply shows the address the query went to only when it comes from the responder that
// address was led to.
TEST(KernelDecide, DnsRepliesShowTheAskedAddressOnlyFromTheResponder) {
  const acp_config cfg = door_cfg(0, 0, 5353, 5354);
  acp_endpoint asked = key4("10.255.255.53", 53, ACP_PROTO_UDP);
  acp_endpoint asked6 = key6("2001:db8::53", 53, ACP_PROTO_UDP);
  EXPECT_TRUE(acp_dns_is_target(ptr(key4("127.0.0.1", 5353, ACP_PROTO_TCP)), &asked, &cfg));
  EXPECT_TRUE(acp_dns_is_target(ptr(key6("::ffff:127.0.0.1", 5353, ACP_PROTO_UDP)), &asked, &cfg));
  EXPECT_TRUE(acp_dns_is_target(ptr(key6("::1", 5354, ACP_PROTO_UDP)), &asked6, &cfg));
  for (const acp_endpoint& src :
       {key4("127.0.0.1", 5354, ACP_PROTO_UDP), key4("127.0.0.2", 5353, ACP_PROTO_UDP),
        key4("10.255.255.53", 53, ACP_PROTO_UDP), key6("::1", 5353, ACP_PROTO_UDP)})
    EXPECT_FALSE(acp_dns_is_target(&src, &asked, &cfg));
  acp_endpoint tcp_rec = key4("10.255.255.53", 53, ACP_PROTO_TCP);
  EXPECT_FALSE(acp_dns_is_target(ptr(key4("127.0.0.1", 5353, ACP_PROTO_UDP)), &tcp_rec, &cfg));
  acp_endpoint other_port = key4("10.255.255.53", 5300, ACP_PROTO_UDP);
  EXPECT_FALSE(acp_dns_is_target(ptr(key4("127.0.0.1", 5353, ACP_PROTO_UDP)), &other_port, &cfg));
  const acp_config off4 = door_cfg(0, 0, 0, 5354);
  EXPECT_FALSE(acp_dns_is_target(ptr(key4("127.0.0.1", 5353, ACP_PROTO_UDP)), &asked, &off4));
  // A pod's responder on the node address: a reply from there shows the asked address.
  const acp_config node = door_cfg(0, 0, 5353, 5354, "10.201.3.1");
  EXPECT_TRUE(acp_dns_is_target(ptr(key4("10.201.3.1", 5353, ACP_PROTO_UDP)), &asked, &node));
  EXPECT_FALSE(acp_dns_is_target(ptr(key4("127.0.0.1", 5353, ACP_PROTO_UDP)), &asked, &node));
}

// The wall and the session's DNS agree on what is synthetic (acp_is_synthetic vs
// proxy::dns::SyntheticNames), at both ends of each range and just outside.
TEST(KernelDecide, SyntheticRangesAreTheDnsResponders) {
  acp::proxy::dns::SyntheticNames names;
  for (const char* ip : {"198.18.0.0", "198.18.0.1", "198.19.255.255", "198.17.255.255",
                         "198.20.0.0", "10.0.0.1", "::ffff:198.18.3.4", "::ffff:198.20.0.1",
                         "fd61:6370:646e::1", "fd61:6370:646e:0:ffff:ffff:ffff:ffff",
                         "fd61:6370:646e:1::1", "fd61:6370:646f::1", "2001:db8::1", "::1"}) {
    const bool v6 = std::string_view(ip).find(':') != std::string_view::npos;
    acp_endpoint k = v6 ? key6(ip, 443, ACP_PROTO_UDP) : key4(ip, 443, ACP_PROTO_UDP);
    EXPECT_EQ(acp_is_synthetic(&k) != 0, names.is_synthetic(boost::asio::ip::make_address(ip)))
        << ip;
  }
  acp_endpoint in = key4("198.19.0.9", 443, ACP_PROTO_UDP);
  acp_endpoint out = key4("198.20.0.9", 443, ACP_PROTO_UDP);
  EXPECT_TRUE(acp_is_synthetic(&in));
  EXPECT_FALSE(acp_is_synthetic(&out));
}

// The node gate's walk below kubepods: a QoS cgroup sends it one level deeper; an open or
// walled pod passes; no entry, or a process that sits above pod level, is refused.
TEST(KernelDecide, GateStepPassesOnlyClassifiedPods) {
  EXPECT_EQ(acp_gate_step(42, ACP_GATE_QOS), ACP_GATE_STEP_DEEPER);
  EXPECT_EQ(acp_gate_step(42, ACP_GATE_OPEN), ACP_GATE_STEP_PASS);
  EXPECT_EQ(acp_gate_step(42, ACP_GATE_WALLED), ACP_GATE_STEP_PASS);
  EXPECT_EQ(acp_gate_step(42, ACP_GATE_UNKNOWN), ACP_GATE_STEP_REFUSE);
  EXPECT_EQ(acp_gate_step(42, 7), ACP_GATE_STEP_REFUSE);  // a value the agent never writes
  EXPECT_EQ(acp_gate_step(0, ACP_GATE_OPEN), ACP_GATE_STEP_REFUSE);  // not that deep
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
  EXPECT_EQ(ACP_ETH_P_IP, ETH_P_IP);
  EXPECT_EQ(ACP_ETH_P_IPV6, ETH_P_IPV6);
  EXPECT_EQ(ACP_IP4_HDR_LEN, sizeof(iphdr));
  EXPECT_EQ(ACP_IP6_HDR_LEN, sizeof(ip6_hdr));
  EXPECT_EQ(ACP_TCP_SYN, TH_SYN);
}

}  // namespace
