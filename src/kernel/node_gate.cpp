// NodeGate: the gate's skeleton, its pins and its maps (bpf/acp_gate.bpf.c).
#include "acp/kernel/node_gate.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <utility>
#include <vector>

#include "acp/kernel/pinned_session.hpp"
#include "acp/kernel/session_maps.hpp"
#include "acp_gate.skel.h"
#include "bpf_links.hpp"
#include "libbpf_log.hpp"

namespace acp::kernel {
namespace {

std::array<bpf_program*, kGateLinkNames.size()> programs(acp_gate* s) {
  return {s->progs.acp_gate_sock_create, s->progs.acp_gate_connect4, s->progs.acp_gate_connect6,
          s->progs.acp_gate_sendmsg4, s->progs.acp_gate_sendmsg6};
}
std::array<bpf_link**, kGateLinkNames.size()> link_slots(acp_gate* s) {
  return {&s->links.acp_gate_sock_create, &s->links.acp_gate_connect4, &s->links.acp_gate_connect6,
          &s->links.acp_gate_sendmsg4, &s->links.acp_gate_sendmsg6};
}

constexpr const char* kClassPin = "map_gate_class";
constexpr const char* kConfigPin = "map_gate_config";
constexpr const char* kCountersPin = "map_gate_counters";

Status write_gate_config(int fd, const GateConfig& cfg) {
  acp_gate_config c{};
  c.kubepods_id = cfg.kubepods_id;
  c.kubepods_level = cfg.kubepods_level;
  c.unknown_allow = cfg.unknown_allow ? 1 : 0;
  uint32_t zero = 0;
  if (bpf_map_update_elem(fd, &zero, &c, BPF_ANY) != 0) return errno_error("write gate_config");
  return {};
}

}  // namespace

const char* to_string(GateClass c) {
  switch (c) {
    case GateClass::Qos:
      return "qos";
    case GateClass::Open:
      return "open";
    case GateClass::Walled:
      return "walled";
  }
  return "?";
}

Result<NodeGate> NodeGate::load(const GateConfig& cfg) {
  detail::quiet_libbpf_once();
  NodeGate g;
  g.skel_ = acp_gate::open();
  if (!g.skel_) return errno_error("open BPF object acp_gate (set ACP_DEBUG=1 for libbpf's log)");
  if (int rc = acp_gate::load(g.skel_); rc != 0)
    return make_error(
        "load the node gate's BPF programs (needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN; set "
        "ACP_DEBUG=1 for the verifier log)",
        rc < 0 ? -rc : errno);
  if (auto st = write_gate_config(g.config_map(), cfg); !st) return st.error();
  return g;
}

Result<NodeGate> NodeGate::open_pinned(const std::string& dir) {
  detail::quiet_libbpf_once();
  NodeGate g;
  for (auto [slot, name] :
       {std::pair{&g.class_fd_, kClassPin}, std::pair{&g.config_fd_, kConfigPin},
        std::pair{&g.counters_fd_, kCountersPin}}) {
    const std::string path = dir + "/" + name;
    slot->reset(bpf_obj_get(path.c_str()));
    if (!*slot) return errno_error("open pinned BPF map " + path);
  }
  return g;
}

bool NodeGate::pinned_links_attached(const std::string& dir, uint64_t cgroup_id) {
  for (const char* n : kGateLinkNames)
    if (!pinned_link_attached_to(dir + "/link_" + n, cgroup_id)) return false;
  return true;
}

NodeGate::NodeGate(NodeGate&& o) noexcept
    : skel_(std::exchange(o.skel_, nullptr)),
      class_fd_(std::move(o.class_fd_)),
      config_fd_(std::move(o.config_fd_)),
      counters_fd_(std::move(o.counters_fd_)) {}

NodeGate& NodeGate::operator=(NodeGate&& o) noexcept {
  if (this != &o) {
    reset();
    skel_ = std::exchange(o.skel_, nullptr);
    class_fd_ = std::move(o.class_fd_);
    config_fd_ = std::move(o.config_fd_);
    counters_fd_ = std::move(o.counters_fd_);
  }
  return *this;
}

NodeGate::~NodeGate() {
  reset();
}

void NodeGate::reset() {
  if (skel_) acp_gate::destroy(skel_);  // unpinned links detach with their last fd
  skel_ = nullptr;
}

int NodeGate::class_map() const {
  return skel_ ? bpf_map__fd(skel_->maps.gate_class) : class_fd_.get();
}
int NodeGate::config_map() const {
  return skel_ ? bpf_map__fd(skel_->maps.gate_config) : config_fd_.get();
}
int NodeGate::counters_map() const {
  return skel_ ? bpf_map__fd(skel_->maps.gate_counters) : counters_fd_.get();
}

Status NodeGate::attach(int cgroup_fd) {
  if (!skel_) return make_error("attach the node gate: not loaded by this process", EINVAL);
  return detail::attach_all(programs(skel_), link_slots(skel_), kGateLinkNames, cgroup_fd);
}

Status NodeGate::pin(const std::string& dir) {
  if (!skel_ || !skel_->links.acp_gate_sock_create)
    return make_error("pin the node gate in " + dir + ": not attached", EINVAL);
  std::vector<detail::PinObject> objects;
  auto slots = link_slots(skel_);
  for (size_t i = 0; i < slots.size(); i++)
    objects.push_back({bpf_link__fd(*slots[i]), std::string("link_") + kGateLinkNames[i]});
  objects.push_back({class_map(), kClassPin});
  objects.push_back({config_map(), kConfigPin});
  objects.push_back({counters_map(), kCountersPin});
  return detail::pin_objects(dir, objects);
}

Status NodeGate::set_class(uint64_t cgroup_id, GateClass c) {
  const auto v = static_cast<uint32_t>(c);
  if (bpf_map_update_elem(class_map(), &cgroup_id, &v, BPF_ANY) != 0)
    return errno_error("classify cgroup " + std::to_string(cgroup_id) + " as " + to_string(c) +
                       " in the node gate (map full at " + std::to_string(ACP_GATE_MAX_CGROUPS) +
                       " cgroups?)");
  return {};
}

Status NodeGate::forget(uint64_t cgroup_id) {
  if (bpf_map_delete_elem(class_map(), &cgroup_id) != 0 && errno != ENOENT)
    return errno_error("remove cgroup " + std::to_string(cgroup_id) + " from the node gate");
  return {};
}

Result<std::map<uint64_t, GateClass>> NodeGate::classes() const {
  std::map<uint64_t, GateClass> out;
  uint64_t key = 0, next = 0;
  const uint64_t* prev = nullptr;
  while (bpf_map_get_next_key(class_map(), prev, &next) == 0) {
    uint32_t v = 0;
    if (bpf_map_lookup_elem(class_map(), &next, &v) == 0)
      out.emplace(next, static_cast<GateClass>(v));
    key = next;
    prev = &key;
  }
  if (errno != ENOENT) return errno_error("read the node gate's classes");
  return out;
}

Result<GateConfig> NodeGate::config() const {
  acp_gate_config c{};
  uint32_t zero = 0;
  if (bpf_map_lookup_elem(config_map(), &zero, &c) != 0) return errno_error("read gate_config");
  return GateConfig{.kubepods_id = c.kubepods_id,
                    .kubepods_level = c.kubepods_level,
                    .unknown_allow = c.unknown_allow != 0};
}

Status NodeGate::set_config(const GateConfig& cfg) {
  return write_gate_config(config_map(), cfg);
}

Result<GateCounters> NodeGate::counters() const {
  auto refused = read_percpu_sum(counters_map(), ACP_GATE_CNT_REFUSED);
  if (!refused) return refused.error();
  auto allowed = read_percpu_sum(counters_map(), ACP_GATE_CNT_UNKNOWN_ALLOWED);
  if (!allowed) return allowed.error();
  return GateCounters{.refused = *refused, .unknown_allowed = *allowed};
}

}  // namespace acp::kernel
