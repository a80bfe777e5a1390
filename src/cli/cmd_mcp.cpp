// acp mcp [--policy=F] [--server-name=N] -- CMD [ARGS...]: a local MCP server (stdio
// transport) behind consent. Each tools/call the client sends is judged by the policy, asked of
// a human for `ask` (acp pending/approve, the configured channels) and written to the audit log,
// as `acp run` does for network requests. See docs/mcp.md.
#include <unistd.h>
#include <csignal>

#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include "acp/cli/commands.hpp"
#include "acp/proxy/control.hpp"
#include "acp/proxy/mcp_stdio.hpp"
#include "acp/session/channel_notice.hpp"
#include "acp/session/session_proxy.hpp"
#include "acp/util/session_id.hpp"

namespace acp::cli {
namespace {

namespace asio = boost::asio;

struct McpOptions {
  std::optional<std::string> policy;
  std::string server_name;
  std::string config;
  std::string audit_log;
  std::vector<std::string> command;
};

void watch_signals(asio::signal_set& sigs, mcp::StdioRelay& relay, SessionProxy& proxy) {
  sigs.async_wait([&sigs, &relay, &proxy](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    if (sig == SIGHUP) proxy.reload_policy();
    relay.forward_signal(sig);
    watch_signals(sigs, relay, proxy);
  });
}

int run_mcp(const McpOptions& o) {
  // A client that goes away must not kill acp with SIGPIPE before the server is told.
  std::signal(SIGPIPE, SIG_IGN);
  asio::io_context io;
  SessionProxyConfig pc;
  auto id = new_session_id();
  if (!id) {
    std::fprintf(stderr, "acp mcp: %s\n", id.error().message().c_str());
    return 1;
  }
  pc.session_id = *id;
  pc.policy_path = o.policy;
  pc.audit_path = o.audit_log;
  pc.config_path = o.config;
  pc.control_path = consent::control_run_dir() + "/control.sock";
  pc.agent_command = "acp mcp -- " + o.command.front();
  pc.serve_proxy = false;
  auto proxy = SessionProxy::start(io, pc);
  if (!proxy) {
    std::fprintf(stderr, "acp mcp: %s\n", proxy.error().message().c_str());
    return 125;
  }
  mcp::StdioOptions so;
  so.command = o.command;
  so.server_name = o.server_name;
  so.session = pc.session_id;
  auto relay = mcp::StdioRelay::start(io, so, (*proxy)->judge());
  if (!relay) {
    std::fprintf(stderr, "acp mcp: %s\n", relay.error().message().c_str());
    (*proxy)->stop();
    int err = relay.error().err;
    return err == ENOENT ? 127 : err == EACCES ? 126 : 125;
  }
  std::fprintf(stderr,
               "acp mcp: session %s: tool calls to MCP server '%s' are judged (audit: %s; "
               "answer asks with acp pending / acp approve)\n",
               pc.session_id.c_str(), (*relay)->server_name().c_str(),
               (*proxy)->audit_path().c_str());
  // acp mcp's stderr is usually read by the MCP client, which is the agent.
  print_consent_channels(stderr, is_private_terminal(STDERR_FILENO),
                         "acp mcp: ", (*proxy)->channel_descriptions(),
                         (*proxy)->consent_page_url());
  int status = 125;
  asio::signal_set sigs(io, SIGINT, SIGTERM, SIGHUP);
  sigs.add(SIGQUIT);
  watch_signals(sigs, **relay, **proxy);
  (*relay)->on_exit([&](int s) {
    status = s;
    boost::system::error_code ec;
    sigs.cancel(ec);
    (*proxy)->stop();
    io.stop();
  });
  io.run();
  return status;
}

}  // namespace

void register_mcp(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand(
      "mcp",
      "Run a local MCP server (stdio transport) behind consent: every tools/call from the client\n"
      "is judged by the policy (kind: mcp rules), asked of a human for `ask`, and audited;\n"
      "a refused call is answered with a JSON-RPC error and never reaches the server.\n"
      "Exit status: the server's; 125 if acp failed, 126 if CMD cannot run, 127 if not found.");
  auto o = std::make_shared<McpOptions>();
  cmd->add_option("--policy", o->policy, "Policy file (default: the config's, else built-in)");
  cmd->add_option("--server-name", o->server_name,
                  "The server name that policy rules match (default: CMD's base name)");
  cmd->add_option("--config", o->config, "ACP config (default /etc/acp/config.yml)");
  cmd->add_option("--audit-log", o->audit_log, "Audit log (default /var/log/acp/audit.jsonl)");
  cmd->add_option("command", o->command, "The MCP server command and its arguments (after --)")
      ->required();
  cmd->positionals_at_end();
  cmd->callback([o, &exit_code] { exit_code = run_mcp(*o); });
}

}  // namespace acp::cli
