// A test-only stop point inside `acp run`, for the fault vmtests (vmtests/fault_test.cpp) that
// SIGKILL acp at an exact stage of a session.
//
// When both ACP_TEST_HOOKS=1 and ACP_TEST_PAUSE_AT=<stage> are in acp's environment and
// <stage> is the one named here, acp stops itself (raise(SIGSTOP)) at that point; the test sees
// the stop (waitpid WUNTRACED), then kills or continues it. Without the explicit
// ACP_TEST_HOOKS=1 guard the variable is ignored. Stopping itself is all it can do, and only
// whoever may start `acp run` (root) sets its environment, so the hook opens nothing.
//
// Stages, in session order: "cgroup" (the session cgroup exists, no program attached yet),
// "attached" (programs attached and pinned, no proxy and no agent yet), "agent" (the agent
// runs, the event loop is about to start).
#pragma once

namespace acp {

void test_pause_point(const char* stage);

}  // namespace acp
