// Stdio that is a socket under a real `acp run`: a socket keeps the cgroup of the process that
// made it, so handed to the agent as it is, it would carry the agent's traffic past the wall.
// acp gives the agent pipes and relays (launch/socket_stdio.hpp); these tests make the socket
// outside acp (python3, then exec acp with it as fd 0 or 1), as a caller of acp would.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "acp/util/unique_fd.hpp"
#include "support/run_fixture.hpp"

namespace {

using acp::UniqueFd;
using acp::vmtest::Proc;
using acp::vmtest::run;

// A loopback socket of `type` bound to port 0; its port in *port.
UniqueFd loopback_socket(int type, uint16_t* port) {
  UniqueFd s(::socket(AF_INET, type | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (!s || ::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0)
    return UniqueFd();
  *port = ntohs(a.sin_port);
  return s;
}

// Every datagram waiting on `s`, without blocking.
std::vector<std::string> received(int s) {
  std::vector<std::string> out;
  char buf[2048];
  ssize_t n;
  while ((n = ::recv(s, buf, sizeof buf, MSG_DONTWAIT)) >= 0)
    out.emplace_back(buf, static_cast<size_t>(n));
  return out;
}

// python3 makes a socket outside acp, puts it on fd `fd` and execs the rest of argv.
std::vector<std::string> with_socket_on(int fd, const std::string& make_socket,
                                        std::vector<std::string> argv) {
  std::vector<std::string> out = {"python3", "-c",
                                  "import os, socket, sys\n" + make_socket +
                                      "\nos.dup2(s.fileno(), " + std::to_string(fd) +
                                      ")\nos.execvp(sys.argv[1], sys.argv[1:])\n"};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

class RunStdio : public acp::vmtest::RunFixture {};

// An unconnected UDP socket as stdin: with it, the agent could sendto() any address. The agent
// gets a pipe; its sendto() on fd 0 fails and the loopback server hears nothing from it.
TEST_F(RunStdio, UdpSocketAsStdinCannotSendPastTheWall) {
  uint16_t port = 0;
  UniqueFd server = loopback_socket(SOCK_DGRAM, &port);
  ASSERT_TRUE(server) << "cannot bind a loopback UDP socket";
  const std::string agent =
      "import os, socket, stat\n"
      "m = os.fstat(0).st_mode\n"
      "print('FD0', 'fifo' if stat.S_ISFIFO(m) else 'socket' if stat.S_ISSOCK(m) else 'other')\n"
      "try:\n"
      "    socket.socket(fileno=0).sendto(b'agent-escape', ('127.0.0.1', " +
      std::to_string(port) +
      "))\n"
      "    print('SENT')\n"
      "except OSError as e:\n"
      "    print('REFUSED', e.errno)\n";
  auto acp =
      run(with_socket_on(0, "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
                         acp_run(policy_for_origin("allow"), {"/usr/bin/python3", "-c", agent})));
  EXPECT_EQ(acp.status, 0) << acp.out;
  EXPECT_NE(acp.out.find("FD0 fifo"), std::string::npos) << acp.out;
  EXPECT_NE(acp.out.find("REFUSED"), std::string::npos) << acp.out;
  EXPECT_EQ(acp.out.find("SENT"), std::string::npos) << acp.out;
  // Control: the same sendto() from outside the wall reaches the server.
  auto outside = run({"python3", "-c",
                      "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto("
                      "b'control', ('127.0.0.1', " +
                          std::to_string(port) + "))"});
  EXPECT_EQ(outside.status, 0) << outside.out;
  pollfd p{server.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 10000), 1) << "the control datagram did not arrive";
  EXPECT_EQ(received(server.get()), std::vector<std::string>{"control"});
}

// Data sent into a stdin socket reaches the agent through the relay, up to its end.
TEST_F(RunStdio, TcpSocketAsStdinIsRelayedToTheAgent) {
  uint16_t port = 0;
  UniqueFd listener = loopback_socket(SOCK_STREAM, &port);
  ASSERT_TRUE(listener);
  ASSERT_EQ(::listen(listener.get(), 1), 0);
  Proc acp = Proc::start(with_socket_on(
      0, "s = socket.create_connection(('127.0.0.1', " + std::to_string(port) + "))",
      acp_run(policy_for_origin("allow"),
              {"sh", "-c", "stat -L -c 'FD0=%F' /proc/self/fd/0; wc -c; echo AGENT-END"})));
  pollfd p{listener.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 20000), 1) << "python3 did not connect";
  UniqueFd conn(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(conn);
  const std::string chunk(100000, 'i');
  size_t sent = 0;
  while (sent < chunk.size()) {
    ssize_t n = ::send(conn.get(), chunk.data() + sent, chunk.size() - sent, MSG_NOSIGNAL);
    ASSERT_GT(n, 0);
    sent += static_cast<size_t>(n);
  }
  ::shutdown(conn.get(), SHUT_WR);  // the agent's wc sees the end
  acp.finish();
  EXPECT_EQ(acp.status, 0) << acp.out;
  EXPECT_NE(acp.out.find("FD0=fifo"), std::string::npos) << acp.out;
  EXPECT_NE(acp.out.find("100000\nAGENT-END"), std::string::npos) << acp.out;
}

// A TCP socket as stdout: the agent writes into a pipe (fd 1 is a fifo in the agent) and all of
// its output, the last line included, reaches the reader before acp ends. No other fd of acp's
// caller (python3 leaves fd 7 open without close-on-exec) reaches the agent.
TEST_F(RunStdio, TcpSocketAsStdoutIsRelayedThroughAPipe) {
  uint16_t port = 0;
  UniqueFd listener = loopback_socket(SOCK_STREAM, &port);
  ASSERT_TRUE(listener);
  ASSERT_EQ(::listen(listener.get(), 1), 0);
  const std::string agent =
      "stat -L -c 'FD1=%F' /proc/self/fd/1; printf 'FDS'; for f in /proc/self/fd/*; do "
      "printf ' %s' \"${f##*/}\"; done; echo; head -c 200000 /dev/zero | tr '\\0' x; echo; "
      "echo RELAYED-LAST";
  Proc acp = Proc::start(with_socket_on(1,
                                        "os.dup2(os.open('/dev/null', os.O_RDONLY), 7)\n"
                                        "s = socket.create_connection(('127.0.0.1', " +
                                            std::to_string(port) + "))",
                                        acp_run(policy_for_origin("allow"), {"sh", "-c", agent})));
  pollfd p{listener.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 20000), 1) << "python3 did not connect";
  UniqueFd conn(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(conn);
  std::string got;
  for (;;) {
    pollfd c{conn.get(), POLLIN, 0};
    if (::poll(&c, 1, 60000) != 1) break;  // bounded: acp ends within the minute
    char buf[65536];
    ssize_t n = ::recv(conn.get(), buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  acp.finish();
  EXPECT_EQ(acp.status, 0) << acp.out;
  EXPECT_NE(got.find("FD1=fifo\n"), std::string::npos) << got.substr(0, 300);
  // The shell's glob opens the directory: fd 3 is its own; nothing else is there.
  EXPECT_NE(got.find("FDS 0 1 2 3\n"), std::string::npos) << got.substr(0, 300);
  EXPECT_NE(got.find(std::string(200000, 'x') + "\nRELAYED-LAST\n"), std::string::npos)
      << got.size() << " bytes: " << got.substr(0, 300);
}

// A listening socket cannot be relayed through a pipe: refused, saying which fd and what to do.
TEST_F(RunStdio, ListeningSocketAsStdinIsRefused) {
  auto acp =
      run(with_socket_on(0, "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1)",
                         acp_run(policy_for_origin("allow"), {"sh", "-c", "echo AGENT-RAN"})));
  EXPECT_EQ(acp.status, 125) << acp.out;
  EXPECT_NE(acp.out.find("fd 0 (stdin) is a listening socket"), std::string::npos) << acp.out;
  EXPECT_EQ(acp.out.find("AGENT-RAN"), std::string::npos) << acp.out;
}

}  // namespace
