// `acp run` end to end: builds the wall, opens the door (the session proxy), starts the agent
// inside, waits, and takes everything down in the order that never leaves a process
// unconfined: kill every process in the cgroup, then detach the programs, then remove the
// cgroup. If acp dies instead, the pinned links keep the wall up (fail-closed).
#pragma once

#include "acp/session/run_options.hpp"

namespace acp {

// Runs the agent described by `o` and returns acp's exit status: the agent's own status, or
// 125 (acp failed), 126 (agent could not be executed), 127 (agent not found).
int run_agent_session(const RunOptions& o);

}  // namespace acp
