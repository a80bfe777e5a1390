// systemd's readiness protocol (sd_notify(3)) without libsystemd: one datagram of
// "KEY=VALUE\n..." to the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or "@name" for the
// abstract namespace). Type=notify units wait for READY=1; STOPPING=1 says shutdown began.
#pragma once

#include <string>

#include "acp/util/result.hpp"

namespace acp::daemon {

// Sends `state` (e.g. "READY=1\nSTATUS=2 sessions") to $NOTIFY_SOCKET. Without the variable it
// does nothing and succeeds: not started by systemd.
Status sd_notify(const std::string& state);

// The same to an explicit socket address (tests).
Status sd_notify_to(const std::string& socket, const std::string& state);

}  // namespace acp::daemon
