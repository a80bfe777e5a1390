#include "acp/backend/iptables_wall.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <set>
#include <sstream>

#include "acp/backend/command.hpp"
#include "acp/cgroup/mounts.hpp"
#include "acp/util/session_id.hpp"

namespace acp::backend {
namespace {

constexpr size_t kMaxChainName = 28;  // XT_EXTENSION_MAXNAMELEN - 1

bool valid_chain(std::string_view c) {
  if (c.empty() || c.size() > kMaxChainName) return false;
  return std::all_of(c.begin(), c.end(), [](char ch) {
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '_';
  });
}

bool valid_path(std::string_view p) {
  if (p.empty() || p.front() == '/') return false;
  return std::none_of(p.begin(), p.end(), [](char ch) {
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '"' || ch == '\'' || ch == '\\';
  });
}

std::string tail(const std::string& s) {
  std::string t = s;
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  return t;
}

Status restore(IpFamily f, const std::string& input, const std::string& what) {
  auto tool = find_tool(iptables_restore_tool(f));
  if (!tool)
    return make_error(std::string(iptables_restore_tool(f)) +
                      " not found: install the iptables package (apt-get install iptables)");
  auto r = run_command({*tool, "-w", "--noflush"}, input);
  if (!r) return r.error();
  if (r->exit_code != 0)
    return make_error(std::string(iptables_restore_tool(f)) + " " + what + " failed (exit " +
                      std::to_string(r->exit_code) + "): " + tail(r->err + r->out));
  return {};
}

// The tables ACP puts chains in: filter (the walls) and nat (the iptables transparent door).
constexpr const char* kTables[] = {"filter", "nat"};

Result<std::string> listing(IpFamily f, const char* table) {
  auto tool = find_tool(iptables_tool(f));
  if (!tool)
    return make_error(std::string(iptables_tool(f)) +
                      " not found: install the iptables package (apt-get install iptables)");
  auto r = run_command({*tool, "-w", "-t", table, "-S"});
  if (!r) return r.error();
  if (r->exit_code != 0)
    return make_error(std::string(iptables_tool(f)) + " -t " + table + " -S failed (exit " +
                      std::to_string(r->exit_code) + "): " + tail(r->err));
  return r->out;
}

// The nat table may be missing on a host that never used it (no module): then it holds no chain
// of ours either, since installing one would have loaded it.
Result<std::string> listing_or_empty(IpFamily f, const char* table) {
  auto text = listing(f, table);
  if (!text && std::string_view(table) == "nat") return std::string();
  return text;
}

// Removes `chain` from both tables of family `f`, in one iptables-restore: nat first (the
// redirect), then filter (the wall), so no moment leads anything anywhere unwalled.
Status remove_family(IpFamily f, const std::string& chain, const std::vector<std::string>& from) {
  std::string input;
  for (const char* table : {"nat", "filter"}) {
    auto text = listing_or_empty(f, table);
    if (!text) return text.error();
    auto chains = chains_in_listing(*text, chain);
    if (std::find(chains.begin(), chains.end(), chain) == chains.end()) continue;
    input += render_remove(chain, jumps_in_listing(*text, chain, from), table);
  }
  if (input.empty()) return {};
  return restore(f, input, "removing " + chain);
}

// The door's and its DNS's ports in `family`; 0: none (no door, or no IPv6 loopback).
std::pair<uint16_t, uint16_t> door_ports(const ChainSpec& spec, IpFamily family) {
  return family == IpFamily::kV4 ? std::pair{spec.door_port4, spec.dns_port4}
                                 : std::pair{spec.door_port6, spec.dns_port6};
}

// One rule per allowed TCP or UDP endpoint of `family` (IPv4: IPv4 and IPv4-mapped), jumping
// to `target`, without repeats.
std::vector<std::string> endpoint_rules(const ChainSpec& spec, IpFamily family,
                                        const std::string& target) {
  const bool v4 = family == IpFamily::kV4;
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& ep : spec.allow) {
    if (kernel::is_ipv4(ep) != v4) continue;
    const std::string proto = kernel::proto_name(ep.proto);
    if (proto != "tcp" && proto != "udp") continue;
    std::string rule = "-A " + spec.chain + " -d " + kernel::address_string(ep.addr) +
                       (v4 ? "/32" : "/128") + " -p " + proto + " -m " + proto + " --dport " +
                       std::to_string(ep.port) + " -j " + target;
    if (seen.insert(rule).second) out.push_back(std::move(rule));
  }
  return out;
}

std::vector<std::string> split_ws(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> out;
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

}  // namespace

std::string session_chain_name(std::string_view session_id) {
  return std::string(kSessionChainPrefix) + std::string(session_id);
}

std::optional<std::string> session_id_of_chain(std::string_view chain) {
  if (chain.substr(0, kSessionChainPrefix.size()) != kSessionChainPrefix) return std::nullopt;
  std::string id(chain.substr(kSessionChainPrefix.size()));
  if (!valid_session_id(id)) return std::nullopt;
  return id;
}

Result<std::string> cgroup_match_path(const std::string& cgroup_abs,
                                      const std::string& cgroup2_root) {
  std::string root = cgroup2_root;
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  if (cgroup_abs.size() <= root.size() + 1 || cgroup_abs.compare(0, root.size(), root) != 0 ||
      cgroup_abs[root.size()] != '/')
    return make_error("cgroup " + cgroup_abs + " is not below the cgroup2 mount " + root);
  return cgroup_abs.substr(root.size() + 1);
}

Result<std::string> render_install(const ChainSpec& spec, IpFamily family) {
  if (!valid_chain(spec.chain))
    return make_error("invalid iptables chain name \"" + spec.chain +
                      "\" (letters, digits, - and _, at most 28)");
  if (!valid_path(spec.cgroup_path))
    return make_error("invalid cgroup path \"" + spec.cgroup_path +
                      "\" for -m cgroup --path (relative, no spaces or quotes)");
  const bool v4 = family == IpFamily::kV4;
  const std::string& c = spec.chain;
  std::ostringstream o;
  o << "*filter\n";
  o << ":" << c << " - [0:0]\n";
  // A packet whose source is no address of this host (IP(V6)_FREEBIND needs no privilege) is
  // dropped before anything: accepted, the answer would leave the machine; rejected, the ICMP
  // error would carry the agent's bytes there.
  o << "-A " << c << " -m addrtype ! --src-type LOCAL -j DROP\n";
  // The transparent door and its DNS on loopback: filter sees the destination nat OUTPUT made.
  const auto [door, dns] = door_ports(spec, family);
  const char* loopback = v4 ? "127.0.0.1/32" : "::1/128";
  if (door != 0)
    o << "-A " << c << " -d " << loopback << " -p tcp -m tcp --dport " << door << " -j ACCEPT\n";
  if (door != 0 && dns != 0)
    o << "-A " << c << " -d " << loopback << " -p udp -m udp --dport " << dns << " -j ACCEPT\n";
  for (const auto& rule : endpoint_rules(spec, family, "ACCEPT")) o << rule << "\n";
  o << "-A " << c << " -p tcp -j REJECT --reject-with tcp-reset\n";
  o << "-A " << c << " -j REJECT --reject-with "
    << (v4 ? "icmp-port-unreachable" : "icmp6-port-unreachable") << "\n";
  o << "-I OUTPUT 1 -m cgroup --path " << spec.cgroup_path << " -j " << c << "\n";
  o << "COMMIT\n";
  return o.str();
}

Result<std::string> render_install_nat(const ChainSpec& spec, IpFamily family) {
  const auto [door, dns] = door_ports(spec, family);
  if (door == 0) return std::string();
  if (!valid_chain(spec.chain) || !valid_path(spec.cgroup_path))
    return make_error("invalid iptables chain \"" + spec.chain + "\" or cgroup path \"" +
                      spec.cgroup_path + "\"");
  const std::string& c = spec.chain;
  std::ostringstream o;
  o << "*nat\n";
  o << ":" << c << " - [0:0]\n";
  // What the wall lets through goes where it was going.
  for (const auto& rule : endpoint_rules(spec, family, "RETURN")) o << rule << "\n";
  o << "-A " << c << " -p tcp -j REDIRECT --to-ports " << door << "\n";
  if (dns != 0)
    o << "-A " << c << " -p udp -m udp --dport 53 -j REDIRECT --to-ports " << dns << "\n";
  o << "-I OUTPUT 1 -m cgroup --path " << spec.cgroup_path << " -j " << c << "\n";
  o << "COMMIT\n";
  return o.str();
}

std::string render_remove(const std::string& chain, const std::vector<std::string>& jump_rules,
                          std::string_view table) {
  std::ostringstream o;
  o << "*" << table << "\n";
  for (const auto& r : jump_rules) {
    auto words = split_ws(r);
    if (words.size() < 2 || words[0] != "-A") continue;
    o << "-D";
    for (size_t i = 1; i < words.size(); ++i) o << " " << words[i];
    o << "\n";
  }
  o << "-F " << chain << "\n";
  o << "-X " << chain << "\n";
  o << "COMMIT\n";
  return o.str();
}

std::vector<std::string> chains_in_listing(const std::string& text, std::string_view prefix) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    auto w = split_ws(line);
    if (w.size() == 2 && w[0] == "-N" && w[1].compare(0, prefix.size(), prefix) == 0)
      out.push_back(w[1]);
  }
  return out;
}

std::vector<std::string> jumps_in_listing(const std::string& text, const std::string& chain,
                                          const std::vector<std::string>& from) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    auto w = split_ws(line);
    if (w.size() >= 4 && w[0] == "-A" && std::find(from.begin(), from.end(), w[1]) != from.end() &&
        w[w.size() - 2] == "-j" && w.back() == chain)
      out.push_back(line);
  }
  return out;
}

std::vector<IpFamily> netfilter_families() {
  struct stat st {};
  if (::stat("/proc/net/if_inet6", &st) == 0) return {IpFamily::kV4, IpFamily::kV6};
  return {IpFamily::kV4};
}

const char* iptables_tool(IpFamily f) {
  return f == IpFamily::kV4 ? "iptables" : "ip6tables";
}

const char* iptables_restore_tool(IpFamily f) {
  return f == IpFamily::kV4 ? "iptables-restore" : "ip6tables-restore";
}

Status install_chain(const std::string& chain, const std::vector<std::string>& from,
                     const std::function<Result<std::string>(IpFamily)>& render) {
  std::vector<IpFamily> done;
  for (IpFamily f : netfilter_families()) {
    auto text = render(f);
    Status st = text ? restore(f, *text, "installing " + chain) : Status(text.error());
    if (!st) {
      for (IpFamily d : done) (void)remove_family(d, chain, from);
      return st;
    }
    done.push_back(f);
  }
  return {};
}

Status remove_chain(const std::string& chain, const std::vector<std::string>& from) {
  Status first;
  for (IpFamily f : netfilter_families()) {
    if (!find_tool(iptables_tool(f))) continue;  // never installed without it
    if (auto st = remove_family(f, chain, from); !st && first) first = st;
  }
  return first;
}

Status install_iptables_wall(const ChainSpec& spec) {
  // The wall (filter) is committed before the redirect (nat), in one input per family.
  return install_chain(spec.chain, {"OUTPUT"}, [&](IpFamily f) -> Result<std::string> {
    auto wall = render_install(spec, f);
    if (!wall) return wall.error();
    auto nat = render_install_nat(spec, f);
    if (!nat) return nat.error();
    return *wall + *nat;
  });
}

Status remove_iptables_wall(const std::string& chain) {
  if (!valid_chain(chain)) return make_error("invalid iptables chain name \"" + chain + "\"");
  return remove_chain(chain, {"OUTPUT"});
}

Result<std::vector<std::string>> list_iptables_chains(std::string_view prefix) {
  std::set<std::string> all;
  for (IpFamily f : netfilter_families()) {
    if (!find_tool(iptables_tool(f))) continue;
    for (const char* table : kTables) {
      auto text = listing_or_empty(f, table);
      if (!text) return text.error();
      for (auto& c : chains_in_listing(*text, prefix)) all.insert(c);
    }
  }
  return std::vector<std::string>(all.begin(), all.end());
}

bool iptables_backend_supported(std::string* why) {
  static std::once_flag once;
  static bool supported = false;
  static std::string reason;
  std::call_once(once, [] {
    if (::geteuid() != 0) {
      reason = "privileges: not root (iptables chains need CAP_NET_ADMIN)";
      return;
    }
    for (IpFamily f : netfilter_families())
      for (const char* t : {iptables_tool(f), iptables_restore_tool(f)})
        if (!find_tool(t)) {
          reason = std::string(t) + " not found: apt-get install iptables";
          return;
        }
    auto root = cgroup2_mount_point();
    if (!root) {
      reason = "cgroup2: " + root.error().message();
      return;
    }
    const std::string rel = "acp-probe-ipt-" + std::to_string(::getpid());
    const std::string dir = *root + "/" + rel;
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      reason = errno_error("mkdir scratch cgroup " + dir).message();
      return;
    }
    const std::string chain = "ACPPROBE-" + std::to_string(::getpid());
    for (IpFamily f : netfilter_families()) {
      std::string text = "*filter\n:" + chain + " - [0:0]\n-A " + chain + " -m cgroup --path " +
                         rel + " -p tcp -j REJECT --reject-with tcp-reset\n-A " + chain +
                         " -m addrtype ! --src-type LOCAL -j DROP\nCOMMIT\n";
      auto st = restore(f, text, "probing -m cgroup --path");
      (void)remove_family(f, chain, {});
      if (!st) {
        reason = "xt_cgroup: " + st.error().message();
        ::rmdir(dir.c_str());
        return;
      }
    }
    ::rmdir(dir.c_str());
    supported = true;
  });
  if (why) *why = reason;
  return supported;
}

bool iptables_door_supported(std::string* why) {
  static std::once_flag once;
  static bool supported = false;
  static std::string reason;
  std::call_once(once, [] {
    if (!iptables_backend_supported(&reason)) return;
    const std::string chain = "ACPPROBE-" + std::to_string(::getpid());
    for (IpFamily f : netfilter_families()) {
      std::string text = "*nat\n:" + chain + " - [0:0]\n-A " + chain +
                         " -p tcp -j REDIRECT --to-ports 1\nCOMMIT\n";
      auto st = restore(f, text, "probing nat REDIRECT");
      (void)remove_family(f, chain, {});
      if (!st) {
        reason = "nat REDIRECT: " + st.error().message();
        return;
      }
    }
    supported = true;
  });
  if (why) *why = reason;
  return supported;
}

}  // namespace acp::backend
