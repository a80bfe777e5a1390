// acp gc [--kill]: remove sessions whose acp process is gone. Without --kill only sessions
// whose cgroup is empty are taken down; an orphaned session with processes keeps its wall.
#include <unistd.h>

#include <cstdio>

#include "acp/cli/commands.hpp"
#include "acp/session/session_gc.hpp"

namespace acp::cli {

void register_gc(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand(
      "gc", "Remove orphaned sessions (acp gone) whose cgroups are empty; --kill empties them");
  auto kill = std::make_shared<bool>(false);
  cmd->add_flag("--kill", *kill,
                "Also kill the processes left in orphaned sessions, then remove them");
  cmd->callback([kill, &exit_code] {
    if (geteuid() != 0) {
      std::fprintf(stderr, "acp gc: needs root to detach BPF programs and remove cgroups\n");
      exit_code = 1;
      return;
    }
    auto r = collect_orphaned_sessions(*kill);
    for (const auto& id : r.removed) std::printf("removed session %s\n", id.c_str());
    for (const auto& k : r.kept) std::printf("kept %s\n", k.c_str());
    for (const auto& e : r.errors) std::fprintf(stderr, "acp gc: %s\n", e.c_str());
    if (r.removed.empty() && r.kept.empty() && r.errors.empty())
      std::printf("nothing to collect\n");
    exit_code = r.errors.empty() ? 0 : 1;
  });
}

}  // namespace acp::cli
