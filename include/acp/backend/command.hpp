// Running a system tool (iptables, iptables-restore) without a shell: an argv vector through
// posix_spawn, with its stdin fed from a string and its stdout and stderr collected.
#pragma once

#include <spawn.h>
#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "acp/util/result.hpp"

namespace acp::backend {

struct CommandOutput {
  int exit_code = -1;  // as a shell reports it: 128+N when killed by signal N
  std::string out;
  std::string err;
};

// The absolute path of a tool, looked up in /usr/sbin, /sbin, /usr/bin and /bin (acp may run
// with a PATH that lacks the sbin directories); nullopt when it is not installed.
std::optional<std::string> find_tool(const std::string& name);

// Runs argv (argv[0] absolute, e.g. from find_tool) with `input` on its stdin, with an empty
// signal mask and default dispositions, and waits for it. An error only when it cannot be
// started; a failing tool is a nonzero exit_code.
Result<CommandOutput> run_command(const std::vector<std::string>& argv,
                                  const std::string& input = "");

// Starts argv (argv[0] absolute) with an empty signal mask and default dispositions (acp blocks
// its session signals and ignores SIGPIPE; the tool gets neither) and returns its pid; the
// caller reaps it. `fds`: its stdin/stdout/stderr redirections (closing every fd above 2, as
// run_command's do), nullptr to inherit acp's stdio; no other fd of acp reaches the tool.
Result<pid_t> spawn_process(const std::vector<std::string>& argv,
                            const posix_spawn_file_actions_t* fds = nullptr);

}  // namespace acp::backend
