#include "acp/cli/app.hpp"

#include "acp/cli/commands.hpp"

namespace acp::cli {

// The app keeps no name: parse() then takes it from argv[0], as it always has.
std::unique_ptr<CLI::App> make_app(int& exit_code, const std::string& version) {
  auto app = std::make_unique<CLI::App>(
      "acp - run AI agents behind a kernel-enforced wall whose only door is a consent proxy.\n"
      "See `acp COMMAND --help` for each command.");
  app->require_subcommand(1);
  app->set_version_flag("--version", "acp " + version);
  register_run(*app, exit_code);
  register_status(*app, exit_code);
  register_gc(*app, exit_code);
  register_doctor(*app, exit_code);
  register_consent(*app, exit_code);
  register_audit(*app, exit_code);
  register_policy(*app, exit_code);
  register_export(*app, exit_code);
  register_init(*app, exit_code);
  register_daemon(*app, exit_code);
  register_contain(*app, exit_code);
  register_ca(*app, exit_code);
  register_node_agent(*app, exit_code);
  register_mcp(*app, exit_code);
  return app;
}

}  // namespace acp::cli
