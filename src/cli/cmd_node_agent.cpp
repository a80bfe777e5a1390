// acp node-agent: the Kubernetes DaemonSet mode (docs/node-agent.md). Every flag has the
// in-cluster default; the overrides exist for tests and for running outside a pod.
#include <cstdlib>
#include <memory>

#include "acp/cli/commands.hpp"
#include "acp/k8s/node_agent.hpp"

namespace acp::cli {
namespace {

struct NodeAgentFlags {
  std::string node_name;
  std::string api_server;
  std::string token_file;
  std::string ca_file;
  std::string cgroup_root;
  std::string cgroup_driver = "auto";
  std::string bpffs = "/sys/fs/bpf";
  std::vector<std::string> proxy_listen;
  std::string policy_dir = "/etc/acp/policies";
  std::string default_policy;
  std::string audit_log = "/var/log/acp/node-audit.jsonl";
  std::string control_socket = "/run/acp/control.sock";
  std::string grants_file;
  std::string config = "/etc/acp/config.yml";
  std::string metrics_listen = "0.0.0.0:9753";
  bool audit_mode = false;
  std::string unknown_pods = "deny";
  std::string door = "both";
  int retry_ms = 500;
  int watch_timeout = 300;
};

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

}  // namespace

void register_node_agent(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand(
      "node-agent",
      "Kubernetes DaemonSet mode: confine the pods of this node labelled acp.dev/confine=true "
      "behind a BPF wall whose only door is this agent's consent proxy");
  auto f = std::make_shared<NodeAgentFlags>();
  cmd->add_option("--node-name", f->node_name,
                  "This node's name (default: $NODE_NAME, from the downward API)");
  cmd->add_option("--api-server", f->api_server,
                  "https://HOST:PORT of the API server (default: in-cluster, from "
                  "$KUBERNETES_SERVICE_HOST/PORT)");
  cmd->add_option(
      "--token-file", f->token_file,
      "Bearer token file, re-read on every connection (default: the service account's)");
  cmd->add_option("--ca-file", f->ca_file, "Cluster CA bundle (default: the service account's)");
  cmd->add_option(
      "--cgroup-root", f->cgroup_root,
      "The host's cgroup v2 mount as seen here (default: this machine's cgroup2 mount)");
  cmd->add_option("--cgroup-driver", f->cgroup_driver, "auto|systemd|cgroupfs (the kubelet's)")
      ->check(CLI::IsMember({"auto", "systemd", "cgroupfs"}));
  cmd->add_option("--bpffs", f->bpffs, "bpf filesystem; pins go to <bpffs>/acp/pod-<uid>")
      ->capture_default_str();
  cmd->add_option("--proxy-listen", f->proxy_listen,
                  "ADDR:PORT the node proxy listens on and confined pods may reach; repeatable "
                  "(default: $HOST_IP:8443, else 127.0.0.1:8443)");
  cmd->add_option("--policy-dir", f->policy_dir,
                  "Directory (the mounted ConfigMap) where acp.dev/policy names a file")
      ->capture_default_str();
  cmd->add_option("--default-policy", f->default_policy,
                  "Policy for pods without acp.dev/policy (default: the built-in one)");
  cmd->add_option("--audit-log", f->audit_log, "Audit log (JSONL, hash-chained)")
      ->capture_default_str();
  cmd->add_option("--control-socket", f->control_socket,
                  "Where acp pending/approve/deny reach the consent gate; empty: none")
      ->capture_default_str();
  cmd->add_option("--grants-file", f->grants_file, "Persisted 'always' grants; empty: none");
  cmd->add_option("--config", f->config, "Consent channels (acp init's config.yml)")
      ->capture_default_str();
  cmd->add_option("--metrics-listen", f->metrics_listen,
                  "ADDR:PORT for /healthz, /readyz and /metrics; empty: off")
      ->capture_default_str();
  cmd->add_flag("--audit-mode", f->audit_mode, "Log what the wall would refuse; refuse nothing");
  cmd->add_option("--unknown-pods", f->unknown_pods,
                  "Pods the agent has not classified yet (just made, or made while it was "
                  "away): deny (refused every socket until classified) or allow (keep their "
                  "network; shown in the log and in acp_node_unknown_pods_allowed)")
      ->capture_default_str()
      ->check(CLI::IsMember({"deny", "allow"}));
  cmd->add_option("--door", f->door,
                  "How confined pods reach the proxy: both (clients that honour HTTP(S)_PROXY use "
                  "the listen address; every other TCP connect() is led to the pod's transparent "
                  "door on the node address and judged, and DNS is answered by the pod's policy) "
                  "or proxy (any other connect() fails with EPERM). See docs/node-agent.md")
      ->capture_default_str()
      ->check(CLI::IsMember({"both", "proxy"}));
  cmd->add_option("--retry-ms", f->retry_ms,
                  "Retry interval for pods whose cgroup or wall is not there yet")
      ->capture_default_str()
      ->check(CLI::Range(10, 60000));
  cmd->add_option("--watch-timeout", f->watch_timeout, "Seconds per watch request")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));

  cmd->callback([f, &exit_code] {
    k8s::NodeAgentConfig cfg;
    cfg.node_name = f->node_name.empty() ? env_or("NODE_NAME", "") : f->node_name;
    if (f->api_server.empty()) {
      auto api = k8s::in_cluster_config();
      if (!api) {
        std::fprintf(stderr, "acp node-agent: %s\n", api.error().message().c_str());
        exit_code = 2;
        return;
      }
      cfg.api = *api;
    } else if (auto st = k8s::parse_api_server_url(f->api_server, cfg.api); !st) {
      std::fprintf(stderr, "acp node-agent: --api-server: %s\n", st.error().message().c_str());
      exit_code = 2;
      return;
    } else {
      cfg.api.token_path = std::string(k8s::kServiceAccountDir) + "/token";
      cfg.api.ca_path = std::string(k8s::kServiceAccountDir) + "/ca.crt";
    }
    if (!f->token_file.empty()) cfg.api.token_path = f->token_file;
    if (!f->ca_file.empty()) cfg.api.ca_path = f->ca_file;
    cfg.cgroup_root = f->cgroup_root;
    if (f->cgroup_driver != "auto") cfg.driver = k8s::parse_cgroup_driver(f->cgroup_driver);
    cfg.bpffs_root = f->bpffs;
    cfg.audit_mode = f->audit_mode;
    cfg.unknown_allow = f->unknown_pods == "allow";
    std::vector<std::string> listen = f->proxy_listen;
    if (listen.empty()) listen.push_back(env_or("HOST_IP", "127.0.0.1") + ":8443");
    for (const auto& l : listen) {
      // A bare IPv6 HOST_IP needs brackets before the port.
      std::string text = l;
      if (text.find("]:") == std::string::npos && text.find(':') != text.rfind(':'))
        text = "[" + text.substr(0, text.rfind(':')) + "]" + text.substr(text.rfind(':'));
      auto ep = kernel::parse_endpoint(text);
      if (!ep) {
        std::fprintf(stderr, "acp node-agent: --proxy-listen: %s\n", ep.error().message().c_str());
        exit_code = 2;
        return;
      }
      cfg.proxy.listen.push_back(*ep);
    }
    cfg.proxy.policy_dir = f->policy_dir;
    if (!f->default_policy.empty()) cfg.proxy.default_policy = f->default_policy;
    cfg.proxy.audit_path = f->audit_log;
    cfg.proxy.control_path = f->control_socket;
    cfg.proxy.grants_path = f->grants_file;
    cfg.proxy.config_path = f->config;
    cfg.proxy.door = f->door == "both";
    cfg.metrics_listen = f->metrics_listen;
    cfg.retry_interval = std::chrono::milliseconds(f->retry_ms);
    cfg.watch_timeout = std::chrono::seconds(f->watch_timeout);
    exit_code = k8s::run_node_agent(cfg);
  });
}

}  // namespace acp::cli
