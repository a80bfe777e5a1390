// The node agent's one consent proxy, shared by every confined pod on the node. A pod reaches
// it at the node address the BPF allow map names; the proxy tells the pods apart by the
// client address (the pod IP) and judges each request with that pod's policy (annotation
// acp.dev/policy: a file in the policy directory, else the default policy). Every decision
// goes to the audit log with the pod's namespace/name as its session. Requests from an address
// that is no confined pod's are refused: the proxy is a door for confined pods, not an open
// relay for the cluster.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "acp/k8s/pod_confiner.hpp"
#include "acp/kernel/endpoint.hpp"
#include "acp/util/result.hpp"

namespace acp::k8s {

struct NodeProxyConfig {
  std::vector<kernel::Endpoint> listen;       // ADDR:PORT/tcp each (a pod-reachable node address)
  std::string policy_dir;                     // where acp.dev/policy names a file
  std::optional<std::string> default_policy;  // file; nullopt: the built-in default
  std::string audit_path;
  std::string control_path;  // `acp pending/approve/deny` (empty: no control socket)
  std::string grants_path;   // empty: no persisted grants
  std::string config_path;   // consent channels (acp init's config.yml); missing file: none
  // The transparent door for every confined pod (docs/node-agent.md): open_door() opens one
  // per pod on the first IPv4 and the first IPv6 listen address.
  bool door = false;
};

// A pod's door, summed over the pods: connections led in and DNS answered.
struct DoorCounts {
  uint64_t connections = 0;  // led in by a pod's wall
  uint64_t refused = 0;      // of those, refused before judging (no original, a local one)
  uint64_t dns_answered = 0;
  uint64_t dns_denied = 0;
  uint64_t dns_names = 0;  // synthetic names held now (a gauge)
};

struct DecisionCounts {
  uint64_t allow = 0;
  uint64_t deny = 0;
  uint64_t unknown_client = 0;  // denied: the client address is no confined pod's
};

class NodeProxy {
 public:
  static Result<std::unique_ptr<NodeProxy>> start(boost::asio::io_context& io,
                                                  const NodeProxyConfig& cfg);
  virtual ~NodeProxy() = default;

  // What every confined pod's allow map holds: the bound listen endpoints.
  virtual std::vector<kernel::Endpoint> endpoints() const = 0;
  // Registers (or updates) a confined pod: its addresses and policy name. The policy is loaded
  // now; a name that is not a plain file name, or a file that does not load, leaves the pod
  // confined with every request denied (the error is returned for the log).
  virtual Status set_pod(const std::string& uid, const std::string& key,
                         const std::vector<std::string>& ips,
                         const std::optional<std::string>& policy_name) = 0;
  // Removes the pod and closes its door.
  virtual void remove_pod(const std::string& uid) = 0;
  // The pod's transparent door (cfg.door; all zero when off), opened at the first call and the
  // same until remove_pod(): a listener and a DNS socket per family on the node address, with
  // a name table of the pod's own. A connection is judged with the pod's policy (set_pod),
  // placed by the door_origin map pinned in `pin_dir` (only the pod's wall writes it); a DNS
  // query is answered only from one of the pod's addresses.
  virtual Result<PodDoor> open_door(const std::string& uid, const std::string& pin_dir) = 0;
  // The pod's wall was attached anew (a new door_origin map in its pins): the door reads the
  // new one from now on, never the old one's entries.
  virtual void wall_changed(const std::string& uid) = 0;
  virtual DoorCounts door_counts() const = 0;
  // SIGHUP: reload every policy file in use; broken ones keep the previous version.
  virtual void reload_policies() = 0;
  // Appends a node-agent event ({"kind": "pod_confined", ...}) to the audit log.
  virtual void record(nlohmann::json event) = 0;
  virtual DecisionCounts decisions() const = 0;
  virtual void stop() = 0;
};

// True for a policy name usable as one file name in the policy directory: 1-253 of
// [A-Za-z0-9_.-], not starting with '.' (ConfigMap keys; "..data" and friends are the
// kubelet's).
bool valid_policy_name(const std::string& name);

}  // namespace acp::k8s
