/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The connect()/sendmsg()/socket() and egress-packet decisions, free of BPF helpers so that the unit tests
 * compile this same file for the host (tests/kernel_decide_test.cpp) and check every branch
 * without a kernel. The SEC() programs in acp_sock.bpf.c only gather the context, call one
 * of these, and report.
 */
#ifndef ACP_DECIDE_H
#define ACP_DECIDE_H

#include "acp_abi.h"

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

/* Full unrolling for the BPF build (clang). GCC, which builds the host unit tests, does not
 * know clang's unroll pragma and would warn. */
/* Hides a value from the optimizer, so that arithmetic written to avoid a branch stays
 * arithmetic: clang would turn (i - n) >> 31 back into a compare-and-jump, and each jump on n
 * teaches the verifier a bound that it must then keep apart from every other one. */
#define ACP_OPAQUE(x) __asm__ volatile("" : "+r"(x))

#ifdef __clang__
#define ACP_UNROLL _Pragma("unroll")
#define ACP_NO_UNROLL _Pragma("nounroll")
#else
#define ACP_UNROLL
#define ACP_NO_UNROLL
#endif

/* Socket constants, spelled out: the BPF build has no libc headers. Values are the Linux
 * UAPI ones (include/linux/socket.h, include/uapi/linux/in.h, in6.h). */
#define ACP_AF_UNIX 1
#define ACP_AF_INET 2
#define ACP_AF_INET6 10
#define ACP_AF_NETLINK 16
#define ACP_SOCK_STREAM 1
#define ACP_SOCK_DGRAM 2
#define ACP_SOCK_RAW 3
#define ACP_IPPROTO_IP 0
#define ACP_IPPROTO_TCP 6
#define ACP_IPPROTO_UDP 17
#define ACP_ETH_P_IP 0x0800   /* skb->protocol, network byte order in the skb */
#define ACP_ETH_P_IPV6 0x86DD
#define ACP_IP4_HDR_LEN 20    /* the fixed part; options follow up to IHL * 4 */
#define ACP_IP6_HDR_LEN 40
#define ACP_UDP_PORTS_LEN 4   /* source and destination port */
#define ACP_TCP_FLAGS_LEN 14  /* through the flags byte (offset 13) */
#define ACP_TCP_SYN 0x02

/* A network-order word from its four bytes, as the key's addr holds them (constant-folded). */
static __always_inline __u32 acp_be_word(__u8 a, __u8 b, __u8 c, __u8 d) {
  const __u8 bytes[4] = {a, b, c, d};
  __u32 w;
  __builtin_memcpy(&w, bytes, 4);
  return w;
}

/* Build the allow-map key for an IPv4 destination: ::ffff:a.b.c.d (RFC 4291 2.5.5.2).
 * ip4_be is in network byte order as the kernel hands it over (bpf_sock_addr.user_ip4). */
static __always_inline void acp_key_from_ip4(struct acp_endpoint *k, __u32 ip4_be, __u16 port,
                                             __u8 proto) {
  __u8 *b = (__u8 *)&ip4_be;
ACP_UNROLL
  for (int i = 0; i < 10; i++) k->addr[i] = 0;
  k->addr[10] = 0xff;
  k->addr[11] = 0xff;
  k->addr[12] = b[0];
  k->addr[13] = b[1];
  k->addr[14] = b[2];
  k->addr[15] = b[3];
  k->port = port;
  k->proto = proto;
  k->pad = 0;
}

/* IPv6 destination; words as in bpf_sock_addr.user_ip6 (network byte order). A mapped
 * IPv4 address yields exactly the key acp_key_from_ip4() builds for that IPv4 address. */
static __always_inline void acp_key_from_ip6(struct acp_endpoint *k, const __u32 ip6_be[4],
                                             __u16 port, __u8 proto) {
ACP_UNROLL
  for (int w = 0; w < 4; w++) {
    __u32 v = ip6_be[w];
    __u8 *b = (__u8 *)&v;
    k->addr[w * 4 + 0] = b[0];
    k->addr[w * 4 + 1] = b[1];
    k->addr[w * 4 + 2] = b[2];
    k->addr[w * 4 + 3] = b[3];
  }
  k->port = port;
  k->proto = proto;
  k->pad = 0;
}

/* True when the key holds an IPv4-mapped address: counted as IPv4. */
static __always_inline int acp_key_is_mapped4(const struct acp_endpoint *k) {
  __u32 w[3];
  __builtin_memcpy(w, k->addr, 12);
  return (w[0] | w[1] | (w[2] ^ acp_be_word(0, 0, 0xff, 0xff))) == 0;
}

/* The protocol a sock_addr hook judges, from the socket type. connect4/6 of a stream socket
 * is TCP, of a datagram socket UDP; anything else (it cannot normally reach these hooks,
 * sock_create refuses it) gets 0 and so can never match an allow entry. */
static __always_inline __u8 acp_proto_of(__u32 sock_type, __u32 protocol) {
  if (sock_type == ACP_SOCK_STREAM && (protocol == ACP_IPPROTO_TCP || protocol == 0))
    return ACP_PROTO_TCP;
  if (sock_type == ACP_SOCK_DGRAM && (protocol == ACP_IPPROTO_UDP || protocol == 0))
    return ACP_PROTO_UDP;
  return 0;
}

/* The verdict for an attempt, given whether the allow map held its exact key.
 * A miss never means allow: in enforce mode it is a deny, in audit mode an audited deny. */
static __always_inline __u8 acp_verdict_for(int allowed, __u32 mode) {
  if (allowed) return ACP_VERDICT_ALLOW;
  return mode == ACP_MODE_AUDIT ? ACP_VERDICT_AUDIT_DENY : ACP_VERDICT_DENY;
}

/* socket(): which sockets may exist at all inside the wall.
 * - AF_UNIX and AF_NETLINK may be created (the kernel does not run this hook for them
 *   anyway). Where the kernel has cgroup/connect_unix (6.7+), the unix programs below judge
 *   whom an AF_UNIX socket may reach; AF_NETLINK reaches only the kernel.
 * - AF_INET/AF_INET6 only as TCP or UDP: their connect()/sendmsg() then pass the hooks.
 *   SOCK_RAW and ICMP/ICMPv6 "ping" sockets are refused: they reach any address without a
 *   connect() the hooks would see. So are SCTP, UDP-Lite, MPTCP and the rest.
 * - Every other family is refused here too, but note: the kernel runs cgroup/sock_create only
 *   from inet_create()/inet6_create(), so AF_PACKET, AF_VSOCK, AF_BLUETOOTH, AF_XDP (...)
 *   never reach this program. The agent's seccomp filter refuses those families instead
 *   (src/launch/socket_filter.cpp); this branch is defence in depth.
 * Returns 1 when the socket may be created. */
static __always_inline int acp_socket_allowed(__u32 family, __u32 sock_type, __u32 protocol) {
  if (family == ACP_AF_UNIX || family == ACP_AF_NETLINK) return 1;
  if (family != ACP_AF_INET && family != ACP_AF_INET6) return 0;
  return acp_proto_of(sock_type, protocol) != 0;
}

/* ---- cgroup_skb/egress: packets leaving a socket of the session ----
 * The sock_addr hooks judge the destinations the agent names. A connection the agent
 * accepts names none: its SYN-ACK and data go to whoever dialled in. So every packet leaving
 * a session socket is judged once more by its destination header: loopback, or exactly an
 * allow-map entry (the same key the sock_addr hooks use), or it is dropped. What cannot be
 * judged (a protocol other than TCP/UDP, an IPv6 extension header, a non-first fragment, a
 * header that does not parse) is dropped too: fail closed. */

/* IPv4 header (its first ACP_IP4_HDR_LEN bytes, as bpf_skb_load_bytes copies them from the
 * network header). Fills k with the destination as acp_key_from_ip4() would (port 0) and
 * k->proto with ACP_PROTO_TCP/UDP when the transport header follows at *l4_off, else 0.
 * Returns 0 when this is not an IPv4 header (version, IHL): nothing in it can be trusted. */
static __always_inline int acp_parse_ip4(const __u8 *h, struct acp_endpoint *k, __u8 *l4proto,
                                         __u32 *l4_off) {
  if ((h[0] >> 4) != 4) return 0;
  __u32 ihl = h[0] & 0x0f;
  if (ihl < 5) return 0;
  __u32 dst;
  __u8 *d = (__u8 *)&dst;
  d[0] = h[16];
  d[1] = h[17];
  d[2] = h[18];
  d[3] = h[19];
  *l4proto = h[9];
  *l4_off = ihl * 4;
  /* Fragment offset (13 bits after the 3 flag bits): only the first fragment carries the
   * ports. Local sockets are fragmented after this hook, so a later fragment here is odd. */
  int first_fragment = ((h[6] & 0x1f) | h[7]) == 0;
  __u8 proto = 0;
  if (first_fragment && h[9] == ACP_IPPROTO_TCP) proto = ACP_PROTO_TCP;
  if (first_fragment && h[9] == ACP_IPPROTO_UDP) proto = ACP_PROTO_UDP;
  acp_key_from_ip4(k, dst, 0, proto);
  return 1;
}

/* IPv6 header (ACP_IP6_HDR_LEN bytes). As acp_parse_ip4; only TCP or UDP directly after the
 * fixed header is judged: an extension header (a routing header names other hops than the
 * destination field, a fragment header hides the ports) leaves k->proto 0. */
static __always_inline int acp_parse_ip6(const __u8 *h, struct acp_endpoint *k, __u8 *l4proto,
                                         __u32 *l4_off) {
  if ((h[0] >> 4) != 6) return 0;
ACP_UNROLL
  for (int i = 0; i < 16; i++) k->addr[i] = h[24 + i];
  *l4proto = h[6];
  *l4_off = ACP_IP6_HDR_LEN;
  k->port = 0;
  k->proto = h[6] == ACP_IPPROTO_TCP ? ACP_PROTO_TCP
             : h[6] == ACP_IPPROTO_UDP ? ACP_PROTO_UDP : 0;
  k->pad = 0;
  return 1;
}

/* Destination port of a TCP or UDP header (both keep it at offset 2), host byte order. */
static __always_inline __u16 acp_l4_dport(const __u8 *l4) {
  return (__u16)(((__u16)l4[2] << 8) | l4[3]);
}

/* Loopback destinations stay on the machine and reach only what the sock_addr hooks let the
 * agent reach (or a local peer dialling in over lo): 127.0.0.0/8 (RFC 1122 3.2.1.3), its
 * IPv4-mapped form ::ffff:127.0.0.0/104 and ::1 (RFC 4291 2.5.3). */
static __always_inline int acp_key_is_loopback(const struct acp_endpoint *k) {
  if (acp_key_is_mapped4(k)) return k->addr[12] == 127;
  for (int i = 0; i < 15; i++)
    if (k->addr[i] != 0) return 0;
  return k->addr[15] == 1;
}

/* Whether an IPv6 header's source (h[8..23]) is loopback: ::1 or ::ffff:127.0.0.0/104. A
 * packet to a loopback destination from any other source was sent from an address the agent
 * chose (IPV6_FREEBIND, IPV6_TRANSPARENT, IPV6_PKTINFO), and the answer to it (a SYN-ACK of
 * the proxy, a reply of the session's DNS) would be routed off the machine to that address,
 * carrying bytes the agent chose: such a packet is not "to loopback" but unjudgeable. IPv4 has
 * no such hole (the kernel never routes a 127/8 source off the machine). */
static __always_inline int acp_ip6_src_is_loopback(const __u8 *h) {
  int zero = 1;
ACP_UNROLL
  for (int i = 8; i < 18; i++) zero &= h[i] == 0;
  if (!zero) return 0;
  if (h[18] == 0xff && h[19] == 0xff) return h[20] == 127;
  return h[18] == 0 && h[19] == 0 && h[20] == 0 && h[21] == 0 && h[22] == 0 && h[23] == 1;
}

/* The verdict for one egress packet. header_ok: the IP header parsed; k: its destination
 * with port and proto (proto 0: not judgeable); allowed: the allow map held k exactly. */
static __always_inline __u8 acp_egress_verdict(int header_ok, const struct acp_endpoint *k,
                                               int allowed, __u32 mode) {
  if (header_ok && acp_key_is_loopback(k)) return ACP_VERDICT_ALLOW;
  if (!header_ok || k->proto == 0) return acp_verdict_for(0, mode);
  return acp_verdict_for(allowed, mode);
}

/* Whether a refused packet is reported (event + counter). A refused TCP stream retransmits
 * and a refused listener re-sends its SYN-ACK: one report per socket is enough. cookie is
 * the socket cookie (0 when the packet has no socket), seen whether that cookie was already
 * reported. Without a cookie only TCP segments carrying SYN are reported (one per try). */
static __always_inline int acp_egress_should_report(__u64 cookie, int seen, __u8 l4proto,
                                                    __u8 tcp_flags) {
  if (cookie != 0) return !seen;
  if (l4proto == ACP_IPPROTO_TCP) return (tcp_flags & ACP_TCP_SYN) != 0;
  return 1;
}

/* ---- the transparent door (acp_config.door_port4/6) ----
 * With the door on, a TCP connect() the allow map does not hold is not refused: connect4/6
 * rewrite it to the session proxy's transparent listener and keep the original destination
 * in the socket's storage; the sock_ops program publishes it by the client's local
 * (address, port) before the SYN leaves (door_origin), where the proxy looks it up for each
 * accepted peer; getpeername4/6 hand the original back to the agent. */

/* The door port a connect() is led to, or 0 when it is judged as ever (allowed, or refused
 * with EPERM). Only a TCP connect in enforce mode to a destination the allow map does not
 * hold: UDP, audit mode (which lets everything through to where it asked, and reports it) and
 * the door off (port 0) stay as they were. A mapped IPv4 destination (and every connect4 key)
 * goes to the IPv4 listener, a native IPv6 one to the IPv6 listener. */
static __always_inline __u16 acp_door_port(const struct acp_endpoint *dst, int allowed,
                                           __u32 mode, __u16 door_port4, __u16 door_port6) {
  if (allowed || mode != ACP_MODE_ENFORCE || dst->proto != ACP_PROTO_TCP) return 0;
  return acp_key_is_mapped4(dst) ? door_port4 : door_port6;
}

/* The synthetic addresses the session's DNS hands out (proxy/dns: SyntheticNames): IPv4
 * 198.18.0.0/15 (RFC 2544), IPv6 fd61:6370:646e::/64 (a ULA: "acpdn"). Nothing is there: a
 * TCP connect() to one is led to the door like any other, where the proxy knows the name. */
#define ACP_SYNTH4_A 198
#define ACP_SYNTH4_B 18 /* and 19: a /15 */
static __always_inline int acp_is_synthetic(const struct acp_endpoint *k) {
  if (acp_key_is_mapped4(k))
    return k->addr[12] == ACP_SYNTH4_A && (k->addr[13] & 0xfe) == ACP_SYNTH4_B;
  return k->addr[0] == 0xfd && k->addr[1] == 0x61 && k->addr[2] == 0x63 && k->addr[3] == 0x70 &&
         k->addr[4] == 0x64 && k->addr[5] == 0x6e && k->addr[6] == 0 && k->addr[7] == 0;
}

/* The DNS responder port a UDP datagram or connect() to port 53 is led to (the door's
 * companion: acp_config.dns_port4/6), or 0 when it is judged as ever. */
static __always_inline __u16 acp_dns_port(const struct acp_endpoint *dst, int allowed, __u32 mode,
                                          __u16 dns_port4, __u16 dns_port6) {
  if (allowed || mode != ACP_MODE_ENFORCE || dst->proto != ACP_PROTO_UDP || dst->port != 53)
    return 0;
  return acp_key_is_mapped4(dst) ? dns_port4 : dns_port6;
}

/* The door listener a destination is led to, as four network-order words: for a mapped IPv4
 * destination ::ffff:cfg->door_addr4 (127.0.0.1 when 0), else cfg->door_addr6 (::1 when all
 * zero). Word operations, no per-byte loops or byte-dependent branches: these run in every
 * door program, and the verifier's work (a session's start) grows with each branch. */
static __always_inline void acp_door_words(__u32 w[4], const struct acp_endpoint *dst,
                                           const struct acp_config *cfg) {
  if (acp_key_is_mapped4(dst)) {
    __u32 a4 = cfg->door_addr4;
    w[0] = 0;
    w[1] = 0;
    w[2] = acp_be_word(0, 0, 0xff, 0xff);
    w[3] = a4 != 0 ? a4 : acp_be_word(127, 0, 0, 1);
    return;
  }
  __builtin_memcpy(w, cfg->door_addr6, 16);
  if ((w[0] | w[1] | w[2] | w[3]) == 0) w[3] = acp_be_word(0, 0, 0, 1);
}

/* The same as a key; port as acp_door_port() or acp_dns_port() chose it. */
static __always_inline void acp_door_target(struct acp_endpoint *t,
                                            const struct acp_endpoint *dst, __u16 port,
                                            const struct acp_config *cfg) {
  __u32 w[4];
  acp_door_words(w, dst, cfg);
  __builtin_memcpy(t->addr, w, 16);
  t->port = port;
  t->proto = ACP_PROTO_TCP;
  t->pad = 0;
}

/* Whether a peer's address (IPv6 form) is the door listener of `recorded`'s family. */
static __always_inline int acp_is_door_address(const struct acp_endpoint *peer,
                                               const struct acp_endpoint *recorded,
                                               const struct acp_config *cfg) {
  __u32 w[4], p[4];
  acp_door_words(w, recorded, cfg);
  __builtin_memcpy(p, peer->addr, 16);
  return ((p[0] ^ w[0]) | (p[1] ^ w[1]) | (p[2] ^ w[2]) | (p[3] ^ w[3])) == 0;
}

/* Whether a connected socket's peer (IPv6 form, proto set) is the door listener of the
 * destination recorded for it: only then is the record about the socket's current
 * connection (a socket that later connected elsewhere keeps a stale record, never used). */
static __always_inline int acp_door_is_target(const struct acp_endpoint *peer,
                                              const struct acp_endpoint *recorded,
                                              const struct acp_config *cfg) {
  __u16 port = acp_key_is_mapped4(recorded) ? cfg->door_port4 : cfg->door_port6;
  if (port == 0 || peer->port != port || peer->proto != ACP_PROTO_TCP) return 0;
  return acp_is_door_address(peer, recorded, cfg);
}

/* Whether a UDP socket's peer or a datagram's source (IPv6 form; its proto is not looked at)
 * is the DNS responder its recorded port-53 destination was led to: then the agent is shown
 * the recorded address instead. */
static __always_inline int acp_dns_is_target(const struct acp_endpoint *peer,
                                             const struct acp_endpoint *recorded,
                                             const struct acp_config *cfg) {
  if (recorded->proto != ACP_PROTO_UDP || recorded->port != 53) return 0;
  __u16 port = acp_key_is_mapped4(recorded) ? cfg->dns_port4 : cfg->dns_port6;
  if (port == 0 || peer->port != port) return 0;
  return acp_is_door_address(peer, recorded, cfg);
}

/* ---- cgroup/connect_unix, cgroup/sendmsg_unix: local IPC ----
 * An agent that cannot reach the network may ask an unconfined local process to do it: the
 * Docker API socket, a D-Bus bus (systemd-run --user), a tmux or screen server, an ssh-agent,
 * X11. So an AF_UNIX connect() or addressed sendmsg() passes only when the name it gives is
 * exactly a unix_allow entry (--allow-unix); every other name, abstract ones included, is
 * refused. socketpair() and already-connected sockets name nothing and are not judged. */

/* A unix_allow entry whose value has this flag is refused like an unlisted name, but not
 * reported (in audit mode: let through, not reported): the probes every glibc program makes
 * and does without (the nscd socket). Still counted as denied. */
#define ACP_UNIX_QUIET_DENY 1u

/* Build the unix_allow key from sun_path as the call gave it. raw: the ACP_UNIX_PATH_MAX
 * bytes of sun_path (beyond addrlen they may be anything); addrlen: the sockaddr length the
 * caller passed (family included). As the kernel reads it (unix_mkname_bsd,
 * unix_find_abstract): a filesystem name ends at its first NUL or at addrlen, an abstract name
 * (raw[0] == 0) is exactly addrlen - 2 bytes. Returns 0 when there is no name at all
 * (addrlen <= 2; the kernel refuses that before the hook runs). */
static __always_inline int acp_unix_key(struct acp_unix_path *k, const __u8 *raw, __u32 addrlen) {
  __u32 n = addrlen > 2 ? addrlen - 2 : 0;
  if (n > ACP_UNIX_PATH_MAX) n = ACP_UNIX_PATH_MAX;
  /* One pass, no early exit and no branch on the bytes: a loop that broke out at the name's
   * end and a second that copied up to it made the verifier walk the copy once per possible
   * length, backtracking precision at every step (0.3-0.4 s per program, at every session
   * start). Here the end is arithmetic: live stays 1 while i < n and, for a filesystem name
   * (it ends at its first NUL), no NUL was seen; i, n and c are below 2^31, so bit 31 of a
   * difference is the comparison. */
  __u32 fs = n > 0 && raw[0] != 0;
  __u32 live = 1, len = 0;
ACP_NO_UNROLL
  for (__u32 i = 0; i < ACP_UNIX_PATH_MAX; i++) {
    __u32 c = raw[i];
    __u32 before_end = i - n;
    ACP_OPAQUE(before_end);
    live &= before_end >> 31;              /* i < n */
    live &= ~(fs & ((c - 1) >> 31)) & 1u;  /* not (filesystem name and c == 0) */
    k->path[i] = (__u8)(c * live);
    len += live;
  }
  k->len = len;
  return n > 0;
}

/* ---- the node gate (acp_gate.bpf.c, docs/node-agent.md) ----
 * Attached once at the kubelet's kubepods cgroup, it lets a socket call through only when the
 * pod cgroup of the calling process is classified (gate_class). The program walks the
 * ancestors below kubepods, at most ACP_GATE_DEPTH of them, one step at a time: */
#define ACP_GATE_STEP_REFUSE 0 /* not classified (or not a pod): unknown */
#define ACP_GATE_STEP_PASS 1   /* a classified pod (open, or walled by its own programs) */
#define ACP_GATE_STEP_DEEPER 2 /* a QoS class's cgroup: the pod is one level further down */

/* id: the ancestor's cgroup id at this level, 0 when the process's cgroup is not that deep (it
 * sits in kubepods or a QoS cgroup itself, which cgroup v2 forbids once they have children:
 * refused); cls: its gate_class entry, ACP_GATE_UNKNOWN when there is none. */
static __always_inline int acp_gate_step(__u64 id, __u32 cls) {
  if (id == 0) return ACP_GATE_STEP_REFUSE;
  if (cls == ACP_GATE_QOS) return ACP_GATE_STEP_DEEPER;
  if (cls == ACP_GATE_OPEN || cls == ACP_GATE_WALLED) return ACP_GATE_STEP_PASS;
  return ACP_GATE_STEP_REFUSE;
}

static __always_inline __u32 acp_proto_idx(__u8 proto) {
  if (proto == ACP_PROTO_TCP) return ACP_PRO_TCP;
  if (proto == ACP_PROTO_UDP) return ACP_PRO_UDP;
  return ACP_PRO_OTHER;
}

#endif /* ACP_DECIDE_H */
