// sd_notify without libsystemd: the datagram systemd's Type=notify waits for, to a path socket
// and to an abstract one, and nothing at all without $NOTIFY_SOCKET.
#include <gtest/gtest.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <filesystem>
#include <string>

#include "acp/daemon/sd_notify.hpp"
#include "acp/util/unique_fd.hpp"

namespace {

using acp::UniqueFd;

// A datagram socket bound at `name` ("/path" or "@abstract").
UniqueFd bind_dgram(const std::string& name) {
  UniqueFd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, name.data(), name.size());
  if (name[0] == '@') sa.sun_path[0] = '\0';
  auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size() +
                                    (name[0] == '@' ? 0 : 1));
  EXPECT_EQ(bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), len), 0) << strerror(errno);
  return fd;
}

std::string receive(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, 10000) != 1) return "<nothing>";
  char buf[512];
  ssize_t n = recv(fd, buf, sizeof buf, 0);
  return n < 0 ? "<error>" : std::string(buf, static_cast<size_t>(n));
}

class SdNotify : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/acp-sdnotify.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    unsetenv("NOTIFY_SOCKET");
    std::filesystem::remove_all(dir_);
  }
  std::string dir_;
};

TEST_F(SdNotify, SendsTheStateToThePathInNotifySocket) {
  auto fd = bind_dgram(dir_ + "/notify");
  setenv("NOTIFY_SOCKET", (dir_ + "/notify").c_str(), 1);
  ASSERT_TRUE(acp::daemon::sd_notify("READY=1\nSTATUS=serving").ok());
  EXPECT_EQ(receive(fd.get()), "READY=1\nSTATUS=serving");
  ASSERT_TRUE(acp::daemon::sd_notify("STOPPING=1").ok());
  EXPECT_EQ(receive(fd.get()), "STOPPING=1");
}

TEST_F(SdNotify, SendsToAnAbstractSocket) {
  std::string name = "@acp-sdnotify-test-" + std::to_string(getpid());
  auto fd = bind_dgram(name);
  ASSERT_TRUE(acp::daemon::sd_notify_to(name, "READY=1").ok());
  EXPECT_EQ(receive(fd.get()), "READY=1");
}

TEST_F(SdNotify, WithoutNotifySocketItDoesNothing) {
  unsetenv("NOTIFY_SOCKET");
  EXPECT_TRUE(acp::daemon::sd_notify("READY=1").ok());
}

TEST_F(SdNotify, AnUnreachableSocketIsAnError) {
  auto st = acp::daemon::sd_notify_to(dir_ + "/nobody-listens", "READY=1");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message().find("nobody-listens"), std::string::npos);
  EXPECT_FALSE(acp::daemon::sd_notify_to("relative", "READY=1").ok());
}

}  // namespace
