// Stdio that is a socket never reaches the agent. A socket belongs to the cgroup of the process
// that made it, not of the one that uses it: handed over as stdin/stdout/stderr, a socket made
// outside the session would let the agent send past the wall (an unconnected UDP socket as
// stdin: sendto() to any address; the BPF hooks of the session cgroup never see it). For each
// of fds 0, 1, 2 that is a socket, the agent gets a pipe instead and acp relays between the
// pipe and the socket: into the agent for fd 0, out of it for fds 1 and 2 (one pipe when both
// are the same socket, so their order is kept). A listening socket cannot be relayed: refused.
//
//   auto stdio = SocketStdio::prepare();      // before spawn_agent
//   spec.stdin_fd = stdio->agent_fd(0); ...    // -1 where acp's own fd is inherited
//   spawn_agent(spec); stdio->start();
//   ... the agent and its processes end (cgroup killed) ...
//   stdio->finish(10s);                       // the agent's last output is delivered
#pragma once

#include <chrono>
#include <memory>

#include "acp/util/result.hpp"

namespace acp::launch {

class SocketStdio {
 public:
  // Looks at acp's fds 0, 1 and 2. Errors name the fd and what to give the agent instead.
  static Result<std::unique_ptr<SocketStdio>> prepare();
  virtual ~SocketStdio() = default;  // stops relaying without waiting

  // What the agent gets as fd 0, 1 or 2: the pipe's end, or -1 (acp's own fd, not a socket).
  virtual int agent_fd(int fd) const = 0;
  // Whether any of fds 0..2 is relayed.
  virtual bool relaying() const = 0;
  // After spawn_agent: drops acp's copies of the agent's ends and starts relaying.
  virtual void start() = 0;
  // Once the agent and everything it started are gone: waits (at most `limit`) until what they
  // wrote has reached the sockets, then stops. Input not yet read by the agent is dropped.
  virtual void finish(std::chrono::milliseconds limit) = 0;
};

}  // namespace acp::launch
