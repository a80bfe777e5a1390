/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The maps of one session's wall and the helpers that count and report on them, shared by
 * the two BPF objects of the wall: acp_sock.bpf.c (IP: connect/sendmsg/sock_create/egress) and
 * acp_unix.bpf.c (AF_UNIX: connect_unix/sendmsg_unix). Both declare the same maps; the loader
 * (src/kernel/sock_programs.cpp) creates them once, with acp_sock, and hands the same map fds
 * to acp_unix before it loads (bpf_map__reuse_fd), so a session has one set of maps.
 */
#ifndef ACP_MAPS_BPF_H
#define ACP_MAPS_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "acp_abi.h"
#include "acp_decide.h"

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, ACP_MAX_ALLOW);
  __type(key, struct acp_endpoint);
  __type(value, struct acp_allow_value);
} allow_map SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct acp_config);
} config_map SEC(".maps");

/* AF_UNIX names the agent may connect or send to (--allow-unix). Empty: none. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, ACP_MAX_UNIX_ALLOW);
  __type(key, struct acp_unix_path);
  __type(value, struct acp_allow_value);
} unix_allow SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, ACP_COUNTER_SLOTS);
  __type(key, __u32);
  __type(value, __u64);
} counters SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, ACP_RINGBUF_BYTES);
} events SEC(".maps");

/* The last ACP_RECENT_SLOTS refused attempts, readable by `acp status` from any shell even
 * when no acp process drains the ring buffer (an orphaned session). */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, ACP_RECENT_SLOTS);
  __type(key, __u32);
  __type(value, struct acp_event);
} recent SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct acp_recent_head);
} recent_head SEC(".maps");

/* Events the ring buffer had no room for: user space reports the loss instead of hiding it. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} lost_events SEC(".maps");

/* Socket cookies whose first refused egress packet was reported (see
 * acp_egress_should_report). Internal: not pinned, `acp status` does not read it. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, ACP_EGRESS_REPORTED_SLOTS);
  __type(key, __u64);
  __type(value, __u8);
} egress_reported SEC(".maps");

static __always_inline struct acp_config *get_config(void) {
  __u32 zero = 0;
  return bpf_map_lookup_elem(&config_map, &zero);
}

static __always_inline void count(__u32 fam, __u32 proto, int denied) {
  __u32 idx = acp_counter_index(fam, proto, denied);
  __u64 *c = bpf_map_lookup_elem(&counters, &idx);
  if (c) *c += 1; /* per-CPU slot: no atomics needed */
}

static __always_inline void fill_event(struct acp_event *e, const struct acp_config *cfg) {
  __u64 pid_tgid = bpf_get_current_pid_tgid();
  e->ts_ns = bpf_ktime_get_ns();
  e->session_id = cfg ? cfg->session_id : 0;
  e->pid = pid_tgid >> 32;
  e->tid = (__u32)pid_tgid;
  e->uid = (__u32)bpf_get_current_uid_gid();
  e->cgroup_hint = 0;
  bpf_get_current_comm(e->comm, sizeof(e->comm));
}

/* Report a refused attempt: to the ring buffer for the live reader, and into the recent
 * array for `acp status`. */
static __always_inline void report(const struct acp_event *tmpl) {
  __u32 zero = 0;
  struct acp_event *rb = bpf_ringbuf_reserve(&events, sizeof(*rb), 0);
  if (rb) {
    __builtin_memcpy(rb, tmpl, sizeof(*rb));
    bpf_ringbuf_submit(rb, 0);
  } else {
    __u64 *lost = bpf_map_lookup_elem(&lost_events, &zero);
    if (lost) __sync_fetch_and_add(lost, 1);
  }
  struct acp_recent_head *head = bpf_map_lookup_elem(&recent_head, &zero);
  if (!head) return;
  __u32 slot = (__u32)(__sync_fetch_and_add(&head->next, 1) % ACP_RECENT_SLOTS);
  struct acp_event *r = bpf_map_lookup_elem(&recent, &slot);
  if (r) __builtin_memcpy(r, tmpl, sizeof(*r));
}

#endif /* ACP_MAPS_BPF_H */
