// Host firewalls: nftables, iptables-restore (IPv4 and IPv6) and macOS pf. Each matches the
// agent's sockets (cgroup v2 or uid; pf: uid), accepts the proxy and the allow entries, and
// rejects the rest so a connect() fails at once instead of hanging on a dropped SYN.
// No "established" shortcut: replies go to INPUT, and an agent answering inbound traffic
// would be a way out that the BPF wall does not open either.
#include <string>

#include "renderers.hpp"

namespace acp::exporter::detail {
namespace {

std::string selector_text(const ExportSpec& s) {
  if (s.selector.kind == Selector::Kind::Uid)
    return "sockets of uid " + std::to_string(s.selector.uid);
  return "sockets of processes in cgroup v2 \"" + s.selector.cgroup + "\" and below it";
}

}  // namespace

std::string render_nftables(const ExportSpec& s) {
  std::string o = "#!/usr/sbin/nft -f\n";
  o += header(s, "# ");
  o += "# Confines: " + selector_text(s) + ".\n";
  o += "# Apply: nft -f FILE (replaces an earlier version)   Remove: nft delete table inet "
       "acp_isolation\n";
  o += "table inet acp_isolation\n";
  o += "delete table inet acp_isolation\n";
  o += "table inet acp_isolation {\n";
  o += "\tchain output {\n";
  o += "\t\ttype filter hook output priority filter; policy accept;\n";
  if (s.selector.kind == Selector::Kind::Uid) {
    o += "\t\tmeta skuid " + std::to_string(s.selector.uid) + " jump agent\n";
  } else {
    int level = 1;
    for (char c : s.selector.cgroup) level += c == '/';
    o += "\t\tsocket cgroupv2 level " + std::to_string(level) + " \"" + s.selector.cgroup +
         "\" jump agent\n";
  }
  o += "\t}\n\n";
  o += "\tchain agent {\n";
  for (const auto& e : entries(s)) {
    const bool v4 = kernel::is_ipv4(e.ep);
    o += std::string("\t\t") + (v4 ? "ip" : "ip6") + " daddr " + addr_text(e.ep) + " " +
         kernel::proto_name(e.ep.proto) + " dport " + std::to_string(e.ep.port) +
         " accept comment \"" + e.what + "\"\n";
  }
  o += "\t\tmeta l4proto tcp reject with tcp reset\n";
  o += "\t\treject with icmpx admin-prohibited\n";
  o += "\t}\n";
  o += "}\n";
  return o;
}

std::string render_iptables(const ExportSpec& s, bool ipv6) {
  const std::string tool = ipv6 ? "ip6tables" : "iptables";
  std::string match = s.selector.kind == Selector::Kind::Uid
                          ? "-m owner --uid-owner " + std::to_string(s.selector.uid)
                          : "-m cgroup --path " + s.selector.cgroup;
  std::string o = header(s, "# ");
  o += std::string("# This file: the ") + (ipv6 ? "IPv6" : "IPv4") + " rules (" + tool +
       "-restore); the " + (ipv6 ? "IPv4" : "IPv6") +
       " ones: --format=" + (ipv6 ? "iptables" : "ip6tables") + ".\n";
  o += "# Confines: " + selector_text(s) + ".\n";
  o += "# Apply: " + tool + "-restore --noflush < FILE\n";
  o += "# Remove: " + tool + " -D OUTPUT " + match + " -j ACP_AGENT; " + tool + " -F ACP_AGENT; " +
       tool + " -X ACP_AGENT\n";
  o += "*filter\n";
  o += ":ACP_AGENT - [0:0]\n";
  o += "-I OUTPUT 1 " + match + " -j ACP_AGENT\n";
  for (const auto& e : entries(s)) {
    if (kernel::is_ipv4(e.ep) == ipv6) continue;
    const std::string p = kernel::proto_name(e.ep.proto);
    o += "-A ACP_AGENT -d " + cidr(e.ep) + " -p " + p + " -m " + p + " --dport " +
         std::to_string(e.ep.port) + " -m comment --comment \"" + e.what + "\" -j ACCEPT\n";
  }
  o += "-A ACP_AGENT -p tcp -j REJECT --reject-with tcp-reset\n";
  o += std::string("-A ACP_AGENT -j REJECT --reject-with ") +
       (ipv6 ? "icmp6-adm-prohibited" : "icmp-admin-prohibited") + "\n";
  o += "COMMIT\n";
  return o;
}

std::string render_pf(const ExportSpec& s) {
  const std::string user = "user " + std::to_string(s.selector.uid);
  std::string o = "# ACP isolation anchor for macOS pf.\n";
  o += header(s, "# ");
  o += "# Confines: TCP and UDP sockets of uid " + std::to_string(s.selector.uid) +
       " (pf matches users on TCP and UDP only).\n";
  o += "# Apply: sudo cp FILE /etc/pf.anchors/acp, add to /etc/pf.conf\n";
  o += "#   anchor \"acp\"\n";
  o += "#   load anchor \"acp\" from \"/etc/pf.anchors/acp\"\n";
  o += "# then: sudo pfctl -f /etc/pf.conf && sudo pfctl -E   (see docs/export.md)\n";
  for (const auto& e : entries(s)) {
    const bool v4 = kernel::is_ipv4(e.ep);
    o += std::string("pass out quick ") + (v4 ? "inet" : "inet6") + " proto " +
         kernel::proto_name(e.ep.proto) + " from any to " + addr_text(e.ep) + " port " +
         std::to_string(e.ep.port) + " " + user + " keep state\n";
  }
  o += "block return out quick inet proto { tcp, udp } from any to any " + user + "\n";
  o += "block return out quick inet6 proto { tcp, udp } from any to any " + user + "\n";
  return o;
}

}  // namespace acp::exporter::detail
