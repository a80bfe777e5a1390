// The layout promise of bpf/acp_abi.h: every struct shared with the BPF programs has the size
// and field offsets below, with no implicit padding. A change that shifts a field fails here
// instead of silently corrupting a map or an event.
#include <cstddef>

#include "acp_abi.h"

#define ACP_ASSERT_OFFSET(type, field, off) \
  static_assert(offsetof(type, field) == (off), #type "." #field " moved")

static_assert(sizeof(acp_endpoint) == 20, "acp_endpoint size");
ACP_ASSERT_OFFSET(acp_endpoint, addr, 0);
ACP_ASSERT_OFFSET(acp_endpoint, port, 16);
ACP_ASSERT_OFFSET(acp_endpoint, proto, 18);
ACP_ASSERT_OFFSET(acp_endpoint, pad, 19);

static_assert(sizeof(acp_allow_value) == 4, "acp_allow_value size");
ACP_ASSERT_OFFSET(acp_allow_value, flags, 0);

static_assert(sizeof(acp_config) == 48, "acp_config size");
ACP_ASSERT_OFFSET(acp_config, mode, 0);
ACP_ASSERT_OFFSET(acp_config, door_port4, 4);
ACP_ASSERT_OFFSET(acp_config, door_port6, 6);
ACP_ASSERT_OFFSET(acp_config, session_id, 8);
ACP_ASSERT_OFFSET(acp_config, dns_port4, 16);
ACP_ASSERT_OFFSET(acp_config, dns_port6, 18);
ACP_ASSERT_OFFSET(acp_config, door_addr4, 24);
ACP_ASSERT_OFFSET(acp_config, door_addr6, 32);

static_assert(sizeof(acp_door_origin) == 32, "acp_door_origin size");
ACP_ASSERT_OFFSET(acp_door_origin, dst, 0);
ACP_ASSERT_OFFSET(acp_door_origin, pad, 20);
ACP_ASSERT_OFFSET(acp_door_origin, cookie, 24);

static_assert(sizeof(acp_event) == 80, "acp_event size");
ACP_ASSERT_OFFSET(acp_event, ts_ns, 0);
ACP_ASSERT_OFFSET(acp_event, session_id, 8);
ACP_ASSERT_OFFSET(acp_event, pid, 16);
ACP_ASSERT_OFFSET(acp_event, tid, 20);
ACP_ASSERT_OFFSET(acp_event, uid, 24);
ACP_ASSERT_OFFSET(acp_event, cgroup_hint, 28);
ACP_ASSERT_OFFSET(acp_event, comm, 32);
ACP_ASSERT_OFFSET(acp_event, addr, 48);
ACP_ASSERT_OFFSET(acp_event, port, 64);
ACP_ASSERT_OFFSET(acp_event, hook, 66);
ACP_ASSERT_OFFSET(acp_event, verdict, 67);
ACP_ASSERT_OFFSET(acp_event, family, 68);
ACP_ASSERT_OFFSET(acp_event, sock_type, 70);
ACP_ASSERT_OFFSET(acp_event, protocol, 72);
ACP_ASSERT_OFFSET(acp_event, pad, 74);
static_assert(sizeof(acp_event) % 8 == 0, "acp_event keeps 8-byte alignment in the ring buffer");

static_assert(sizeof(acp_recent_head) == 8, "acp_recent_head size");
ACP_ASSERT_OFFSET(acp_recent_head, next, 0);

// The ring buffer size must be a power of two and a multiple of the page size.
static_assert((ACP_RINGBUF_BYTES & (ACP_RINGBUF_BYTES - 1)) == 0, "ring buffer: power of two");
static_assert(ACP_RINGBUF_BYTES % 4096 == 0, "ring buffer: page multiple");
static_assert(ACP_COUNTER_SLOTS == 24, "counter slots: 4 families x 3 protocols x 2");

static_assert(sizeof(acp_unix_path) == 112, "acp_unix_path size");
ACP_ASSERT_OFFSET(acp_unix_path, len, 0);
ACP_ASSERT_OFFSET(acp_unix_path, path, 4);
static_assert(ACP_COMM_LEN == 16, "TASK_COMM_LEN");

static_assert(sizeof(acp_gate_config) == 16, "acp_gate_config size");
ACP_ASSERT_OFFSET(acp_gate_config, kubepods_id, 0);
ACP_ASSERT_OFFSET(acp_gate_config, kubepods_level, 8);
ACP_ASSERT_OFFSET(acp_gate_config, unknown_allow, 12);
