// `acp run` end to end: builds the wall, opens the door (the session proxy), starts the agent
// inside, waits, and takes everything down in the order that never leaves a process
// unconfined: kill every process in the cgroup, then detach the programs, then remove the
// cgroup. If acp dies instead, the pinned links keep the wall up (fail-closed).
#pragma once

#include <string>

#include "acp/backend/backend.hpp"
#include "acp/launch/target_user.hpp"
#include "acp/session/run_options.hpp"
#include "acp/session/session_builder.hpp"

namespace acp {

// Runs the agent described by `o` and returns acp's exit status: the agent's own status, or
// 125 (acp failed), 126 (agent could not be executed), 127 (agent not found).
int run_agent_session(const RunOptions& o);

// What `acp run` standalone builds (session_builder.hpp) for `o` on the backend `kind`, as
// `user`; `state_dir` holds the control socket, grants and audit log of a session without root.
// Every option that reaches the session is here; the agent's own (--user, --max-tasks,
// --json-events) are applied by acp run itself, also when the daemon holds the session.
Result<SessionPlan> plan_run_session(const RunOptions& o, backend::Kind kind,
                                     const launch::TargetUser& user, bool root,
                                     const std::string& state_dir);

}  // namespace acp
