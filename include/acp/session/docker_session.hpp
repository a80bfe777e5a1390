// `acp contain` and `acp run --backend=docker`: one session whose wall is a container on a
// per-session --internal docker network (acp/backend/docker_wall.hpp), with the same session
// proxy (policy, consent, audit) as `acp run`, listening on that network's gateway only.
//
// Order: record -> network (gateway on the host's bridge) -> proxy bound on gateway:port ->
// firewall (ACPD-<id>: only gateway:port from the bridge) -> `docker run` (hardened) -> wait
// -> container removed -> proxy stopped -> firewall and network removed -> record removed.
// Signals (SIGINT, SIGTERM, SIGHUP, SIGQUIT) go to `docker run` (which passes them to the
// container); a second SIGINT/SIGTERM removes the container at once. If acp is killed, the
// container keeps running behind its firewall with no proxy (fail-closed); `acp gc --kill`
// removes it, `acp gc` removes whatever is left of sessions whose container is gone.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "acp/session/run_options.hpp"
#include "acp/util/result.hpp"

namespace acp {

struct ContainOptions {
  std::optional<std::string> image;      // default: $ACP_AGENT_IMAGE, else acp-agent:latest
  std::optional<std::string> workspace;  // default: the current directory
  bool no_workspace = false;             // --no-workspace: mount nothing
  bool writable = false;
  std::vector<std::string> env;  // names passed through
  std::optional<uint16_t> proxy_port;
  std::optional<std::string> policy;
  std::string audit_log;
  std::string config;
  // both: the bridge's other TCP is led to the transparent door on the gateway
  // (docs/transparent.md); proxy: refused; auto: both where nat works here
  // (backend::iptables_door_supported), else proxy.
  std::string door = "auto";
  std::vector<std::string> command;
};

// `acp run --backend=docker`: the same session as `acp contain` with its defaults
// ($ACP_AGENT_IMAGE or acp-agent:latest, the current directory as a read-only workspace).
// The options a container cannot honour are refused here, by name, never dropped.
Result<ContainOptions> contain_options_for_run(const RunOptions& o);

// Runs the session; returns the container's exit status, or 125 when acp (or docker) failed.
int run_docker_session(const ContainOptions& o);

}  // namespace acp
