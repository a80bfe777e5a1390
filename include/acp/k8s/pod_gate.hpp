// The node agent's gate (kernel::NodeGate, bpf/acp_gate.bpf.c) kept in step with the kubelet's
// cgroup tree: it watches the kubepods cgroup and its QoS classes' cgroups with inotify, so a
// pod's cgroup is seen the moment the kubelet makes it (no polling), and classifies cgroup ids
// in the gate's map: QoS classes at once, pods as the agent tells it (open: unlabelled; walled:
// its own wall stands). A pod cgroup nobody classified is refused every socket by the kernel.
//
// Lifecycle: start() adopts the gate pinned by an earlier agent (then it is in force at once)
// or loads a new one; the agent's own pod is classified open before anything else, so the
// agent itself is never locked out; arm() attaches a new gate once the agent has classified the
// pods that already run (the first list), so installing the agent does not cut them off.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include "acp/k8s/pod_cgroup.hpp"
#include "acp/kernel/node_gate.hpp"
#include "acp/util/result.hpp"

namespace acp::k8s {

inline constexpr const char* kGatePinName = "node-gate";  // <bpffs>/acp/node-gate

struct PodGateConfig {
  std::string cgroup_root;
  CgroupDriver driver = CgroupDriver::Systemd;
  std::string bpffs_root = "/sys/fs/bpf";
  bool unknown_allow = false;  // --unknown-pods=allow
};

struct PodGateStats {
  bool armed = false;       // the gate is attached (and pinned)
  size_t open = 0;          // pod cgroups classified open
  size_t walled = 0;        // pod cgroups classified walled
  size_t unclassified = 0;  // pod cgroups seen and not classified: refused
  kernel::GateCounters counters;
};

class PodGate {
 public:
  struct Handler {
    std::function<void(const std::string& uid)> pod_cgroup_appeared;
    std::function<void(const std::string& uid)> pod_cgroup_gone;
  };

  PodGate(boost::asio::io_context& io, PodGateConfig cfg, Handler handler);
  PodGate(const PodGate&) = delete;
  PodGate& operator=(const PodGate&) = delete;

  // Opens or loads the gate, watches the tree, classifies the QoS cgroups and the agent's own
  // pod, and drops classes of cgroups that are gone. Fails when kubepods does not exist yet
  // (call again later).
  Status start();
  bool started() const { return gate_.has_value(); }
  // Attaches a gate this agent loaded (no-op when it adopted one, or already armed).
  Status arm();
  bool armed() const { return armed_; }
  // The pin directory: <bpffs>/acp/node-gate.
  std::string pin_dir() const;

  // Classifies the pod's cgroup (no-op when its cgroup was not seen).
  Status classify(const std::string& uid, kernel::GateClass c);
  // Classifies the cgroup at this path (the one a pod's wall was attached to).
  Status classify_dir(const std::string& path, kernel::GateClass c);
  // Removes the pod's class: its cgroup is refused again.
  Status unclassify(const std::string& uid);
  bool has_cgroup(const std::string& uid) const { return pods_.count(uid) != 0; }
  std::vector<std::string> pod_uids() const;
  // The uid of the agent's own pod, when it runs in one under this kubepods.
  const std::optional<std::string>& self_uid() const { return self_uid_; }

  PodGateStats stats() const;

 private:
  struct Watched {
    std::string path;
    bool is_kubepods = false;
  };
  void scan(const std::string& dir, bool is_kubepods);
  void seen(const std::string& parent, const std::string& name, bool parent_is_kubepods);
  void gone(const std::string& name);
  void arm_read();
  void on_readable();
  void find_self();
  Status prune();

  boost::asio::io_context& io_;
  PodGateConfig cfg_;
  Handler handler_;
  std::string kubepods_;
  std::optional<kernel::NodeGate> gate_;
  bool armed_ = false;
  std::optional<boost::asio::posix::stream_descriptor> inotify_;
  std::map<int, Watched> watches_;                 // inotify wd -> directory
  std::map<std::string, uint64_t> pods_;           // uid -> cgroup id of the pod cgroups seen
  std::map<std::string, uint64_t> qos_;            // QoS cgroup path -> cgroup id
  std::map<uint64_t, kernel::GateClass> classes_;  // what this agent wrote (mirror of the map)
  std::optional<std::string> self_uid_;
};

}  // namespace acp::k8s
