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
  virtual void remove_pod(const std::string& uid) = 0;
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
