// The `acp` subcommands. Each register_*() adds one subcommand (or a group) to the app and
// arranges for its callback to store the process exit status in `exit_code`.
// One file per command under src/cli/: cmd_<name>.cpp.
#pragma once

#include <CLI/CLI.hpp>

namespace acp::cli {

// The type name of the positionals that take a pending request's id (acp pending, approve,
// deny): --help shows it, and the shell completions offer the ids `acp pending --json` lists.
inline constexpr const char* kRequestIdType = "REQUEST_ID";

void register_run(CLI::App& app, int& exit_code);         // cmd_run.cpp
void register_status(CLI::App& app, int& exit_code);      // cmd_status.cpp
void register_gc(CLI::App& app, int& exit_code);          // cmd_gc.cpp
void register_doctor(CLI::App& app, int& exit_code);      // cmd_doctor.cpp
void register_consent(CLI::App& app, int& exit_code);     // cmd_consent.cpp: pending/approve/deny
void register_audit(CLI::App& app, int& exit_code);       // cmd_audit.cpp: audit verify
void register_policy(CLI::App& app, int& exit_code);      // cmd_policy.cpp
void register_export(CLI::App& app, int& exit_code);      // cmd_export.cpp
void register_init(CLI::App& app, int& exit_code);        // cmd_init.cpp
void register_daemon(CLI::App& app, int& exit_code);      // cmd_daemon.cpp
void register_contain(CLI::App& app, int& exit_code);     // cmd_contain.cpp: the docker backend
void register_ca(CLI::App& app, int& exit_code);          // cmd_ca.cpp: ca init/show/rotate
void register_node_agent(CLI::App& app, int& exit_code);  // cmd_node_agent.cpp
void register_mcp(CLI::App& app, int& exit_code);         // cmd_mcp.cpp: stdio MCP with consent

}  // namespace acp::cli
