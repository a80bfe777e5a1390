// The backends that build a session's wall, and how `acp run --backend=auto` picks one.
//
//   bpf       cgroup BPF sock_addr programs on the session cgroup (src/kernel): strongest.
//   iptables  per-session iptables/ip6tables chains matching the session cgroup
//             (-m cgroup --path), for kernels without cgroup BPF (iptables_wall.hpp).
//   docker    the agent in a container on a per-session --internal network whose only
//             reachable address is the session proxy (docker_wall.hpp; acp contain).
//   preload   LD_PRELOAD library refusing connect/sendto/sendmsg (preload.hpp): no root, weak.
//   none      proxy-only: the agent can bypass the proxy.
// See docs/backends.md for what each one enforces and what it cannot.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "acp/util/result.hpp"

namespace acp::backend {

enum class Kind { kBpf, kIptables, kDocker, kPreload, kNone };

// "bpf", "iptables", "docker", "preload", "none".
std::string_view kind_name(Kind k);
std::optional<Kind> parse_kind(std::string_view name);

// What `acp status` prints for a session held by this backend, exactly:
//   Network: 🔒 Isolated (bpf) | 🔒 Isolated (iptables) | 🔒 Isolated (Docker)
//   Network: ⚠️ Weak isolation (preload) | ⚠️ No isolation (proxy-only)
std::string mode_line(Kind k);
// The same for a backend name read from a session record; unknown names say so.
std::string mode_line(std::string_view backend_name);

// The loud warnings of the weak backends (from the origin docs), printed on stderr by acp run.
inline constexpr const char* kNoIsolationWarning =
    "⚠️  Warning: No network isolation. Agent can bypass ACP proxy. (--backend=none: "
    "proxy-only; "
    "use it for development only)";
inline constexpr const char* kPreloadWarning =
    "⚠️  Warning: Weak isolation (preload). An LD_PRELOAD library refuses connections other "
    "than the ACP proxy, but statically linked programs and direct system calls bypass it.";

// What auto-selection looks at. The real one (system_probe) uses geteuid(), the kernel feature
// probe that `acp doctor` runs (kernel::bpf_backend_supported), the iptables probe
// (iptables_backend_supported) and the docker probe (docker_backend_supported: a reachable
// dockerd); tests pass a fake.
class BackendProbe {
 public:
  virtual ~BackendProbe() = default;
  virtual bool privileged() const = 0;
  virtual bool bpf_usable(std::string* why) const = 0;
  virtual bool iptables_usable(std::string* why) const = 0;
  // Only asked when bpf and iptables are not usable (auto) or docker is asked for.
  virtual bool docker_usable(std::string* why) const {
    if (why) *why = "not probed";
    return false;
  }
};
const BackendProbe& system_probe();

struct Selection {
  Kind kind = Kind::kNone;
  std::string note;     // why auto chose it, e.g. "cgroup BPF unavailable (...): iptables"
  std::string warning;  // preload and none: to be printed loudly before the agent starts
};

// `requested`: auto, bpf, iptables, docker, preload or none.
//  - auto as root: bpf when usable, else iptables when usable, else docker when dockerd is
//    reachable, else an error that names the reasons and offers --backend=none. Without root: an
//    error offering --backend=preload or
//    --backend=none with their warnings (never a silent unconfined run).
//  - bpf and iptables need root and a working probe; the error says what to do.
//  - docker needs root and a reachable dockerd (then the session runs as `acp contain`).
//  - preload and none are always possible and carry their warning.
Result<Selection> select_backend(std::string_view requested, const BackendProbe& probe);

}  // namespace acp::backend
