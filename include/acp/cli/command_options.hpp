// The options of `acp run` and `acp contain` as CLI11 declares them: one definition each, used
// by the commands (cmd_run.cpp, cmd_contain.cpp), the man pages and completion, and the tests
// that enumerate every option (tests/session_run_option_paths_test.cpp). The session layer
// only sees the filled-in RunOptions / ContainOptions.
#pragma once

#include <CLI/CLI.hpp>

#include "acp/session/docker_session.hpp"
#include "acp/session/run_options.hpp"

namespace acp {

// Adds the options of `acp run` to `sub`, storing into `o`.
void add_run_options(CLI::App* sub, RunOptions& o);

// The options of `acp contain`, stored into `o`.
void add_contain_options(CLI::App* sub, ContainOptions& o);

}  // namespace acp
