// The BPF wall around one pod: the session programs (SockPrograms, the same set `acp run`
// attaches) attached to the pod's cgroup v2 directory and pinned under
// <bpffs>/acp/pod-<uid>/, so the wall outlives the node agent (restart, upgrade, crash) and
// a restarted agent adopts it instead of building a new one. The allow map holds exactly the
// node proxy's endpoints.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "acp/k8s/pod_cgroup.hpp"
#include "acp/kernel/endpoint.hpp"
#include "acp/kernel/session_maps.hpp"
#include "acp/kernel/sock_programs.hpp"
#include "acp/util/result.hpp"

namespace acp::k8s {

inline constexpr const char* kPodPinPrefix = "pod-";

// A pod's transparent door (docs/node-agent.md, "The transparent door"): where its wall leads
// the TCP connects and port-53 datagrams it does not allow. All zero: no door (refused with
// EPERM as ever).
struct PodDoor {
  uint16_t port4 = 0, port6 = 0;          // TCP, on addr4 / addr6
  uint16_t dns_port4 = 0, dns_port6 = 0;  // UDP, beside them
  uint32_t addr4 = 0;                     // network byte order
  std::array<uint8_t, 16> addr6{};
  bool on() const { return port4 != 0 || port6 != 0; }
};

struct PodConfinerConfig {
  std::string cgroup_root;  // the host's cgroup2 mount (or a test subtree laid out likewise)
  CgroupDriver driver = CgroupDriver::Systemd;
  std::string bpffs_root = "/sys/fs/bpf";  // pins go to <bpffs_root>/acp/pod-<uid>
  std::vector<kernel::Endpoint> allow;     // the node proxy's endpoints
  uint32_t mode = 0;                       // enum acp_mode: enforce (0) or audit (1)
  // Unset: no pod has a door. Set: a pod's door (opened by the node proxy, which reads the
  // wall's door_origin map from pin_dir), asked for each time a wall is loaded or adopted; an
  // error leaves the pod unconfined until the next try.
  std::function<Result<PodDoor>(const std::string& uid, const std::string& pin_dir)> door;
};

enum class ConfineOutcome {
  Confined,  // programs attached and pinned now
  Adopted,   // a wall from an earlier agent was there and is kept (allow map brought up to date)
  Replaced,  // a wall was there but incomplete or stale: a new one attached before the old went
  NoCgroup,  // the pod's cgroup does not exist (yet): try again later
};
const char* to_string(ConfineOutcome o);

class PodConfiner {
 public:
  explicit PodConfiner(PodConfinerConfig cfg) : cfg_(std::move(cfg)) {}

  // <bpffs_root>/acp/pod-<uid>
  std::string pin_dir(const std::string& uid) const;
  // The uids that have a pin directory (walls standing, from this or an earlier agent).
  Result<std::vector<std::string>> pinned_uids() const;

  // Confines the pod (or adopts its standing wall). *cgroup_path gets the directory used.
  Result<ConfineOutcome> confine(const std::string& uid, std::optional<QosClass> qos,
                                 std::string* cgroup_path = nullptr);
  // Loads and verifies the programs of a labelled pod whose cgroup is not there yet (the API
  // told of it before the kubelet made the cgroup), so that attaching is all that is left when
  // the cgroup appears. Idempotent.
  Status prepare(const std::string& uid);
  void drop_prepared(const std::string& uid) { prepared_.erase(uid); }
  // Detaches and unpins the pod's wall, and drops programs prepared for it. Idempotent.
  Status release(const std::string& uid);
  // The wall's counters (connect/sendmsg attempts allowed and denied by the kernel).
  Result<kernel::Counters> counters(const std::string& uid) const;

  const PodConfinerConfig& config() const { return cfg_; }

 private:
  // Checks a standing wall: every link pinned and attached to this cgroup, the maps there.
  bool wall_is_whole(const std::string& dir, const std::string& cgroup_path, bool door) const;
  // Brings an adopted wall's allow map, mode and door up to date.
  Status fix_wall(const std::string& dir, const PodDoor& door) const;
  Result<PodDoor> door_of(const std::string& uid) const;
  kernel::SockConfig sock_config(uint64_t session_id, const PodDoor& door) const;
  Result<kernel::SockPrograms> load(const std::string& uid) const;
  Status attach_new(const std::string& uid, const std::string& cgroup_path, const std::string& dir);

  PodConfinerConfig cfg_;
  std::map<std::string, kernel::SockPrograms> prepared_;  // uid -> loaded, not attached
};

}  // namespace acp::k8s
