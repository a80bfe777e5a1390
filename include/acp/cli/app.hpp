// The whole `acp` command line, built in one place: main() parses with it, and the generator
// of the man pages and shell completions (src/cli/gen_cli_docs.cpp) walks it, so `--help`,
// acp(8) and the completions come from the same CLI11 definitions and cannot drift apart.
#pragma once

#include <memory>
#include <string>

#include <CLI/CLI.hpp>

namespace acp::cli {

// Every subcommand of `acp`, registered as main() runs them; their callbacks store the exit
// status in `exit_code`, which must outlive the app. `version` is what --version prints after
// "acp ".
std::unique_ptr<CLI::App> make_app(int& exit_code, const std::string& version);

}  // namespace acp::cli
