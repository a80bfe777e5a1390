#include "acp/cli/command_options.hpp"

namespace acp {

namespace {

// "TEXT:{auto,bpf,...}", the type name CLI11 gives a set check (CLI::IsMember), so that --help,
// the man page and the completions list the backends. Not a check: validate_run_options
// refuses other names with a message that says what to do.
std::string backend_type_name() {
  std::string out = "TEXT:{";
  for (const auto& n : kBackendNames) out += (out.back() == '{' ? "" : ",") + n;
  return out + "}";
}

// --policy, --config and --audit-log: the same three for every command that runs a session.
void add_policy_options(CLI::App* sub, std::optional<std::string>& policy, std::string& config,
                        std::string& audit_log) {
  sub->add_option("--policy", policy,
                  "Policy file (YAML); default: the config's `policy`, else the built-in policy");
  sub->add_option("--config", config,
                  "ACP config (consent channels); default: /etc/acp/config.yml, see `acp init`");
  sub->add_option("--audit-log", audit_log,
                  "Audit log file (JSON lines, hash-chained; default /var/log/acp/audit.jsonl)");
}

}  // namespace

void add_run_options(CLI::App* sub, RunOptions& o) {
  sub->add_option("--backend", o.backend,
                  "How the wall is built: auto (the strongest that works here: bpf, then "
                  "iptables, then docker), bpf, iptables, docker (the agent in a container, "
                  "as acp contain), preload (no root; weak) or none (proxy-only; the agent "
                  "can bypass the proxy). See docs/backends.md")
      ->type_name(backend_type_name())
      ->default_str("auto");
  sub->add_option("--isolation", o.isolation,
                  "Same as --backend (e.g. --isolation=preload, as the origin docs spell it)")
      ->type_name(backend_type_name());
  sub->add_option("--proxy-port", o.proxy_port,
                  "Port of the session's consent proxy on 127.0.0.1 and [::1] (default 8443; "
                  "the next free port when 8443 is taken)")
      ->check(CLI::Range(1, 65535));
  sub->add_option("--allow", o.allow,
                  "Also let the agent reach ADDR:PORT[/udp] directly (exact address, port and "
                  "protocol; repeatable), e.g. --allow=127.0.0.1:5432 --allow=[::1]:53/udp")
      ->allow_extra_args(false);
  sub->add_option("--allow-unix", o.allow_unix,
                  "Also let the agent connect (or send) to this unix socket: an absolute PATH "
                  "exactly as the agent names it, or @NAME for an abstract socket (repeatable). "
                  "Without it every AF_UNIX connect() is refused (bpf backend, Linux 6.7+): "
                  "docker.sock, D-Bus, tmux and ssh-agent would act for the agent outside the "
                  "wall. Never list a socket that can run commands or open connections")
      ->allow_extra_args(false);
  sub->add_option("--user", o.user,
                  "Run the agent as USER (name or uid); default: the user who ran sudo");
  sub->add_flag("--allow-root", o.allow_root,
                "Let the agent run as root (not recommended: it keeps root's file access; ACP "
                "drops its network, BPF and admin capabilities and hides its own state)");
  sub->add_flag("--audit-only", o.audit_only,
                "Report what would be blocked without blocking it (for rolling out a policy)");
  add_policy_options(sub, o.policy, o.config, o.audit_log);
  sub->add_option("--max-tasks", o.max_tasks,
                  "At most N tasks (processes and threads) for the agent: pids.max of its "
                  "cgroup where cgroup v2 has the pids controller, else RLIMIT_NPROC (default "
                  "4096)")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 22));
  sub->add_flag("--inspect-tls", o.inspect_tls,
                "Inspect HTTPS: end the agent's TLS inside allowed CONNECTs with certificates "
                "from ACP's local CA (/var/lib/acp/ca) and judge every request by method and "
                "path; the agent is handed the CA through SSL_CERT_FILE and friends. See "
                "docs/tls-inspection.md");
  sub->add_option("--inspect-tls-exclude", o.inspect_tls_exclude,
                  "With --inspect-tls: tunnel HOST (a glob, e.g. *.pinned.example) untouched "
                  "(repeatable), for clients that pin certificates")
      ->allow_extra_args(false);
  sub->add_option("--inspect-tls-upstream-ca", o.upstream_ca,
                  "With --inspect-tls: verify origins against this CA file instead of the "
                  "system store (tests, private CAs)");
  sub->add_option("--inspect-tls-ca-dir", o.ca_dir,
                  "With --inspect-tls: where ACP's CA lives (default /var/lib/acp/ca; created "
                  "on first use, see `acp ca`)");
  sub->add_option("--daemon", o.daemon,
                  "auto: hand the session to a running `acp daemon` when there is one, else "
                  "run standalone; required: fail without a daemon; never: standalone")
      ->check(CLI::IsMember({"auto", "required", "never"}))
      ->default_str("auto");
  sub->add_flag_callback(
      "--no-daemon", [&o] { o.daemon = "never"; }, "Run standalone even when a daemon runs");
  sub->add_option("--daemon-socket", o.daemon_socket,
                  "The daemon's socket (default /run/acp/daemon.sock)");
  sub->add_option("--door", o.door,
                  "How the agent reaches the proxy: proxy (clients that honour HTTP(S)_PROXY; "
                  "any other connect() fails with EPERM), transparent (every TCP connect() is "
                  "led to the proxy, judged by TLS SNI, HTTP Host, the name the agent looked up "
                  "or the address, and DNS is answered by the policy; bpf and iptables "
                  "backends), both, or auto: both on the bpf and iptables backends in enforce "
                  "mode without --inspect-tls, else "
                  "proxy. See docs/transparent.md")
      ->check(CLI::IsMember({"auto", "proxy", "transparent", "both"}))
      ->default_str("auto");
  sub->add_flag("--json-events", o.json_events, "Print kernel events as JSON lines on stderr");
  sub->add_option("command", o.command, "The agent command and its arguments (after --)")
      ->required();
  sub->positionals_at_end();
}

void add_contain_options(CLI::App* sub, ContainOptions& o) {
  sub->add_option("--image", o.image,
                  "The agent's image (default: $ACP_AGENT_IMAGE, else acp-agent:latest, which "
                  "scripts/build-agent-image.sh builds)");
  sub->add_option("--workspace", o.workspace,
                  "Host directory mounted at /workspace, read-only unless --writable (default: "
                  "the current directory)");
  sub->add_flag("--no-workspace", o.no_workspace, "Mount no workspace");
  sub->add_flag("--writable", o.writable, "Mount the workspace read-write");
  sub->add_option("--env", o.env,
                  "Pass the variable KEY from acp's environment into the container "
                  "(repeatable; the value stays out of the command line)")
      ->allow_extra_args(false);
  sub->add_option("--proxy-port", o.proxy_port,
                  "Port of the session's consent proxy on the network's gateway (default 8443; "
                  "the next free port when 8443 is taken)")
      ->check(CLI::Range(1, 65535));
  sub->add_option("--door", o.door,
                  "How the container reaches the proxy: both (clients that honour "
                  "HTTP(S)_PROXY use it; every other TCP connection is led to the transparent "
                  "door on the gateway and judged by TLS SNI, HTTP Host, the name it looked up or "
                  "the address; its DNS is answered by the policy), proxy (any other "
                  "connection is refused) or auto: both where the host's iptables has nat, else "
                  "proxy. See docs/transparent.md")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "both", "proxy"}));
  add_policy_options(sub, o.policy, o.config, o.audit_log);
  sub->add_option("command", o.command, "The agent command and its arguments (after --)")
      ->required();
  sub->positionals_at_end();
}

}  // namespace acp
