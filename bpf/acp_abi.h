/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * ACP kernel <-> user-space ABI: the one header both sides compile.
 *
 * Every type here is fixed-width and laid out without implicit padding; the C++ side
 * static_asserts each size and offset (src/kernel/abi_check.cpp), so a change that
 * shifts a field fails the build instead of corrupting a map.
 *
 * Addresses: every endpoint is stored as 16 bytes in IPv6 form. An IPv4 address a.b.c.d
 * is stored as the IPv4-mapped IPv6 address ::ffff:a.b.c.d (RFC 4291 section 2.5.5.2).
 * That makes connect6() to ::ffff:127.0.0.1 and connect4() to 127.0.0.1 the same key: a
 * mapped address is judged exactly as the IPv4 address it carries.
 * Ports are in host byte order in every struct here.
 */
#ifndef ACP_ABI_H
#define ACP_ABI_H

#include <linux/types.h>

/* Limits. Each one bounds a resource the agent or the operator controls. */
#define ACP_MAX_ALLOW 64      /* allow-map entries per session (proxy endpoints + --allow) */
#define ACP_RECENT_SLOTS 32   /* denied events kept in the map for `acp status` */
#define ACP_RINGBUF_BYTES (256 * 1024) /* event ring buffer; a power of two, page multiple */
#define ACP_COMM_LEN 16       /* TASK_COMM_LEN */
/* Sockets whose first refused packet the egress program remembers (LRU, by socket cookie),
 * so that a refused stream reports once, not once per retransmission. Eviction only means a
 * later refused packet of an old socket is reported again. */
#define ACP_EGRESS_REPORTED_SLOTS 1024
#define ACP_MAX_UNIX_ALLOW 64   /* unix_allow entries per session (--allow-unix) */
#define ACP_UNIX_PATH_MAX 108   /* sizeof(sockaddr_un.sun_path) */
/* Transparent-door connections whose original destination is held for the proxy at once
 * (door_origin entries: one per led-in TCP connection until it closes). When full, a new
 * led-in connection has no entry and the proxy refuses it (fail closed). */
#define ACP_DOOR_SLOTS 8192

/* The node gate (acp node-agent, bpf/acp_gate.bpf.c): cgroups the agent has classified at
 * once. A node runs at most a few hundred pods; each has one entry, each QoS cgroup one. When
 * full, a new pod stays unclassified and refused (fail closed) and the agent says so. */
#define ACP_GATE_MAX_CGROUPS 16384
/* Levels below the kubepods cgroup where a pod's cgroup can sit: Guaranteed pods directly
 * under it, the others under their QoS class's cgroup. */
#define ACP_GATE_DEPTH 2

/* Protocols as judged: a subset of IPPROTO_*. */
#define ACP_PROTO_TCP 6
#define ACP_PROTO_UDP 17

enum acp_mode {
  ACP_MODE_ENFORCE = 0, /* deny with EPERM */
  ACP_MODE_AUDIT = 1,   /* report what would be denied, let it through */
};

enum acp_verdict {
  ACP_VERDICT_ALLOW = 0,
  ACP_VERDICT_DENY = 1,       /* denied (enforce mode) */
  ACP_VERDICT_AUDIT_DENY = 2, /* would be denied; audit mode let it through */
};

/* Which hook saw the attempt. */
enum acp_hook {
  ACP_HOOK_CONNECT4 = 0,
  ACP_HOOK_CONNECT6 = 1,
  ACP_HOOK_SENDMSG4 = 2,
  ACP_HOOK_SENDMSG6 = 3,
  ACP_HOOK_SOCK_CREATE = 4,
  /* cgroup_skb/egress: a packet leaving a socket of the session (e.g. the SYN-ACK of a
   * connection the agent accepted) to a destination that is neither loopback nor allowed.
   * pid, tid and comm are 0: the packet may be sent from softirq context (a SYN-ACK answers
   * a SYN), where "current" is not the agent; uid is the socket owner's. */
  ACP_HOOK_EGRESS = 5,
  /* cgroup/connect_unix and cgroup/sendmsg_unix (Linux 6.7+): connect() of an AF_UNIX socket
   * and sendto()/sendmsg() with an address on an AF_UNIX datagram socket. The event's addr
   * holds the first 16 bytes of the path as given (abstract names start with a NUL), port its
   * length in bytes (acp_unix_key()). */
  ACP_HOOK_CONNECT_UNIX = 6,
  ACP_HOOK_SENDMSG_UNIX = 7,
  ACP_HOOK_MAX = 8,
};

/* Families as counted (index into the counters). */
enum acp_family_idx {
  ACP_FAM_INET = 0,
  ACP_FAM_INET6 = 1, /* a mapped IPv4 destination counts as INET */
  ACP_FAM_OTHER = 2, /* sock_create of another family */
  ACP_FAM_UNIX = 3,  /* connect_unix / sendmsg_unix (always counted as ACP_PRO_OTHER) */
  ACP_FAM_MAX = 4,
};

enum acp_proto_idx {
  ACP_PRO_TCP = 0,
  ACP_PRO_UDP = 1,
  ACP_PRO_OTHER = 2, /* raw, ICMP, SCTP, ... (sock_create) */
  ACP_PRO_MAX = 3,
};

/* counters map: a per-CPU array indexed by acp_counter_index(). */
/* Casts: C++20 deprecates arithmetic between two different enumeration types. */
#define ACP_COUNTER_SLOTS ((__u32)ACP_FAM_MAX * (__u32)ACP_PRO_MAX * 2)

/* allow map key: exactly one (address, port, protocol). No wildcards, no prefixes:
 * a miss is a deny. */
struct acp_endpoint {
  __u8 addr[16]; /* IPv6 form, network byte order; IPv4 as ::ffff:a.b.c.d */
  __u16 port;    /* host byte order */
  __u8 proto;    /* ACP_PROTO_TCP or ACP_PROTO_UDP */
  __u8 pad;      /* always 0: the key is hashed as bytes */
};

/* allow map value. */
struct acp_allow_value {
  __u32 flags; /* reserved, 0 */
};

/* unix_allow key: one AF_UNIX name, exactly as acp_unix_key() normalizes what connect() or
 * sendmsg() named. A filesystem path is the bytes before its first NUL; an abstract name
 * (path[0] == 0) is all addrlen - 2 bytes, NULs included. Bytes from len on are zero.
 * No prefixes, no resolution: a relative path, a symlink's name or "/run/../run/x" is a
 * different key from the path it leads to (and so refused unless listed itself). */
struct acp_unix_path {
  __u32 len;                     /* bytes of path that count */
  __u8 path[ACP_UNIX_PATH_MAX];  /* zero-padded */
};

/* config map (array, one slot). Read on every attempt, so a mode switch takes effect at
 * once for all sockets of the session. */
struct acp_config {
  __u32 mode;       /* enum acp_mode */
  /* The transparent door (host byte order; 0 = off: a refused TCP connect() fails with EPERM
   * as ever). When on, in enforce mode, a TCP connect4/connect6 to a destination that is not
   * an allow_map entry is rewritten to the session proxy's transparent listener,
   * 127.0.0.1:door_port4 (for ::ffff:a.b.c.d on an IPv6 socket: ::ffff:127.0.0.1) or
   * [::1]:door_port6 (or door_addr4/6, below), and its original destination recorded
   * (door_origin). */
  __u16 door_port4;
  __u16 door_port6;
  __u64 session_id; /* random; stamps every event so readers can tell sessions apart */
  /* The session's DNS responder, beside the door (host byte order; 0 = none). With the door
   * on, a UDP connect4/6 or sendmsg4/6 to port 53 of any address the allow map does not hold
   * is rewritten to 127.0.0.1:dns_port4 (::ffff:127.0.0.1 for a mapped destination) or
   * [::1]:dns_port6, the original kept with the socket; recvmsg4/6 and getpeername4/6 show
   * the agent the address it asked. */
  __u16 dns_port4;
  __u16 dns_port6;
  __u32 pad;        /* 0 */
  /* Where the door and the DNS responder listen (network byte order). 0 / all zero: the
   * session's loopback (127.0.0.1, ::1), as for `acp run`. The node agent's pods live in
   * network namespaces of their own, where loopback is the pod's: their door is on the node
   * address the pod reaches (docs/node-agent.md). */
  __u32 door_addr4;
  __u32 pad2;       /* 0 */
  __u8 door_addr6[16];
};

/* door_origin value: where a connection the door led in was going. Keyed by the client
 * socket's local (address, port) as an acp_endpoint (IPv6 form, proto ACP_PROTO_TCP): exactly
 * the peer the proxy's accept() returns. Written by the sock_ops program before the SYN is
 * sent, removed when that socket closes. */
struct acp_door_origin {
  struct acp_endpoint dst; /* the destination connect() named; proto ACP_PROTO_TCP */
  __u32 pad;               /* 0 */
  __u64 cookie;            /* socket cookie of the client socket: whose entry this is */
};

/* gate_class value: what the node agent knows about a cgroup below kubepods. A cgroup with no
 * entry is unknown: every socket of a process in it (or below) is refused, unless the gate's
 * config says unknown_allow. */
enum acp_gate_class {
  ACP_GATE_UNKNOWN = 0, /* never stored: the absence of an entry */
  ACP_GATE_QOS = 1,     /* a QoS class's cgroup (kubepods-burstable.slice, burstable): look deeper */
  ACP_GATE_OPEN = 2,    /* a pod without acp.dev/confine: the gate lets it through */
  ACP_GATE_WALLED = 3,  /* a labelled pod whose own wall stands: the gate lets it through to it */
};

/* gate_config (array, one slot). */
struct acp_gate_config {
  __u64 kubepods_id;    /* cgroup id (inode) of the kubepods cgroup the gate is attached to */
  __u32 kubepods_level; /* its depth in the cgroup v2 hierarchy (the root is 0) */
  __u32 unknown_allow;  /* 1: --unknown-pods=allow, unclassified pods pass (and are counted) */
};

/* gate_counters (per-CPU array) slots. */
enum acp_gate_counter {
  ACP_GATE_CNT_REFUSED = 0,         /* attempts refused: the pod was not classified */
  ACP_GATE_CNT_UNKNOWN_ALLOWED = 1, /* attempts let through unclassified (unknown_allow) */
  ACP_GATE_CNT_MAX = 2,
};

/* One attempt the programs refused (or, in audit mode, would have refused). Sent through
 * the ring buffer and kept in the recent-events array. */
struct acp_event {
  __u64 ts_ns;      /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
  __u64 session_id;
  __u32 pid;        /* thread group id (what user space calls the pid) */
  __u32 tid;
  __u32 uid;
  __u32 cgroup_hint; /* reserved */
  char comm[ACP_COMM_LEN];
  __u8 addr[16];    /* destination, IPv6 form as in acp_endpoint; zero for sock_create */
  __u16 port;       /* host byte order; 0 for sock_create */
  __u8 hook;        /* enum acp_hook */
  __u8 verdict;     /* enum acp_verdict */
  __u16 family;     /* AF_INET, AF_INET6 or, for sock_create, the family asked for */
  __u16 sock_type;  /* SOCK_STREAM, SOCK_DGRAM, SOCK_RAW ...; egress: from the protocol */
  __u16 protocol;   /* IPPROTO_* as asked for (sock_create), as judged, or (egress) the
                       packet's IP protocol / IPv6 next header */
  __u16 pad[3];
};

/* The recent-events array has ACP_RECENT_SLOTS events plus this header in slot 0 of a
 * second one-element array (recent_head): the next slot to write. Writers race benignly;
 * readers sort by ts_ns. */
struct acp_recent_head {
  __u64 next;
};

static inline __u32 acp_counter_index(__u32 fam, __u32 proto, __u32 denied) {
  return (fam * ACP_PRO_MAX + proto) * 2 + (denied ? 1 : 0);
}

#endif /* ACP_ABI_H */
