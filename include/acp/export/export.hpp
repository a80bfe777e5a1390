// `acp export`: the isolation policy (only the consent proxy's endpoints, plus exact allow
// entries, are reachable; everything else is refused) rendered for enforcement points ACP
// does not run on: nftables, iptables, macOS pf, cloud security groups, docker-compose.
// Renderers are pure: the same spec gives the same bytes (golden-file tested). How to apply
// each output: docs/export.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "acp/kernel/endpoint.hpp"
#include "acp/util/result.hpp"

namespace acp::exporter {

enum class Format { Nftables, Iptables, Ip6tables, Pf, AwsSg, AzureNsg, GcpFirewall, Compose };

// "nftables", "iptables", ... as the command line spells them.
std::string_view format_name(Format f);
// Every format, in the order `acp export --help` lists them.
const std::vector<Format>& all_formats();
// Unknown names are an error that lists the known ones.
Result<Format> parse_format(std::string_view name);

// What the user asked for, as given on the command line (validated by make_spec()).
struct ExportOptions {
  std::string format;
  uint16_t proxy_port = 8443;
  // Where the proxy listens. Empty: 127.0.0.1 and ::1 (ACP on the same host); the cloud
  // formats need the ACP host's own address, since security groups never see loopback.
  std::vector<std::string> proxy_addresses;
  std::vector<std::string> allow;          // ADDR:PORT[/tcp|/udp], exact, like `acp run --allow`
  std::optional<std::string> uid;          // nftables/iptables/pf: the agent's user (name or uid)
  std::optional<std::string> cgroup;       // nftables/iptables: cgroup v2 path below the root
  std::string name = "acp-agent";          // cloud object names and the GCP target tag
  std::optional<std::string> policy;       // the consent policy the proxy runs (checked; named)
  std::optional<std::string> acp_image;    // compose: the image running `acp` (acp:latest)
  std::optional<std::string> agent_image;  // compose: the agent's image (your-agent:latest)
};

// Whose traffic a host-firewall rule set confines.
struct Selector {
  enum class Kind { Cgroup, Uid } kind = Kind::Cgroup;
  std::string cgroup = "acp";  // below the cgroup2 root, no leading '/'; acp run's sessions
  uint32_t uid = 0;
};

// A validated request: endpoints parsed, the selector resolved, the policy loaded.
struct ExportSpec {
  Format format = Format::Nftables;
  std::vector<kernel::Endpoint> proxy;  // TCP endpoints of the consent proxy
  std::vector<kernel::Endpoint> allow;
  Selector selector;
  std::string name;
  uint16_t proxy_port = 8443;
  std::string policy_path;     // empty: the built-in policy
  std::string policy_summary;  // "12 rules, default ask"
  std::string acp_image;
  std::string agent_image;
};

// Checks everything a format needs and refuses what it cannot express, with an error that
// names the value and what to do ("--proxy-address=127.0.0.1: aws-sg filters ...").
Result<ExportSpec> make_spec(const ExportOptions& o);

// The rendered text, ending in a newline.
std::string render(const ExportSpec& spec);

}  // namespace acp::exporter
