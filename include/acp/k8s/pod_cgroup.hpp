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

}  // namespace acp::k8s
