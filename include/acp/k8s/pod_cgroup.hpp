// Where the kubelet puts a pod's cgroup v2 directory, for both cgroup drivers and every QoS
// class (kubelet pkg/kubelet/cm: cgroup_manager_linux.go, qos_container_manager_linux.go):
//
//   driver    QoS          directory under the cgroup2 root
//   systemd   Guaranteed   kubepods.slice/kubepods-pod<uid_>.slice
//   systemd   Burstable kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice
//   systemd   BestEffort
//   kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_>.slice cgroupfs
//   Guaranteed   kubepods/pod<uid> cgroupfs  Burstable    kubepods/burstable/pod<uid> cgroupfs
//   BestEffort   kubepods/besteffort/pod<uid>
//
// (<uid_> is the uid with '-' replaced by '_': systemd unit names reserve '-' for nesting.)
// The containers' cgroups are children of the pod's, so programs attached there judge every
// container of the pod, the pause container and whatever they spawn.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "acp/util/result.hpp"

namespace acp::k8s {

enum class CgroupDriver { Systemd, Cgroupfs };
enum class QosClass { Guaranteed, Burstable, BestEffort };

const char* to_string(CgroupDriver d);  // "systemd" | "cgroupfs"
// "systemd" | "cgroupfs"; nullopt for anything else.
std::optional<CgroupDriver> parse_cgroup_driver(std::string_view s);
// status.qosClass ("Guaranteed", "Burstable", "BestEffort"); nullopt when empty or unknown.
std::optional<QosClass> parse_qos_class(std::string_view s);

// The pod's directory relative to the cgroup2 root (no leading '/').
std::string pod_cgroup_relpath(CgroupDriver driver, QosClass qos, std::string_view uid);

// The driver whose top-level directory (kubepods.slice or kubepods) exists under root.
Result<CgroupDriver> detect_cgroup_driver(const std::string& cgroup_root);

// The pod's cgroup directory that exists under root: the QoS class from the pod's status is
// tried first, then the others (a pod's status may not carry it yet). nullopt when none
// exists (the kubelet has not made it yet, or the pod is gone).
std::optional<std::string> find_pod_cgroup(const std::string& cgroup_root, CgroupDriver driver,
                                           std::string_view uid, std::optional<QosClass> qos);

// The kubelet's top directory for the driver: "kubepods.slice" (systemd) or "kubepods".
const char* kubepods_dir_name(CgroupDriver driver);

// What a directory directly below kubepods, or below a QoS class's directory, is by its name:
// a QoS class's cgroup (systemd "kubepods-burstable.slice", cgroupfs "burstable"; the same for
// besteffort), a pod's (then uid is its uid, '_' turned back into '-'), or something else.
struct CgroupDirName {
  enum class Kind { Qos, Pod, Other } kind = Kind::Other;
  std::string uid;
};
CgroupDirName parse_cgroup_dir_name(CgroupDriver driver, std::string_view name);

// The depth of a cgroup directory below the root of its cgroup v2 hierarchy (the root is 0),
// by walking up: every cgroup but the root has cgroup.events. Fails when the walk leaves the
// hierarchy before it meets the root (dir is under a mount of a subtree, not of the root).
Result<uint32_t> cgroup_level(const std::string& dir);

}  // namespace acp::k8s
