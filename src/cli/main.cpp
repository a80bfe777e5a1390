// acp: the Agent Consent Protocol enforcement agent. A thin main(): every command lives in
// src/cli/cmd_<name>.cpp and the machinery behind it in acp_core / acp_proxy.
#include <csignal>
#include <cstdio>
#include <string>

#include "acp/cli/app.hpp"

int main(int argc, char** argv) {
  // A write past RLIMIT_FSIZE must fail with EFBIG (the audit log then denies and truncates
  // back), not kill acp with SIGXFSZ and leave the agent's wall without its proxy.
  std::signal(SIGXFSZ, SIG_IGN);
  int exit_code = 0;
  auto app_ptr = acp::cli::make_app(exit_code, ACP_VERSION);
  CLI::App& app = *app_ptr;
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
