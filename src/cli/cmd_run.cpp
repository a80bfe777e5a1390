// acp run [OPTIONS] -- CMD [ARGS...]: run an agent behind the wall. See
// src/session/agent_session.cpp for what happens, in order.
#include <memory>

#include "acp/cli/command_options.hpp"
#include "acp/cli/commands.hpp"
#include "acp/daemon/daemon.hpp"
#include "acp/session/agent_session.hpp"
#include "acp/session/run_options.hpp"

namespace acp::cli {

void register_run(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand(
      "run",
      "Run CMD confined: its sockets reach only the session's consent proxy.\n"
      "Exit status: the agent's; 125 if acp failed, 126 if CMD cannot run, 127 if not found.");
  auto opts = std::make_shared<RunOptions>();
  add_run_options(cmd, *opts);
  cmd->callback([opts, &exit_code] {
    // With a running `acp daemon` (and --daemon=auto|required) the session is the daemon's;
    // otherwise acp run holds it itself.
    if (auto code = daemon::run_via_daemon(*opts)) {
      exit_code = *code;
      return;
    }
    exit_code = run_agent_session(*opts);
  });
}

}  // namespace acp::cli
