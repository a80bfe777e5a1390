#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "acp/launch/agent_launcher.hpp"

namespace {

using acp::launch::exit_status_code;

// Real wait statuses from real children, not hand-built bit patterns.
int status_of(void (*body)()) {
  pid_t pid = fork();
  if (pid == 0) {
    body();
    _exit(99);
  }
  int st = 0;
  EXPECT_EQ(waitpid(pid, &st, 0), pid);
  return st;
}

TEST(LaunchExitStatus, ExitCodesPassThrough) {
  EXPECT_EQ(exit_status_code(status_of([] { _exit(0); })), 0);
  EXPECT_EQ(exit_status_code(status_of([] { _exit(7); })), 7);
  EXPECT_EQ(exit_status_code(status_of([] { _exit(255); })), 255);
}

TEST(LaunchExitStatus, SignalsAre128PlusTheSignal) {
  EXPECT_EQ(exit_status_code(status_of([] { raise(SIGKILL); })), 137);
  EXPECT_EQ(exit_status_code(status_of([] {
              signal(SIGTERM, SIG_DFL);
              raise(SIGTERM);
            })),
            143);
}

TEST(LaunchExitStatus, LaunchFailureCodesAreTheShellOnes) {
  EXPECT_EQ(acp::launch::kExitLaunchFailed, 125);
  EXPECT_EQ(acp::launch::kExitCannotExecute, 126);
  EXPECT_EQ(acp::launch::kExitNotFound, 127);
}

}  // namespace
