// The tools acp runs (iptables-restore, docker, ...) get their stdio and nothing else of acp's:
// a listener acp holds (asio's sockets are not close-on-exec) must not outlive acp in a tool.
#include "acp/backend/command.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include <gtest/gtest.h>

#include "acp/util/unique_fd.hpp"

namespace {

// An fd without O_CLOEXEC, as asio opens its sockets.
acp::UniqueFd inheritable_fd() {
  acp::UniqueFd fd(::open("/dev/null", O_RDONLY));
  EXPECT_TRUE(fd);
  EXPECT_EQ(::fcntl(fd.get(), F_GETFD) & FD_CLOEXEC, 0);
  return fd;
}

TEST(BackendCommand, RunCommandPassesNoFdAboveStderr) {
  auto fd = inheritable_fd();
  const std::string path = "/proc/self/fd/" + std::to_string(fd.get());
  auto r = acp::backend::run_command(
      {"/bin/sh", "-c", "test -e " + path + " && echo LEAKED; echo DONE"});
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->out, "DONE\n");
}

TEST(BackendCommand, SpawnProcessPassesNoFdAboveStderr) {
  auto fd = inheritable_fd();
  // The child reports through its exit status: 3 when it sees acp's fd.
  auto pid = acp::backend::spawn_process(
      {"/bin/sh", "-c",
       "test -e /proc/self/fd/" + std::to_string(fd.get()) + " && exit 3; exit 0"});
  ASSERT_TRUE(pid.ok()) << pid.error().message();
  int status = 0;
  ASSERT_EQ(::waitpid(*pid, &status, 0), *pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the tool inherited an fd of acp's";
}

}  // namespace
