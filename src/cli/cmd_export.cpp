// acp export --format=F [--proxy-port=N] [--proxy-address=ADDR]... [--allow=ADDR:PORT]...
//            [--uid=USER | --cgroup=PATH] [--name=NAME] [--policy=FILE]
//            [--acp-image=IMG] [--agent-image=IMG] [-o FILE]
// Renders the isolation policy for an enforcement point ACP does not run on (docs/export.md).
#include <cstdio>
#include <memory>
#include <string>

#include "acp/cli/commands.hpp"
#include "acp/export/export.hpp"
#include "acp/util/atomic_file.hpp"

namespace acp::cli {
namespace {

struct ExportArgs {
  exporter::ExportOptions opts;
  int proxy_port = 8443;
  std::string uid, cgroup, acp_image, agent_image, policy, output;
};

int run_export(ExportArgs& a) {
  if (a.proxy_port < 1 || a.proxy_port > 65535) {
    std::fprintf(stderr, "acp export: --proxy-port=%d: expected a port from 1 to 65535\n",
                 a.proxy_port);
    return 2;
  }
  a.opts.proxy_port = static_cast<uint16_t>(a.proxy_port);
  if (!a.uid.empty()) a.opts.uid = a.uid;
  if (!a.cgroup.empty()) a.opts.cgroup = a.cgroup;
  if (!a.acp_image.empty()) a.opts.acp_image = a.acp_image;
  if (!a.agent_image.empty()) a.opts.agent_image = a.agent_image;
  if (!a.policy.empty()) a.opts.policy = a.policy;
  auto spec = exporter::make_spec(a.opts);
  if (!spec) {
    std::fprintf(stderr, "acp export: %s\n", spec.error().message().c_str());
    return 2;
  }
  std::string text = exporter::render(*spec);
  if (a.output.empty() || a.output == "-") {
    std::fwrite(text.data(), 1, text.size(), stdout);
    return std::fflush(stdout) == 0 ? 0 : 1;
  }
  // Atomic: a reader (a firewall reload) never sees half a rule set.
  if (auto st = util::write_file_atomic(a.output, text, 0644); !st) {
    std::fprintf(stderr, "acp export: %s\n", st.error().message().c_str());
    return 1;
  }
  return 0;
}

}  // namespace

void register_export(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand(
      "export",
      "Render the isolation policy (only the consent proxy, plus exact --allow entries, is "
      "reachable) for nftables, iptables, pf, cloud security groups or docker-compose");
  auto a = std::make_shared<ExportArgs>();
  std::string formats;
  for (auto f : exporter::all_formats())
    formats += (formats.empty() ? "" : "|") + std::string(exporter::format_name(f));
  cmd->add_option("--format", a->opts.format, formats)->required();
  cmd->add_option("--proxy-port", a->proxy_port, "The consent proxy's port (default 8443)");
  cmd->add_option("--proxy-address", a->opts.proxy_addresses,
                  "Where the proxy listens (repeatable; default 127.0.0.1 and ::1; the cloud "
                  "formats need the ACP host's address)")
      ->allow_extra_args(false);
  cmd->add_option("--allow", a->opts.allow,
                  "Also reachable: ADDR:PORT[/tcp|/udp], exact (repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("--uid", a->uid, "nftables/iptables/pf: confine this user's sockets");
  cmd->add_option("--cgroup", a->cgroup,
                  "nftables/iptables: confine this cgroup v2 subtree (default acp, where "
                  "`acp run` puts its sessions)");
  cmd->add_option("--name", a->opts.name,
                  "Cloud resource names and the GCP target tag (default acp-agent)");
  cmd->add_option("--policy", a->policy, "The consent policy the proxy runs (checked, named)");
  cmd->add_option("--acp-image", a->acp_image, "compose: the image that runs acp");
  cmd->add_option("--agent-image", a->agent_image, "compose: the agent's image");
  cmd->add_option("-o,--output", a->output, "Write to FILE instead of standard output");
  cmd->callback([a, &exit_code] { exit_code = run_export(*a); });
}

}  // namespace acp::cli
