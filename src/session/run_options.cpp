#include "acp/session/run_options.hpp"

namespace acp {

void add_run_options(CLI::App* sub, RunOptions& o) {
  sub->add_option("--backend", o.backend,
                  "How the wall is built: auto (strongest available) or bpf")
      ->default_str("auto");
  sub->add_option("--proxy-port", o.proxy_port,
                  "Port of the session's consent proxy on 127.0.0.1 and [::1] (default 8443; "
                  "the next free port when 8443 is taken)")
      ->check(CLI::Range(1, 65535));
  sub->add_option("--allow", o.allow,
                  "Also let the agent reach ADDR:PORT[/udp] directly (exact address, port and "
                  "protocol; repeatable), e.g. --allow=127.0.0.1:5432 --allow=[::1]:53/udp")
      ->allow_extra_args(false);
  sub->add_option("--user", o.user,
                  "Run the agent as USER (name or uid); default: the user who ran sudo");
  sub->add_flag("--allow-root", o.allow_root,
                "Let the agent run as root (not recommended: it keeps root's file access; ACP "
                "drops its network, BPF and admin capabilities and hides its own state)");
  sub->add_flag("--audit-only", o.audit_only,
                "Report what would be blocked without blocking it (for rolling out a policy)");
  sub->add_option("--policy", o.policy,
                  "Policy file (YAML); default: the config's `policy`, else the built-in policy");
  sub->add_option("--config", o.config,
                  "ACP config (consent channels); default: /etc/acp/config.yml, see `acp init`");
  sub->add_option("--audit-log", o.audit_log,
                  "Audit log file (JSON lines, hash-chained; default /var/log/acp/audit.jsonl)");
  sub->add_option("--max-tasks", o.max_tasks,
                  "At most N tasks (processes and threads) for the agent: pids.max of its "
                  "cgroup where cgroup v2 has the pids controller, else RLIMIT_NPROC (default "
                  "4096)")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 22));
  sub->add_flag("--json-events", o.json_events, "Print kernel events as JSON lines on stderr");
  sub->add_option("command", o.command, "The agent command and its arguments (after --)")
      ->required();
  sub->positionals_at_end();
}

Status validate_run_options(const RunOptions& o) {
  if (o.backend != "auto" && o.backend != "bpf") {
    return make_error("--backend=" + o.backend +
                      ": unknown or unavailable backend; this build supports auto and bpf");
  }
  if (o.command.empty() || o.command.front().empty())
    return make_error("no agent command: usage: acp run [OPTIONS] -- CMD [ARGS...]");
  return {};
}

}  // namespace acp
