// `acp node-agent`: the DaemonSet process. Watches the pods of its node, walls in the ones
// labelled acp.dev/confine=true (PodConfiner), serves them one consent proxy (NodeProxy), and
// answers /healthz and /metrics. See docs/node-agent.md.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "acp/k8s/kube_client.hpp"
#include "acp/k8s/node_proxy.hpp"
#include "acp/k8s/pod_cgroup.hpp"

namespace acp::k8s {

struct NodeAgentConfig {
  std::string node_name;
  ApiServerConfig api;
  std::string cgroup_root;             // empty: this machine's cgroup2 mount
  std::optional<CgroupDriver> driver;  // nullopt: detect from the layout under cgroup_root
  std::string bpffs_root = "/sys/fs/bpf";
  bool audit_mode = false;  // log what the wall would refuse, refuse nothing
  // --unknown-pods=allow: pods the agent has not classified (new, or made while it was away)
  // keep their network instead of being refused by the node gate.
  bool unknown_allow = false;
  NodeProxyConfig proxy;
  std::string metrics_listen;  // "ADDR:PORT" for /healthz and /metrics; empty: off
  std::chrono::milliseconds retry_interval{500};  // pods whose cgroup is not there yet
  std::chrono::seconds watch_timeout{300};
};

// Runs until SIGINT/SIGTERM (the pods stay walled: the pins hold). Returns the exit status;
// errors before the agent is up are printed to stderr.
int run_node_agent(const NodeAgentConfig& cfg);

}  // namespace acp::k8s
