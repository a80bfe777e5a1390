// acp: the Agent Consent Protocol enforcement agent. A thin main(): every command lives in
// src/cli/cmd_<name>.cpp and the machinery behind it in acp_core / acp_proxy.
#include <csignal>
#include <cstdio>
#include <string>

#include "acp/cli/commands.hpp"

int main(int argc, char** argv) {
  // A write past RLIMIT_FSIZE must fail with EFBIG (the audit log then denies and truncates
  // back), not kill acp with SIGXFSZ and leave the agent's wall without its proxy.
  std::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{
      "acp - run AI agents behind a kernel-enforced wall whose only door is a consent proxy.\n"
      "See `acp COMMAND --help` for each command."};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("acp ") + ACP_VERSION);
  int exit_code = 0;
  acp::cli::register_run(app, exit_code);
  acp::cli::register_status(app, exit_code);
  acp::cli::register_gc(app, exit_code);
  acp::cli::register_doctor(app, exit_code);
  acp::cli::register_consent(app, exit_code);
  acp::cli::register_audit(app, exit_code);
  acp::cli::register_policy(app, exit_code);
  acp::cli::register_export(app, exit_code);
  acp::cli::register_init(app, exit_code);
  acp::cli::register_daemon(app, exit_code);
  acp::cli::register_contain(app, exit_code);
  acp::cli::register_ca(app, exit_code);
  acp::cli::register_node_agent(app, exit_code);
  acp::cli::register_mcp(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    // `acp run` and `acp mcp` reserve 125 for their own failures (as docker run and env do).
    if (rc != 0 && !app.get_subcommands().empty() &&
        (app.get_subcommands().front()->get_name() == "run" ||
         app.get_subcommands().front()->get_name() == "contain" ||
         app.get_subcommands().front()->get_name() == "mcp"))
      return 125;
    return rc == 0 ? 0 : 2;
  }
  return exit_code;
}
