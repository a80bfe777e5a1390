// acp contain [--image=IMG] [--workspace=DIR] [--writable] [--env=KEY]... -- CMD [ARGS...]:
// run an agent in a hardened container whose only way out is the session's consent proxy.
// See src/session/docker_session.cpp and docs/backends.md (Docker).
#include <memory>

#include "acp/cli/command_options.hpp"
#include "acp/cli/commands.hpp"
#include "acp/session/docker_session.hpp"

namespace acp::cli {

void register_contain(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand(
      "contain",
      "Run CMD in a container on an --internal docker network whose only reachable address "
      "is the session's consent proxy (docs/backends.md, Docker).\n"
      "Exit status: the container's; 125 if acp or docker failed.");
  auto opts = std::make_shared<ContainOptions>();
  add_contain_options(cmd, *opts);
  cmd->callback([opts, &exit_code] { exit_code = run_docker_session(*opts); });
}

}  // namespace acp::cli
