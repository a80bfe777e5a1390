// The part of a Kubernetes Pod object the node agent acts on, and the watch stream's events,
// parsed from the API server's JSON (core/v1 Pod, meta/v1 WatchEvent).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "acp/util/result.hpp"

namespace acp::k8s {

inline constexpr const char* kConfineLabel = "acp.dev/confine";     // "true": confine the pod
inline constexpr const char* kPolicyAnnotation = "acp.dev/policy";  // a file in the policy dir
// On a static pod's mirror: the kubelet's uid for the pod (its cgroup's name).
inline constexpr const char* kMirrorAnnotation = "kubernetes.io/config.mirror";

struct Pod {
  std::string uid;  // metadata.uid: names the pod's cgroup and its pin directory
  // A static pod's mirror: the kubelet's uid for the pod, which names its cgroup (annotation
  // kubernetes.io/config.mirror, when a valid uid). A claim anyone creating a pod can make.
  std::string mirror_uid;
  std::string ns;
  std::string name;
  std::string node;              // spec.nodeName
  std::string qos_class;         // status.qosClass: "Guaranteed" | "Burstable" | "BestEffort"
  std::string phase;             // status.phase
  std::vector<std::string> ips;  // status.podIPs (or status.podIP): who the proxy sees
  bool host_network = false;     // spec.hostNetwork: the pod shares the node's addresses
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
  std::string resource_version;

  // Labelled acp.dev/confine=true and not finished (Succeeded/Failed pods have no processes).
  bool wants_confinement() const;
  // The annotation acp.dev/policy, when set.
  std::optional<std::string> policy_name() const;
  // "namespace/name"
  std::string key() const { return ns + "/" + name; }
};

Result<Pod> parse_pod(const nlohmann::json& obj);

struct PodList {
  std::string resource_version;  // metadata.resourceVersion: where the watch starts
  std::vector<Pod> pods;
};
Result<PodList> parse_pod_list(std::string_view body);

enum class WatchEventType { Added, Modified, Deleted, Bookmark, Error };

struct WatchEvent {
  WatchEventType type = WatchEventType::Error;
  Pod pod;                       // Added/Modified/Deleted (Bookmark: only resource_version)
  std::string resource_version;  // the object's metadata.resourceVersion
  int code = 0;                  // Error: the Status object's code (410: Gone, relist)
  std::string message;           // Error: the Status object's message
};
// One line of a watch stream: {"type": "...", "object": {...}}.
Result<WatchEvent> parse_watch_event(std::string_view line);

// A pod uid as the kubelet and this agent accept it: 1-64 of [0-9a-f-] (RFC 4122 text form).
bool valid_pod_uid(std::string_view uid);

}  // namespace acp::k8s
