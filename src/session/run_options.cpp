#include "acp/session/run_options.hpp"

#include <algorithm>

namespace acp {

std::string requested_backend(const RunOptions& o) {
  if (o.backend == "auto" && o.isolation) return *o.isolation;
  return o.backend;
}

Status validate_run_options(const RunOptions& o) {
  for (const auto* value : {&o.backend, o.isolation ? &*o.isolation : nullptr}) {
    if (!value) continue;
    bool known =
        std::find(kBackendNames.begin(), kBackendNames.end(), *value) != kBackendNames.end();
    const char* flag = value == &o.backend ? "--backend=" : "--isolation=";
    if (!known)
      return make_error(std::string(flag) + *value +
                        ": unknown backend; choose auto, bpf, iptables, docker, preload or none");
  }
  if (o.isolation && o.backend != "auto" && *o.isolation != o.backend)
    return make_error("--backend=" + o.backend + " and --isolation=" + *o.isolation +
                      " disagree: give one of them");
  if (o.audit_only && requested_backend(o) != "auto" && requested_backend(o) != "bpf")
    return make_error(
        "--audit-only needs the bpf backend (its programs report without "
        "blocking); --backend=" +
        requested_backend(o) + " cannot do that");
  if (requested_backend(o) == "docker" && (!o.allow.empty() || o.user || o.allow_root))
    return make_error(
        "--backend=docker runs the agent as the image's user, reaching only the proxy: "
        "--allow, --user and --allow-root do not apply (see acp contain --help)");
  if (requested_backend(o) == "docker" && o.inspect_tls)
    return make_error(
        "--inspect-tls is not available with --backend=docker yet: the container would not "
        "trust ACP's CA; run without it (HTTPS is then judged by host)");
  if (!o.inspect_tls &&
      (!o.inspect_tls_exclude.empty() || !o.upstream_ca.empty() || !o.ca_dir.empty()))
    return make_error(
        "--inspect-tls-exclude, --inspect-tls-upstream-ca and --inspect-tls-ca-dir apply only "
        "with --inspect-tls: add it, or leave them out");
  if (o.door != "auto" && o.door != "proxy" && o.door != "transparent" && o.door != "both")
    return make_error("--door=" + o.door +
                      ": unknown door; choose auto, proxy, transparent or both");
  const bool led = o.door == "transparent" || o.door == "both";  // asked for, not auto
  const std::string b = requested_backend(o);
  if (led && b != "auto" && b != "bpf" && b != "iptables" && b != "docker")
    return make_error("--door=" + o.door +
                      " needs the bpf, iptables or docker backend (their walls lead connections "
                      "to the proxy); --backend=" +
                      b + " cannot: use --door=proxy or --backend=bpf");
  if (led && o.inspect_tls)
    return make_error("--door=" + o.door +
                      " with --inspect-tls is not built yet: led-in TLS is judged by its SNI "
                      "only; use one of them");
  if (o.command.empty() || o.command.front().empty())
    return make_error("no agent command: usage: acp run [OPTIONS] -- CMD [ARGS...]");
  return {};
}

std::string effective_door(const RunOptions& o, bool leads_in) {
  if (o.door != "auto") return o.door;
  return leads_in && !o.audit_only && !o.inspect_tls ? "both" : "proxy";
}

}  // namespace acp
