#include "acp/backend/backend.hpp"

#include <unistd.h>

#include "acp/backend/docker_wall.hpp"
#include "acp/backend/iptables_wall.hpp"
#include "acp/kernel/probe.hpp"

namespace acp::backend {
namespace {

class SystemProbe final : public BackendProbe {
 public:
  bool privileged() const override { return ::geteuid() == 0; }
  bool bpf_usable(std::string* why) const override { return kernel::bpf_backend_supported(why); }
  bool iptables_usable(std::string* why) const override { return iptables_backend_supported(why); }
  bool docker_usable(std::string* why) const override { return docker_backend_supported(why); }
};

std::string offer_weak_backends() {
  return "choose one explicitly: --backend=preload (weak: an LD_PRELOAD library; statically "
         "linked programs and direct system calls bypass it) or --backend=none (no isolation: "
         "the agent can bypass the ACP proxy)";
}

}  // namespace

std::string_view kind_name(Kind k) {
  switch (k) {
    case Kind::kBpf:
      return "bpf";
    case Kind::kIptables:
      return "iptables";
    case Kind::kDocker:
      return "docker";
    case Kind::kPreload:
      return "preload";
    case Kind::kNone:
      return "none";
  }
  return "none";
}

std::optional<Kind> parse_kind(std::string_view name) {
  for (Kind k : {Kind::kBpf, Kind::kIptables, Kind::kDocker, Kind::kPreload, Kind::kNone})
    if (kind_name(k) == name) return k;
  return std::nullopt;
}

std::string mode_line(Kind k) {
  switch (k) {
    case Kind::kBpf:
      return "Network: 🔒 Isolated (bpf)";
    case Kind::kIptables:
      return "Network: 🔒 Isolated (iptables)";
    case Kind::kDocker:
      return "Network: 🔒 Isolated (Docker)";
    case Kind::kPreload:
      return "Network: ⚠️ Weak isolation (preload)";
    case Kind::kNone:
      return "Network: ⚠️ No isolation (proxy-only)";
  }
  return "Network: ⚠️ No isolation (proxy-only)";
}

std::string mode_line(std::string_view backend_name) {
  if (auto k = parse_kind(backend_name)) return mode_line(*k);
  return "Network: ? (unknown backend \"" + std::string(backend_name) + "\")";
}

const BackendProbe& system_probe() {
  static const SystemProbe probe;
  return probe;
}

Result<Selection> select_backend(std::string_view requested, const BackendProbe& probe) {
  Selection sel;
  if (requested == "auto") {
    if (!probe.privileged())
      return make_error(
          "without root, acp run cannot build a kernel wall (cgroup BPF and "
          "iptables need root): run `sudo acp run -- CMD`, or " +
          offer_weak_backends());
    std::string bpf_why, ipt_why;
    if (probe.bpf_usable(&bpf_why)) {
      sel.kind = Kind::kBpf;
      return sel;
    }
    if (probe.iptables_usable(&ipt_why)) {
      sel.kind = Kind::kIptables;
      sel.note = "cgroup BPF is not usable here (" + bpf_why + "): using the iptables backend";
      return sel;
    }
    std::string docker_why;
    if (probe.docker_usable(&docker_why)) {
      sel.kind = Kind::kDocker;
      sel.note = "neither cgroup BPF (" + bpf_why + ") nor iptables (" + ipt_why +
                 ") is usable here: using the docker backend (the agent runs in a container)";
      return sel;
    }
    return make_error("no isolation backend works on this machine: bpf: " + bpf_why +
                      "; iptables: " + ipt_why + "; docker: " + docker_why +
                      " (run `acp doctor` for details); to run the agent without isolation "
                      "anyway, say so: --backend=none (the agent can bypass the ACP proxy)");
  }
  auto kind = parse_kind(requested);
  if (!kind)
    return make_error("--backend=" + std::string(requested) +
                      ": unknown backend; choose auto, bpf, iptables, docker, preload or none");
  sel.kind = *kind;
  switch (*kind) {
    case Kind::kBpf: {
      if (!probe.privileged())
        return make_error(
            "the bpf backend needs root to load programs and create cgroups: run it as "
            "`sudo acp run -- CMD`");
      std::string why;
      if (!probe.bpf_usable(&why))
        return make_error("cgroup BPF is not usable on this machine: " + why +
                          " (run `acp doctor` for details; --backend=iptables may work)");
      return sel;
    }
    case Kind::kIptables: {
      if (!probe.privileged())
        return make_error(
            "the iptables backend needs root to install chains and create cgroups: run it as "
            "`sudo acp run --backend=iptables -- CMD`");
      std::string why;
      if (!probe.iptables_usable(&why))
        return make_error("the iptables backend is not usable on this machine: " + why +
                          " (run `acp doctor` for details)");
      return sel;
    }
    case Kind::kDocker: {
      if (!probe.privileged())
        return make_error(
            "the docker backend needs root for the session's firewall: run it as `sudo acp "
            "contain -- CMD` (or `sudo acp run --backend=docker -- CMD`)");
      std::string why;
      if (!probe.docker_usable(&why))
        return make_error("the docker backend is not usable on this machine: " + why +
                          " (run `acp doctor` for details)");
      return sel;
    }
    case Kind::kPreload:
      sel.warning = kPreloadWarning;
      return sel;
    case Kind::kNone:
      sel.warning = kNoIsolationWarning;
      return sel;
  }
  return sel;
}

}  // namespace acp::backend
