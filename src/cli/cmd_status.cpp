// acp status [--json]: the isolation mode and, for every session, the wall as the kernel
// holds it (programs, allow map, counters, recent denials), read from the pins.
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "acp/cli/commands.hpp"
#include "acp/session/session_status.hpp"

namespace acp::cli {

void register_status(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand(
      "status", "Show the isolation mode, the sessions and the BPF policy in force");
  auto json = std::make_shared<bool>(false);
  cmd->add_flag("--json", *json, "Machine-readable output");
  cmd->callback([json, &exit_code] {
    if (geteuid() != 0)
      std::fprintf(stderr,
                   "acp status: warning: not root: pinned BPF state cannot be read (use sudo)\n");
    auto m = gather_status();
    if (*json)
      std::printf("%s\n", status_to_json(m).dump(2).c_str());
    else
      std::printf("%s", status_to_text(m).c_str());
    exit_code = 0;
  });
}

}  // namespace acp::cli
