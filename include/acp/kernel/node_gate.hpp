// The node gate (bpf/acp_gate.bpf.c): the node agent's programs at the kubelet's kubepods
// cgroup that refuse every socket of a pod the agent has not classified, and the map in which
// it classifies them. Loaded once per node; the links and maps are pinned (<bpffs>/acp/node-gate)
// so the gate, and the classes in it, outlive the agent: a pod made while the agent is away is
// unknown, and refused, until the agent is back and has looked at it. See docs/node-agent.md.
//
//   auto gate = NodeGate::load({.kubepods_id = ino, .kubepods_level = 1});
//   gate->set_class(qos_cgroup_id, GateClass::Qos); ...   // what is known before it bites
//   gate->attach(kubepods_fd); gate->pin(dir);
// or, after a restart: NodeGate::open_pinned(dir) and go on classifying.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>

#include "acp/util/result.hpp"
#include "acp/util/unique_fd.hpp"
#include "acp_abi.h"

struct acp_gate;  // the generated skeleton (acp_gate.skel.h: build tree only)

namespace acp::kernel {

enum class GateClass : uint32_t {
  Qos = ACP_GATE_QOS,
  Open = ACP_GATE_OPEN,
  Walled = ACP_GATE_WALLED,
};
const char* to_string(GateClass c);  // "qos" | "open" | "walled"

struct GateConfig {
  uint64_t kubepods_id = 0;     // the kubepods cgroup's id (its inode number)
  uint32_t kubepods_level = 0;  // its depth below the cgroup v2 root (the root is 0)
  bool unknown_allow = false;   // --unknown-pods=allow: unclassified pods pass, counted
};

struct GateCounters {
  uint64_t refused = 0;          // socket calls refused: the pod was not classified
  uint64_t unknown_allowed = 0;  // let through unclassified (unknown_allow)
};

// The programs in attach order, pinned as link_<name> in the gate's own directory.
inline constexpr std::array<const char*, 5> kGateLinkNames = {"sock_create", "connect4", "connect6",
                                                              "sendmsg4", "sendmsg6"};

class NodeGate {
 public:
  // Loads the programs (verifier included) with empty classes and writes the config. Nothing
  // is attached yet.
  static Result<NodeGate> load(const GateConfig& cfg);
  // The gate pinned in dir by this or an earlier agent (its maps; the links stay where they
  // are). ENOENT when there is none.
  static Result<NodeGate> open_pinned(const std::string& dir);
  // Whether every link_<name> pin in dir is there and attached to the cgroup with this id.
  static bool pinned_links_attached(const std::string& dir, uint64_t cgroup_id);

  NodeGate(NodeGate&& o) noexcept;
  NodeGate& operator=(NodeGate&& o) noexcept;
  NodeGate(const NodeGate&) = delete;
  NodeGate& operator=(const NodeGate&) = delete;
  ~NodeGate();

  // load() only: attaches every program to the cgroup (multi-attach), all or nothing; then
  // pins links and maps in dir (all or nothing). Until pinned, destroying this detaches.
  Status attach(int cgroup_fd);
  Status pin(const std::string& dir);

  Status set_class(uint64_t cgroup_id, GateClass c);
  Status forget(uint64_t cgroup_id);  // an id that has no entry is fine
  Result<std::map<uint64_t, GateClass>> classes() const;
  Result<GateConfig> config() const;
  Status set_config(const GateConfig& cfg);
  Result<GateCounters> counters() const;

 private:
  NodeGate() = default;
  void reset();

  acp_gate* skel_ = nullptr;                     // load(): owns the programs, links and maps
  UniqueFd class_fd_, config_fd_, counters_fd_;  // open_pinned(): the pinned maps
  int class_map() const;
  int config_map() const;
  int counters_map() const;
};

}  // namespace acp::kernel
