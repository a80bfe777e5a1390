// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Where local IPC is judged: cgroup/connect_unix and cgroup/sendmsg_unix (Linux 6.7+).
 *
 * An agent that cannot reach the network may ask an unconfined local process to do it for
 * it: the Docker API socket, a D-Bus bus (systemd-run --user), a tmux or screen server, an
 * ssh-agent, X11. So a connect() of an AF_UNIX socket, and a sendto()/sendmsg() with an
 * address on an AF_UNIX datagram socket, pass only when the name is exactly an entry of
 * unix_allow (--allow-unix). Everything else, abstract names included, is refused with EPERM
 * (audit mode: reported and let through). The decision is acp_unix_key() + a map lookup.
 *
 * A separate object from acp_sock.bpf.c: reading sun_path needs the kernel's context
 * (kfunc bpf_cast_to_kern_ctx, CO-RE) and so kernel BTF, and the attach types exist only from
 * 6.7. Where this object does not load or attach, the IP wall still does, and the loader says
 * that local IPC is not walled (acp doctor, acp run, acp status). It shares the session's
 * maps (acp_maps.bpf.h).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "acp_abi.h"
#include "acp_decide.h"
#include "acp_maps.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The kernel's view of a sock_addr context (include/linux/filter.h). Only the fields read
 * here; preserve_access_index makes libbpf relocate them against the running kernel's BTF. */
struct sockaddr;
struct bpf_sock_addr_kern {
  struct sockaddr *uaddr;
  __u32 uaddrlen;
} __attribute__((preserve_access_index));

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

/* The name as read and as keyed: too big for the 512-byte BPF stack next to an event, so a
 * per-CPU scratch slot (a program runs to the end on one CPU). */
struct acp_unix_scratch {
  __u8 raw[2 + ACP_UNIX_PATH_MAX]; /* sun_family, sun_path */
  __u8 pad[2];
  struct acp_unix_path key;
};

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct acp_unix_scratch);
} unix_scratch SEC(".maps");

static __always_inline int judge_unix(struct bpf_sock_addr *ctx, __u8 hook) {
  struct bpf_sock_addr_kern *kctx = bpf_cast_to_kern_ctx(ctx);
  __u32 zero = 0;
  struct acp_unix_scratch *sc = bpf_map_lookup_elem(&unix_scratch, &zero);
  if (!sc) return 0; /* cannot happen (an array slot); refuse rather than guess */
  __u32 addrlen = kctx->uaddrlen;
  /* A failed read counts as no name, which no entry matches (fail closed). */
  if (bpf_probe_read_kernel(sc->raw, sizeof(sc->raw), kctx->uaddr) != 0) addrlen = 0;
  acp_unix_key(&sc->key, sc->raw + 2, addrlen);
  struct acp_unix_path *key = &sc->key;

  struct acp_config *cfg = get_config();
  __u32 mode = cfg ? cfg->mode : ACP_MODE_ENFORCE; /* no config: enforce (fail closed) */
  struct acp_allow_value *v = key->len > 0 ? bpf_map_lookup_elem(&unix_allow, key) : NULL;
  int quiet = v && (v->flags & ACP_UNIX_QUIET_DENY);
  __u8 verdict = acp_verdict_for(v && !quiet, mode);
  count(ACP_FAM_UNIX, ACP_PRO_OTHER, verdict != ACP_VERDICT_ALLOW);
  if (verdict == ACP_VERDICT_ALLOW) return 1;
  if (quiet) return verdict == ACP_VERDICT_AUDIT_DENY ? 1 : 0;

  struct acp_event e = {};
  fill_event(&e, cfg);
  __builtin_memcpy(e.addr, key->path, sizeof(e.addr));
  e.port = (__u16)key->len;
  e.hook = hook;
  e.verdict = verdict;
  e.family = ACP_AF_UNIX;
  e.sock_type = (__u16)ctx->type;
  e.protocol = 0;
  report(&e);
  return verdict == ACP_VERDICT_AUDIT_DENY ? 1 : 0;
}

/* libbpf before 1.3 does not know these section names: the loader sets the program type
 * (cgroup_sock_addr) and the attach type (BPF_CGROUP_UNIX_CONNECT/SENDMSG) itself. */
SEC("cgroup/connect_unix")
int acp_connect_unix(struct bpf_sock_addr *ctx) { return judge_unix(ctx, ACP_HOOK_CONNECT_UNIX); }

SEC("cgroup/sendmsg_unix")
int acp_sendmsg_unix(struct bpf_sock_addr *ctx) { return judge_unix(ctx, ACP_HOOK_SENDMSG_UNIX); }
