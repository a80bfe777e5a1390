// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Where a connect() is judged.
 *
 * cgroup/connect4, connect6, sendmsg4, sendmsg6 and sock_create programs, attached to one
 * session's cgroup v2. A socket of the agent (or of any descendant, they inherit the cgroup)
 * may reach only the exact (address, port, protocol) entries of allow_map: by default the
 * session proxy's 127.0.0.1 and [::1] over TCP. Everything else is refused with EPERM (or,
 * in audit mode, reported and let through). Each program is thin: the decision is in
 * acp_decide.h, which the unit tests compile for the host.
 *
 * cgroup_skb/egress is the backstop for what those hooks never see: a connection the agent
 * accepted (listen() + accept() names no destination). Every IP packet leaving a session
 * socket must go to loopback or exactly to an allow_map entry, or it is dropped.
 *
 * Local IPC (AF_UNIX connect/sendmsg) is judged by the programs of acp_unix.bpf.c, a separate
 * object on the same maps (acp_maps.bpf.h): they need Linux 6.7+ and kernel BTF, and this
 * wall must keep loading where they cannot.
 *
 * One skeleton instance per session: each session has its own maps, so two sessions never
 * see each other's endpoints or counters.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "acp_abi.h"
#include "acp_decide.h"
#include "acp_maps.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* ---- the transparent door (acp_decide.h: acp_door_port) ---- */

/* The original destination of a socket the door led in, as connect4/6 saw it. Only these
 * programs write it (the agent reaches no map); it goes with the socket. */
struct {
  __uint(type, BPF_MAP_TYPE_SK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, int);
  __type(value, struct acp_endpoint);
} door_dst SEC(".maps");

/* The same, published by the client's local (address, port) for the proxy (acp_abi.h). */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __uint(max_entries, ACP_DOOR_SLOTS);
  __type(key, struct acp_endpoint);
  __type(value, struct acp_door_origin);
} door_origin SEC(".maps");

/* Leads the connect() to the door (a UDP connect() or datagram to port 53: to the DNS
 * responder): records where it was going, then rewrites the address the kernel connects
 * to. Returns 0 when the record cannot be made: the caller refuses. */
static __always_inline int door_redirect(struct bpf_sock_addr *ctx,
                                         const struct acp_endpoint *key, __u16 door, __u8 hook,
                                         const struct acp_config *cfg) {
  struct bpf_sock *sk = ctx->sk;
  if (!sk) return 0;
  struct acp_endpoint *rec = bpf_sk_storage_get(&door_dst, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
  if (!rec) return 0;
  __builtin_memcpy(rec, key, sizeof(*rec));
  __u32 w[4];
  acp_door_words(w, key, cfg);
  ctx->user_port = bpf_htons(door);
  /* The barriers keep clang from merging the two families' stores of w[3] into one store
   * through a computed context pointer, which the verifier refuses. */
  if (hook == ACP_HOOK_CONNECT4 || hook == ACP_HOOK_SENDMSG4) {
    ctx->user_ip4 = w[3];
    __asm__ volatile("" ::: "memory");
  } else {
    ctx->user_ip6[0] = w[0];
    ctx->user_ip6[1] = w[1];
    ctx->user_ip6[2] = w[2];
    ctx->user_ip6[3] = w[3];
    __asm__ volatile("" ::: "memory");
  }
  return 1;
}

/* Judge one destination. Returns 1 (let the call proceed, possibly led to the door) or 0 (the
 * kernel fails the call with EPERM). door: a constant, 1 only in the acp_door_connect4/6
 * programs, so that the wall without the door is the very bytecode it was (no socket-storage
 * helper, no extra verifier work). */
static __always_inline int judge(struct bpf_sock_addr *ctx, const struct acp_endpoint *key,
                                 __u32 fam_idx, __u8 hook, int door_on) {
  struct acp_config *cfg = get_config();
  __u32 mode = cfg ? cfg->mode : ACP_MODE_ENFORCE; /* no config: enforce (fail closed) */
  int hit = bpf_map_lookup_elem(&allow_map, key) != NULL;
  if (door_on && cfg) { /* only the door programs: TCP to the door, UDP port 53 to the DNS */
    __u16 door = acp_door_port(key, hit, mode, cfg->door_port4, cfg->door_port6);
    if (door == 0) door = acp_dns_port(key, hit, mode, cfg->dns_port4, cfg->dns_port6);
    if (door != 0 && door_redirect(ctx, key, door, hook, cfg)) {
      count(fam_idx, acp_proto_idx(key->proto), 0); /* led in: the proxy judges and audits it */
      return 1;
    }
  }
  __u8 verdict = acp_verdict_for(hit, mode);
  count(fam_idx, acp_proto_idx(key->proto), verdict != ACP_VERDICT_ALLOW);
  if (verdict == ACP_VERDICT_ALLOW) return 1;
  /* UDP to a synthetic address of the session's DNS: glibc's getaddrinfo probes each answer
   * with a UDP connect() (RFC 6724 sorting), QUIC tries before TCP. Refused and counted, not
   * reported: one line per lookup would bury the refusals that matter. */
  if (door_on && verdict == ACP_VERDICT_DENY && key->proto == ACP_PROTO_UDP &&
      acp_is_synthetic(key))
    return 0;

  struct acp_event e = {};
  fill_event(&e, cfg);
  __builtin_memcpy(e.addr, key->addr, sizeof(e.addr));
  e.port = key->port;
  e.hook = hook;
  e.verdict = verdict;
  e.family = (__u16)ctx->user_family;
  e.sock_type = (__u16)ctx->type;
  e.protocol = key->proto;
  report(&e);
  return verdict == ACP_VERDICT_AUDIT_DENY ? 1 : 0;
}

static __always_inline int judge4(struct bpf_sock_addr *ctx, __u8 hook, int door_on) {
  struct acp_endpoint key;
  __u8 proto = acp_proto_of(ctx->type, ctx->protocol);
  acp_key_from_ip4(&key, ctx->user_ip4, bpf_ntohs((__u16)ctx->user_port), proto);
  return judge(ctx, &key, ACP_FAM_INET, hook, door_on);
}

static __always_inline int judge6(struct bpf_sock_addr *ctx, __u8 hook, int door_on) {
  struct acp_endpoint key;
  __u32 ip6[4];
  /* Narrow loads one word at a time: the verifier allows 4-byte reads of user_ip6[]. */
  ip6[0] = ctx->user_ip6[0];
  ip6[1] = ctx->user_ip6[1];
  ip6[2] = ctx->user_ip6[2];
  ip6[3] = ctx->user_ip6[3];
  __u8 proto = acp_proto_of(ctx->type, ctx->protocol);
  acp_key_from_ip6(&key, ip6, bpf_ntohs((__u16)ctx->user_port), proto);
  /* A mapped IPv4 destination is the IPv4 destination: same key, counted as IPv4. */
  return judge(ctx, &key, acp_key_is_mapped4(&key) ? ACP_FAM_INET : ACP_FAM_INET6, hook,
               door_on);
}

SEC("cgroup/connect4")
int acp_connect4(struct bpf_sock_addr *ctx) { return judge4(ctx, ACP_HOOK_CONNECT4, 0); }

SEC("cgroup/connect6")
int acp_connect6(struct bpf_sock_addr *ctx) { return judge6(ctx, ACP_HOOK_CONNECT6, 0); }

/* The same with the transparent door: loaded instead of the two above when it is on
 * (SockPrograms), and pinned under the same names (link_connect4, link_connect6). */
SEC("cgroup/connect4")
int acp_door_connect4(struct bpf_sock_addr *ctx) { return judge4(ctx, ACP_HOOK_CONNECT4, 1); }

SEC("cgroup/connect6")
int acp_door_connect6(struct bpf_sock_addr *ctx) { return judge6(ctx, ACP_HOOK_CONNECT6, 1); }

/* Unconnected UDP: sendto()/sendmsg() with a destination. Connected UDP was judged at
 * connect(). */
SEC("cgroup/sendmsg4")
int acp_sendmsg4(struct bpf_sock_addr *ctx) { return judge4(ctx, ACP_HOOK_SENDMSG4, 0); }

SEC("cgroup/sendmsg6")
int acp_sendmsg6(struct bpf_sock_addr *ctx) { return judge6(ctx, ACP_HOOK_SENDMSG6, 0); }

/* With the door on: the same, with port-53 datagrams led to the session's DNS responder. */
SEC("cgroup/sendmsg4")
int acp_door_sendmsg4(struct bpf_sock_addr *ctx) { return judge4(ctx, ACP_HOOK_SENDMSG4, 1); }

SEC("cgroup/sendmsg6")
int acp_door_sendmsg6(struct bpf_sock_addr *ctx) { return judge6(ctx, ACP_HOOK_SENDMSG6, 1); }

SEC("cgroup/sock_create")
int acp_sock_create(struct bpf_sock *ctx) {
  __u32 family = ctx->family, type = ctx->type, protocol = ctx->protocol;
  if (acp_socket_allowed(family, type, protocol)) return 1;

  struct acp_config *cfg = get_config();
  __u32 mode = cfg ? cfg->mode : ACP_MODE_ENFORCE;
  __u8 verdict = acp_verdict_for(0, mode);
  __u32 fam_idx = family == ACP_AF_INET ? ACP_FAM_INET
                  : family == ACP_AF_INET6 ? ACP_FAM_INET6 : ACP_FAM_OTHER;
  count(fam_idx, ACP_PRO_OTHER, 1);

  struct acp_event e = {};
  fill_event(&e, cfg);
  e.hook = ACP_HOOK_SOCK_CREATE;
  e.verdict = verdict;
  e.family = (__u16)family;
  e.sock_type = (__u16)type;
  e.protocol = (__u16)protocol;
  report(&e);
  return verdict == ACP_VERDICT_AUDIT_DENY ? 1 : 0;
}

/* Packets leaving any socket of the session (return 1: send, 0: drop; a dropped packet
 * fails the send with EPERM where there is a sender to tell). The data starts at the network
 * header. Only the helpers every 6.x kernel allows cgroup_skb are used: no
 * bpf_get_current_pid_tgid()/comm (not offered to cgroup_skb before 6.4, and meaningless for
 * a SYN-ACK sent from softirq), so events carry pid 0 and the socket owner's uid. */
SEC("cgroup_skb/egress")
int acp_egress(struct __sk_buff *skb) {
  struct acp_endpoint key = {};
  __u8 l4proto = 0;
  __u32 l4_off = 0;
  int header_ok = 0;
  int src_loopback = 1; /* IPv6: acp_ip6_src_is_loopback() */
  __u16 family;
  if (skb->protocol == bpf_htons(ACP_ETH_P_IP)) {
    __u8 h[ACP_IP4_HDR_LEN];
    family = ACP_AF_INET;
    if (bpf_skb_load_bytes(skb, 0, h, sizeof(h)) == 0)
      header_ok = acp_parse_ip4(h, &key, &l4proto, &l4_off);
  } else if (skb->protocol == bpf_htons(ACP_ETH_P_IPV6)) {
    __u8 h[ACP_IP6_HDR_LEN];
    family = ACP_AF_INET6;
    if (bpf_skb_load_bytes(skb, 0, h, sizeof(h)) == 0) {
      header_ok = acp_parse_ip6(h, &key, &l4proto, &l4_off);
      src_loopback = acp_ip6_src_is_loopback(h);
    }
  } else {
    return 1; /* not IP: nothing the sock_addr hooks judge either */
  }
  /* The common case (the agent talking to the proxy) costs no map lookup. To loopback from a
   * source the agent forged: not judgeable, dropped (acp_ip6_src_is_loopback). */
  if (header_ok && acp_key_is_loopback(&key)) {
    if (src_loopback) return 1;
    header_ok = 0;
  }

  __u8 tcp_flags = 0;
  if (header_ok && key.proto != 0) {
    __u8 l4[ACP_TCP_FLAGS_LEN];
    int rc = key.proto == ACP_PROTO_TCP
                 ? bpf_skb_load_bytes(skb, l4_off, l4, ACP_TCP_FLAGS_LEN)
                 : bpf_skb_load_bytes(skb, l4_off, l4, ACP_UDP_PORTS_LEN);
    if (rc == 0) {
      key.port = acp_l4_dport(l4);
      if (key.proto == ACP_PROTO_TCP) tcp_flags = l4[13];
    } else {
      key.proto = 0; /* truncated transport header: not judgeable */
    }
  }
  struct acp_config *cfg = get_config();
  __u32 mode = cfg ? cfg->mode : ACP_MODE_ENFORCE; /* no config: enforce (fail closed) */
  int hit = key.proto != 0 && bpf_map_lookup_elem(&allow_map, &key) != NULL;
  __u8 verdict = acp_egress_verdict(header_ok, &key, hit, mode);
  if (verdict == ACP_VERDICT_ALLOW) return 1;

  __u64 cookie = bpf_get_socket_cookie(skb);
  int seen = cookie != 0 && bpf_map_lookup_elem(&egress_reported, &cookie) != NULL;
  if (acp_egress_should_report(cookie, seen, l4proto, tcp_flags)) {
    if (cookie != 0) {
      __u8 one = 1;
      bpf_map_update_elem(&egress_reported, &cookie, &one, BPF_ANY);
    }
    __u32 fam_idx = family == ACP_AF_INET || acp_key_is_mapped4(&key) ? ACP_FAM_INET
                                                                      : ACP_FAM_INET6;
    count(fam_idx, acp_proto_idx(key.proto), 1);
    struct acp_event e = {};
    e.ts_ns = bpf_ktime_get_ns();
    e.session_id = cfg ? cfg->session_id : 0;
    e.uid = bpf_get_socket_uid(skb);
    __builtin_memcpy(e.addr, key.addr, sizeof(e.addr));
    e.port = key.port;
    e.hook = ACP_HOOK_EGRESS;
    e.verdict = verdict;
    e.family = family;
    e.sock_type = key.proto == ACP_PROTO_TCP   ? ACP_SOCK_STREAM
                  : key.proto == ACP_PROTO_UDP ? ACP_SOCK_DGRAM
                                               : 0;
    e.protocol = l4proto;
    report(&e);
  }
  return verdict == ACP_VERDICT_AUDIT_DENY ? 1 : 0;
}

/* ---- the transparent door: sock_ops and getpeername (loaded only when the door is on) ---- */

/* The socket's local and remote endpoints as keys, from sock_ops. Every context field is
 * loaded before the family is looked at: clang would otherwise pick the IPv4 or the IPv6
 * field through a computed context pointer, which the verifier refuses. local_port is host
 * order; remote_port holds the network-order port in its top half. */
static __always_inline void sockops_key(struct acp_endpoint *k, __u32 family, __u32 ip4,
                                        const __u32 ip6[4], __u16 port) {
  if (family == ACP_AF_INET)
    acp_key_from_ip4(k, ip4, port, ACP_PROTO_TCP);
  else
    acp_key_from_ip6(k, ip6, port, ACP_PROTO_TCP);
}

static __always_inline void sockops_local_key(struct bpf_sock_ops *ctx, struct acp_endpoint *k) {
  __u32 ip6[4];
  ip6[0] = ctx->local_ip6[0];
  ip6[1] = ctx->local_ip6[1];
  ip6[2] = ctx->local_ip6[2];
  ip6[3] = ctx->local_ip6[3];
  __u32 ip4 = ctx->local_ip4;
  ACP_OPAQUE(ip4);
  sockops_key(k, ctx->family, ip4, ip6, (__u16)ctx->local_port);
}

static __always_inline void sockops_remote_key(struct bpf_sock_ops *ctx,
                                               struct acp_endpoint *k) {
  __u32 ip6[4];
  ip6[0] = ctx->remote_ip6[0];
  ip6[1] = ctx->remote_ip6[1];
  ip6[2] = ctx->remote_ip6[2];
  ip6[3] = ctx->remote_ip6[3];
  __u32 ip4 = ctx->remote_ip4;
  ACP_OPAQUE(ip4);
  sockops_key(k, ctx->family, ip4, ip6, (__u16)bpf_ntohl(ctx->remote_port));
}

/* Publishes a led-in socket's original destination by its local (address, port). At
 * TCP_CONNECT_CB the kernel has bound the local port and not yet sent the SYN, so the entry
 * exists before the proxy can accept the connection: no race. Then asks for the socket's
 * state changes, so that its entry goes when it closes. */
static __always_inline void door_publish(struct bpf_sock_ops *ctx, const struct acp_config *cfg) {
  struct bpf_sock *sk = ctx->sk;
  if (!sk) return;
  struct acp_endpoint *rec = bpf_sk_storage_get(&door_dst, sk, 0, 0);
  if (!rec) return; /* not led in (the common case) */
  struct acp_endpoint peer;
  sockops_remote_key(ctx, &peer);
  if (!acp_door_is_target(&peer, rec, cfg)) return;
  struct acp_endpoint local;
  sockops_local_key(ctx, &local);
  struct acp_door_origin o = {};
  __builtin_memcpy(&o.dst, rec, sizeof(o.dst));
  o.cookie = bpf_get_socket_cookie(ctx);
  /* A full map leaves no entry: the proxy refuses the connection it cannot place. */
  bpf_map_update_elem(&door_origin, &local, &o, BPF_ANY);
  bpf_sock_ops_cb_flags_set(ctx, BPF_SOCK_OPS_STATE_CB_FLAG);
}

/* Removes the entry of a closing socket, if it is still this socket's. */
static __always_inline void door_forget(struct bpf_sock_ops *ctx) {
  struct acp_endpoint local;
  sockops_local_key(ctx, &local);
  struct acp_door_origin *o = bpf_map_lookup_elem(&door_origin, &local);
  if (o && o->cookie == bpf_get_socket_cookie(ctx)) bpf_map_delete_elem(&door_origin, &local);
}

/* sock_ops rather than cgroup/sock_release or a later callback: TCP_CONNECT_CB is the one
 * point where the local port is known and nothing has reached the proxy yet, and STATE_CB
 * (TCP_CLOSE) removes the entry while the 4-tuple is still held (TIME_WAIT follows), so a new
 * connection from the same port always publishes after the old entry went. */
SEC("sockops")
int acp_door_sockops(struct bpf_sock_ops *ctx) {
  if (ctx->op == BPF_SOCK_OPS_TCP_CONNECT_CB) {
    struct acp_config *cfg = get_config();
    if (cfg) door_publish(ctx, cfg);
  } else if (ctx->op == BPF_SOCK_OPS_STATE_CB && ctx->args[1] == BPF_TCP_CLOSE) {
    door_forget(ctx);
  }
  return 1;
}

/* getpeername() of a led-in socket returns the destination the agent named, not the door;
 * only while the socket is connected to the door listener its record names. */
static __always_inline struct acp_endpoint *door_record_for_peer(struct bpf_sock_addr *ctx,
                                                                const struct acp_endpoint *peer) {
  struct acp_config *cfg = get_config();
  struct bpf_sock *sk = ctx->sk;
  if (!cfg || !sk) return NULL;
  struct acp_endpoint *rec = bpf_sk_storage_get(&door_dst, sk, 0, 0);
  if (!rec) return NULL;
  if (rec->proto == ACP_PROTO_UDP)
    return acp_dns_is_target(peer, rec, cfg) ? rec : NULL;
  if (!acp_door_is_target(peer, rec, cfg)) return NULL;
  return rec;
}

/* getpeername4 and recvmsg4 (a datagram's source) alike: the door or the DNS responder is
 * shown as the address the agent asked for. recvmsg programs must return 1. */
static __always_inline int show_original4(struct bpf_sock_addr *ctx) {
  struct acp_endpoint peer;
  acp_key_from_ip4(&peer, ctx->user_ip4, bpf_ntohs((__u16)ctx->user_port), ACP_PROTO_TCP);
  struct acp_endpoint *rec = door_record_for_peer(ctx, &peer);
  if (!rec) return 1;
  __u32 ip;
  __builtin_memcpy(&ip, &rec->addr[12], sizeof(ip));
  ctx->user_ip4 = ip;
  ctx->user_port = bpf_htons(rec->port);
  return 1;
}

static __always_inline int show_original6(struct bpf_sock_addr *ctx) {
  struct acp_endpoint peer;
  __u32 ip6[4];
  ip6[0] = ctx->user_ip6[0];
  ip6[1] = ctx->user_ip6[1];
  ip6[2] = ctx->user_ip6[2];
  ip6[3] = ctx->user_ip6[3];
  acp_key_from_ip6(&peer, ip6, bpf_ntohs((__u16)ctx->user_port), ACP_PROTO_TCP);
  struct acp_endpoint *rec = door_record_for_peer(ctx, &peer);
  if (!rec) return 1;
  __u32 w[4];
  __builtin_memcpy(w, rec->addr, sizeof(w));
  ctx->user_ip6[0] = w[0];
  ctx->user_ip6[1] = w[1];
  ctx->user_ip6[2] = w[2];
  ctx->user_ip6[3] = w[3];
  ctx->user_port = bpf_htons(rec->port);
  return 1;
}

SEC("cgroup/getpeername4")
int acp_getpeername4(struct bpf_sock_addr *ctx) { return show_original4(ctx); }

SEC("cgroup/getpeername6")
int acp_getpeername6(struct bpf_sock_addr *ctx) { return show_original6(ctx); }

/* A reply of the session's DNS comes from the address the agent sent its query to (a
 * resolver such as glibc's drops a reply from any other). */
SEC("cgroup/recvmsg4")
int acp_recvmsg4(struct bpf_sock_addr *ctx) { return show_original4(ctx); }

SEC("cgroup/recvmsg6")
int acp_recvmsg6(struct bpf_sock_addr *ctx) { return show_original6(ctx); }
