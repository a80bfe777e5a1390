// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The node gate: the node agent's wall for pods it has not classified yet.
 *
 * One set of these programs is attached (multi-attach, bpf_link) to the kubelet's kubepods
 * cgroup, so it runs for every socket call of every pod on the node, before and besides the
 * pod's own wall (acp_sock.bpf.c, attached to a labelled pod's cgroup: the kernel runs both and
 * a call passes only if both let it). It lets a call through only when the calling process's
 * pod cgroup is in gate_class: an unlabelled pod (open), or a labelled one whose own wall
 * already stands (walled). Every other pod is refused (EPERM): a pod the kubelet just made,
 * before the agent could look at it, and every pod made while the agent is away. The agent
 * fills gate_class as it sees pod cgroups appear (inotify) and learns their labels (the API
 * watch); the links and maps are pinned, so the gate outlives the agent.
 *
 * The pod's cgroup is found by level, not by path: kubepods sits at gate_config.kubepods_level
 * of the cgroup v2 hierarchy, QoS cgroups one level down, pods one or two levels down. The
 * ancestor at kubepods_level must be kubepods_id itself, or the gate was placed wrongly and
 * nothing counts as known.
 *
 * The hooks: sock_create (socket() of AF_INET/AF_INET6: an unclassified pod gets no IP socket
 * at all, so nothing it could do with one, TCP, UDP, raw, accept, needs judging), and
 * connect4/6 and sendmsg4/6 for sockets made before a pod lost its classification (the pod
 * object deleted while a process lingers).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "acp_abi.h"
#include "acp_decide.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, ACP_GATE_MAX_CGROUPS);
  __type(key, __u64); /* cgroup id */
  __type(value, __u32); /* enum acp_gate_class */
} gate_class SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct acp_gate_config);
} gate_config SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, ACP_GATE_CNT_MAX);
  __type(key, __u32);
  __type(value, __u64);
} gate_counters SEC(".maps");

static __always_inline int classified(const struct acp_gate_config *cfg) {
  if (bpf_get_current_ancestor_cgroup_id(cfg->kubepods_level) != cfg->kubepods_id) return 0;
  ACP_UNROLL
  for (int i = 1; i <= ACP_GATE_DEPTH; i++) {
    __u64 id = bpf_get_current_ancestor_cgroup_id(cfg->kubepods_level + i);
    __u32 *cls = id ? bpf_map_lookup_elem(&gate_class, &id) : NULL;
    int step = acp_gate_step(id, cls ? *cls : ACP_GATE_UNKNOWN);
    if (step != ACP_GATE_STEP_DEEPER) return step == ACP_GATE_STEP_PASS;
  }
  return 0;
}

static __always_inline void count(__u32 slot) {
  __u64 *c = bpf_map_lookup_elem(&gate_counters, &slot);
  if (c) *c += 1; /* per-CPU slot */
}

/* 1: let the call proceed (the pod's own wall, if any, judges it too); 0: EPERM. */
static __always_inline int gate(void) {
  __u32 zero = 0;
  struct acp_gate_config *cfg = bpf_map_lookup_elem(&gate_config, &zero);
  if (!cfg) return 0; /* cannot happen (array slot); fail closed */
  if (classified(cfg)) return 1;
  if (cfg->unknown_allow) {
    count(ACP_GATE_CNT_UNKNOWN_ALLOWED);
    return 1;
  }
  count(ACP_GATE_CNT_REFUSED);
  return 0;
}

SEC("cgroup/sock_create")
int acp_gate_sock_create(struct bpf_sock *ctx) { return gate(); }

SEC("cgroup/connect4")
int acp_gate_connect4(struct bpf_sock_addr *ctx) { return gate(); }

SEC("cgroup/connect6")
int acp_gate_connect6(struct bpf_sock_addr *ctx) { return gate(); }

SEC("cgroup/sendmsg4")
int acp_gate_sendmsg4(struct bpf_sock_addr *ctx) { return gate(); }

SEC("cgroup/sendmsg6")
int acp_gate_sendmsg6(struct bpf_sock_addr *ctx) { return gate(); }
