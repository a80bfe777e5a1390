// Thousands of tunnels take two fds each: a process that serves them (acp run once its agent
// started with the limits it was given, the daemon's client, the node agent) raises its own
// soft RLIMIT_NOFILE to the hard one.
#pragma once

namespace acp {

void raise_fd_limit_for_tunnels();

}  // namespace acp
