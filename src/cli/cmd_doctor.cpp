// Placeholder until the real command lands; replaced in this same change series.
#include "acp/cli/commands.hpp"

#include <cstdio>

namespace acp::cli {
void register_doctor(CLI::App& app, int& exit_code) {
  app.add_subcommand("doctor", "(not built yet)")->callback([&exit_code] {
    std::fprintf(stderr, "acp doctor: not built yet\n");
    exit_code = 125;
  });
}
}  // namespace acp::cli
