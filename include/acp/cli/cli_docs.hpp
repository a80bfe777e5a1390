// The man pages and shell completions of `acp`, rendered from the CLI11 app that main() parses
// with (acp/cli/app.hpp). The build runs acp_cli_docs (src/cli/gen_cli_docs.cpp) to write them
// and `cmake --install` installs them; see docs/operations.md (Man pages and completion).
//
// What is shown: every named subcommand, and every option with a group (CLI11's hidden ones
// have none), including --help. Option groups (add_option_group) are not walked: acp has none.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>

#include "acp/util/result.hpp"

namespace acp::cli {

// The app's named, visible subcommands, in definition order.
std::vector<const CLI::App*> doc_subcommands(const CLI::App& app);
// Its visible options with a name (-x, --xyz), in definition order.
std::vector<const CLI::Option*> doc_options(const CLI::App& app);
// Its positionals, in order.
std::vector<const CLI::Option*> doc_positionals(const CLI::App& app);

// "-h, --help": the option's names as typed.
std::string option_names(const CLI::Option& o);
// Every name of the option as typed (-h, --help), short names first.
std::vector<std::string> option_spellings(const CLI::Option& o);
// Whether the option takes a value (a flag does not).
bool takes_value(const CLI::Option& o);
// The values a set check (CLI::IsMember) allows, e.g. {"proxy", "transparent", "both"}; empty
// when the option has none. Read from CLI11's type name, "TEXT:{proxy,transparent,both}" (an
// option may also set a type name of that form itself, as acp run --backend does).
std::vector<std::string> enum_values(const CLI::Option& o);
// The type name without the validators' descriptions: "TEXT", "UINT", "REQUEST_ID".
std::string value_type(const CLI::Option& o);
// The first sentence of a description, on one line.
std::string summary(const CLI::App& app);
std::string summary(const CLI::Option& o);

// acp(8): the commands and the global options. `app` is make_app()'s.
std::string main_man_page(const CLI::App& app, std::string_view version);
// acp-NAME(8) for the top-level subcommand `cmd`, with its nested subcommands.
std::string command_man_page(const CLI::App& cmd, std::string_view version);
// The file name of a command's page: "acp-run.8".
std::string man_page_file(const CLI::App& cmd);

// The bash completion script (installed as share/bash-completion/completions/acp) and the zsh
// one (share/zsh/vendor-completions/_acp).
std::string bash_completion(const CLI::App& app);
std::string zsh_completion(const CLI::App& app);

// Writes DIR/man8/acp.8, DIR/man8/acp-CMD.8 for each command, DIR/completions/acp.bash and
// DIR/completions/_acp. DIR/man8 is emptied first: a removed command leaves no stale page.
Status write_cli_docs(const CLI::App& app, const std::string& dir, std::string_view version);

}  // namespace acp::cli
