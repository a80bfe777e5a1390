// The Docker backend (`acp contain`, `acp run --backend=docker`): the agent runs in a container
// on a per-session `--internal` bridge network whose only reachable address is ACP's consent
// proxy on the network's gateway (the host side of the bridge).
//
// Per session <id>, all labelled `acp.session=<id>`:
//   network   acp-<id>, --internal, bridge interface acp<id>, an explicit /28 from
//             10.231.0.0/16 (gateway .1 on the host, checked to be on the bridge);
//   firewall  ACPD-<id> chains in iptables and ip6tables, jumped to from INPUT and FORWARD for
//             the bridge: INPUT accepts TCP to gateway:proxy-port only, everything else from
//             the bridge is rejected, and nothing is forwarded to or from it. With the
//             transparent door, an ACPD-<id> chain in nat PREROUTING leads the bridge's other
//             TCP to gateway:door-port and its DNS to gateway:53. (Docker's own
//             rules for --internal may be off, as with dockerd --iptables=false, and never
//             cover the host's own ports on the gateway address: these are ACP's.)
//   container acp-<id>, hardened as network-isolation-current.md lists.
// The docker CLI drives it, through run_command (argv, no shell). Why the CLI and not the
// Engine API: `docker run` already attaches the agent's stdin/stdout/stderr and TTY (a
// hijacked HTTP stream over the socket otherwise), proxies signals and returns the container's
// exit status; DOCKER_HOST, contexts and TLS settings work as the user has them.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "acp/backend/iptables_wall.hpp"
#include "acp/util/result.hpp"

namespace acp::backend {

inline constexpr std::string_view kDockerLabel = "acp.session";
inline constexpr std::string_view kDockerChainPrefix = "ACPD-";
inline constexpr const char* kDefaultAgentImage = "acp-agent:latest";
// The hardening every ACP container gets (network-isolation-current.md), in this order.
inline constexpr const char* kDockerHardening[] = {
    "--read-only",  "--cap-drop=ALL", "--security-opt=no-new-privileges",
    "--tmpfs=/tmp", "--tmpfs=/home",  "--pids-limit=256",
    "--memory=2g",
};

// The docker CLI and the daemon it talks to.
struct DockerCli {
  std::string path;  // absolute
  std::string host;  // `docker -H HOST`; empty: the CLI's default (DOCKER_HOST, context)
  // {path, [-H host,] args...}
  std::vector<std::string> command(const std::vector<std::string>& args) const;
};
// $ACP_DOCKER when set (absolute), else /usr/bin/docker etc.; host: $DOCKER_HOST, so that what
// a session used is recorded and `acp gc` reaches the same daemon.
std::optional<DockerCli> find_docker();

// acp-<id> (network and container), acp<id> (bridge: 15 characters, IFNAMSIZ), ACPD-<id>.
std::string docker_object_name(std::string_view session_id);
std::string docker_bridge_name(std::string_view session_id);
std::string docker_chain_name(std::string_view session_id);
std::optional<std::string> session_id_of_docker_chain(std::string_view chain);

struct DockerNetwork {
  std::string name;     // acp-<id>
  std::string bridge;   // acp<id>
  std::string subnet;   // 10.231.N.M/28
  std::string gateway;  // the host's address on the bridge: where the proxy listens
};

// The /28 subnets ACP tries for a session, starting at a spot derived from the id: pure.
std::vector<std::string> candidate_subnets(std::string_view session_id, size_t count);
// True when `subnet` (a.b.c.d/len) overlaps a route in /proc/net/route-format `routes` text.
bool subnet_overlaps_routes(const std::string& subnet, const std::string& routes);

// Creates the session's internal network (trying the candidates that no host route and no
// other docker network uses) and checks that the gateway address is on the host's bridge.
Result<DockerNetwork> create_docker_network(const DockerCli& docker, const std::string& session_id);
// Removes container and network of the session; absent ones are fine.
Status remove_docker_objects(const DockerCli& docker, const std::string& session_id);

// The firewall of one session, for one family: iptables-restore --noflush input.
struct DockerFirewallSpec {
  std::string chain;    // ACPD-<id>
  std::string bridge;   // acp<id>
  std::string gateway;  // IPv4 address of the gateway
  uint16_t proxy_port = 0;
  // The transparent door's port on the gateway; 0: none. With it, the bridge's other TCP (and
  // UDP to port 53 of any address) is DNATed in nat PREROUTING to the door (to the session's
  // DNS), where conntrack keeps the original destination (SO_ORIGINAL_DST).
  uint16_t door_port = 0;
};
Result<std::string> render_docker_firewall(const DockerFirewallSpec& spec, IpFamily family);
// The INPUT and FORWARD rules of an `iptables -S` listing that jump to `chain`.
std::vector<std::string> docker_jumps_in_listing(const std::string& listing,
                                                 const std::string& chain);
Status install_docker_firewall(const DockerFirewallSpec& spec);
Status remove_docker_firewall(const std::string& chain);

// What runs in the container.
struct ContainerSpec {
  std::string session_id;
  std::string image = kDefaultAgentImage;
  std::optional<std::string> workspace;  // absolute host directory, mounted at /workspace
  bool writable = false;                 // the workspace read-write
  std::vector<std::string> pass_env;     // KEY: passed through from acp's environment
  std::string proxy_url;                 // http://<gateway>:<port>
  std::string dns;                       // the session's DNS responder (the gateway); empty: none
  bool tty = false;                      // -t (stdin and stdout are terminals)
  std::vector<std::string> command;
};
// Checks what a user gave: the image, workspace path, env names (and that they do not
// override the variables ACP sets), the command.
Status validate_container_spec(const ContainerSpec& spec);
// The `docker run` argv (argv[0] = docker): pure, so tests can check every flag.
std::vector<std::string> docker_run_argv(const DockerCli& docker, const ContainerSpec& spec);

// Names of containers and networks labelled acp.session (any session).
Result<std::vector<std::string>> list_docker_sessions(const DockerCli& docker);
// True when the session's container exists and runs.
bool docker_container_running(const DockerCli& docker, const std::string& session_id);

// True when the docker backend works here: root, the docker CLI, a reachable dockerd, and
// iptables(-restore) for the firewall. Cached per process.
bool docker_backend_supported(std::string* why = nullptr);

}  // namespace acp::backend
