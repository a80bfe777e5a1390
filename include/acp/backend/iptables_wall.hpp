// The iptables backend: a session's wall as two per-session chains, one for iptables (IPv4)
// and one for ip6tables (IPv6), named ACP-<session id>. OUTPUT jumps to them for every packet
// of a socket in the session cgroup or below (`-m cgroup --path`, the cgroup v2 path relative
// to the cgroup2 mount; sockets keep the cgroup they were created in). The chain ACCEPTs the
// proxy endpoints (and --allow entries), and REJECTs everything else: TCP with a reset (the
// agent's connect() fails with ECONNREFUSED), the rest with port-unreachable (its sendto()
// fails with EPERM, the packet is dropped); a packet from a source that is no address of this
// host (a forged one) is dropped first. With the transparent door, nat OUTPUT holds a chain of
// the same name that REDIRECTs the session's other TCP to the door and its UDP port 53 to the
// door's DNS (render_install_nat).
//
// Installed and removed atomically per family (iptables-restore --noflush; the jump is
// inserted at the top of OUTPUT, nothing else there is touched, and nothing is flushed but our
// own chain). The tools run without a shell, with -w. What the chains cannot see that the BPF
// programs can: see docs/backends.md.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "acp/kernel/endpoint.hpp"
#include "acp/util/result.hpp"

namespace acp::backend {

inline constexpr std::string_view kSessionChainPrefix = "ACP-";

enum class IpFamily { kV4, kV6 };

struct ChainSpec {
  std::string chain;        // "ACP-<session id>"; at most 28 characters
  std::string cgroup_path;  // relative to the cgroup2 mount, e.g. "acp/<session id>"
  std::vector<kernel::Endpoint> allow;
  // The transparent door (docs/transparent.md, "The iptables backend"): its listeners' ports on
  // 127.0.0.1 and [::1] and its DNS responder's; 0: none in that family.
  uint16_t door_port4 = 0;
  uint16_t door_port6 = 0;
  uint16_t dns_port4 = 0;
  uint16_t dns_port6 = 0;
};

// "ACP-<id>".
std::string session_chain_name(std::string_view session_id);
// The session id of a chain named by session_chain_name, or nullopt for any other chain.
std::optional<std::string> session_id_of_chain(std::string_view chain);

// `cgroup_abs` as -m cgroup --path wants it: relative to `cgroup2_root` (no leading '/').
Result<std::string> cgroup_match_path(const std::string& cgroup_abs,
                                      const std::string& cgroup2_root);

// The iptables-restore --noflush input that creates the chain with its rules for one family
// (IPv4: IPv4 and IPv4-mapped endpoints; IPv6: the others) and inserts the jump at the top
// of OUTPUT. Checks the names (chain: [A-Za-z0-9_-], path: no whitespace or quotes).
Result<std::string> render_install(const ChainSpec& spec, IpFamily family);

// With a door port in `family`: the nat table's part, a chain of the same name that nat OUTPUT
// jumps to for the session's packets: the allowed endpoints RETURN untouched, any other TCP is
// REDIRECTed to the door (127.0.0.1 or ::1, the door's port), UDP to port 53 to its DNS. The
// filter chain (render_install) accepts those two ports on loopback. Empty without a door.
Result<std::string> render_install_nat(const ChainSpec& spec, IpFamily family);

// The iptables-restore --noflush input that deletes `jump_rules` (lines as `iptables -S`
// prints them: "-A OUTPUT ... -j <chain>"), then flushes and deletes the chain, in `table`.
std::string render_remove(const std::string& chain, const std::vector<std::string>& jump_rules,
                          std::string_view table = "filter");

// From `iptables -S` output: the chains whose names start with `prefix`, and the rules of the
// built-in chains `from` (OUTPUT for this backend) that jump to `chain`.
std::vector<std::string> chains_in_listing(const std::string& listing, std::string_view prefix);
std::vector<std::string> jumps_in_listing(const std::string& listing, const std::string& chain,
                                          const std::vector<std::string>& from = {"OUTPUT"});

// What this backend and the docker backend's firewall (ACPD-<id>, reached from INPUT and
// FORWARD) share. The families ACP walls: IPv4, and IPv6 when the kernel has it (then
// ip6tables is not optional: without it IPv6 would be a way out).
std::vector<IpFamily> netfilter_families();
const char* iptables_tool(IpFamily f);          // "iptables" or "ip6tables"
const char* iptables_restore_tool(IpFamily f);  // "iptables-restore" or "ip6tables-restore"
// Feeds `render(family)` to iptables-restore --noflush for each family, atomically per family;
// when one fails, removes `chain` again from the families already done.
Status install_chain(const std::string& chain, const std::vector<std::string>& from,
                     const std::function<Result<std::string>(IpFamily)>& render);
// Deletes the jumps to `chain` from `from`, then flushes and deletes it, in each family that
// has it; a family without the chain or without the tool is skipped.
Status remove_chain(const std::string& chain, const std::vector<std::string>& from);

// Installs both families (IPv6 only when ip6tables exists and the kernel has IPv6). On failure
// whatever was installed is removed again. The cgroup must exist.
Status install_iptables_wall(const ChainSpec& spec);
// Removes the jumps and the chains of `chain` in both families and both tables (filter, nat);
// nothing there is success.
Status remove_iptables_wall(const std::string& chain);
// Every chain named `prefix`* in iptables and ip6tables, filter and nat (sorted, unique).
Result<std::vector<std::string>> list_iptables_chains(std::string_view prefix);

// True when the iptables backend works here: root, iptables(-restore), the cgroup2 mount, and
// a rule with `-m cgroup --path` and REJECT that installs and removes in a scratch chain of
// each family (on a scratch cgroup). Cached per process, like kernel::bpf_backend_supported.
bool iptables_backend_supported(std::string* why = nullptr);
// True when, beyond that, the transparent door can be built here: a REDIRECT rule installs and
// removes in a scratch chain of each family's nat table. Cached per process.
bool iptables_door_supported(std::string* why = nullptr);

}  // namespace acp::backend
