// Placeholder until the real command lands; replaced in this same change series.
#include "acp/cli/commands.hpp"

#include <cstdio>

namespace acp::cli {
void register_run(CLI::App& app, int& exit_code) {
  app.add_subcommand("run", "(not built yet)")->callback([&exit_code] {
    std::fprintf(stderr, "acp run: not built yet\n");
    exit_code = 125;
  });
}
}  // namespace acp::cli
