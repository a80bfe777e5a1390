// `acp run` options: declared to CLI11 in one place (add_run_options, acp/cli/command_options.hpp)
// so the command and the tests use the same definitions, then validated into a RunPlan-ready
// form here.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "acp/util/result.hpp"

namespace acp {

inline constexpr uint16_t kDefaultProxyPort = 8443;

// What --backend (and --isolation) accept: listed by --help, the man page and the shell
// completions (the options' type name) and checked by validate_run_options.
inline const std::vector<std::string> kBackendNames = {"auto",   "bpf",     "iptables",
                                                       "docker", "preload", "none"};

struct RunOptions {
  std::string backend = "auto";          // auto | bpf | iptables | docker | preload | none
  std::optional<std::string> isolation;  // --isolation=preload: the origin docs' spelling
  std::optional<uint16_t> proxy_port;    // unset: 8443, or the next free port when 8443 is taken
  std::vector<std::string> allow;        // ADDR:PORT[/udp|/tcp], exact
  std::vector<std::string> allow_unix;   // AF_UNIX names the agent may reach: /path or @abstract
  std::optional<std::string> user;
  bool allow_root = false;
  bool audit_only = false;
  std::optional<std::string> policy;
  std::string audit_log;  // empty: /var/log/acp/audit.jsonl
  std::string config;     // empty: /etc/acp/config.yml (missing: defaults)
  bool json_events = false;
  uint64_t max_tasks = 4096;                     // see acp/launch/task_limit.hpp
  bool inspect_tls = false;                      // docs/tls-inspection.md
  std::vector<std::string> inspect_tls_exclude;  // host globs tunnelled untouched
  std::string upstream_ca;  // --inspect-tls-upstream-ca: origins' CA file (empty: system store)
  std::string ca_dir;       // --inspect-tls-ca-dir (empty: /var/lib/acp/ca)
  // auto: register with a running `acp daemon` when there is one (root, bpf or auto backend),
  // else run standalone; never (--no-daemon): standalone; required: the daemon or fail.
  std::string daemon = "auto";
  std::string daemon_socket;  // empty: /run/acp/daemon.sock ($ACP_RUN_DIR/daemon.sock)
  // proxy: only the explicit door (HTTP(S)_PROXY); transparent: every other TCP connect is led
  // to the proxy's transparent listener instead, and DNS answered by the session (bpf and
  // iptables; docs/transparent.md); both; auto: both where it can be (effective_door()), else
  // proxy.
  std::string door = "auto";
  std::vector<std::string> command;
};

// Checks what CLI11 cannot: backend names, the command. Errors say what to do.
Status validate_run_options(const RunOptions& o);
// The door a session gets: --door as given, or for auto, both where the wall can lead
// connections in (`leads_in`: the bpf and iptables backends) in enforce mode without
// --inspect-tls (the transparent door and its DNS), proxy anywhere else.
std::string effective_door(const RunOptions& o, bool leads_in);

// The backend asked for: --backend, or --isolation when --backend was left at auto.
std::string requested_backend(const RunOptions& o);

}  // namespace acp
