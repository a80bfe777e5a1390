// The signals a session's acp process handles itself, and the one loop that reads them: used by
// the standalone session (session/agent_session.cpp), the docker session and the daemon's
// client (daemon/daemon_client.cpp).
#pragma once

#include <signal.h>

#include <functional>
#include <memory>

#include <boost/asio/io_context.hpp>

#include "acp/util/result.hpp"

namespace acp::launch {

// SIGINT, SIGTERM, SIGHUP, SIGQUIT: blocked by the session before the agent exists (the
// launcher resets the agent's mask before exec), then read from a SignalWatch.
sigset_t session_signals();

// Reads `set` (blocked by the caller) from a signalfd on `io` for as long as io runs, and calls
// on_signal(sig, from_kernel) for each one, on io's thread. from_kernel: the kernel sent it, such
// as a terminal's ^C, which reached the agent too (same process group), so forwarding it would
// deliver it twice.
class SignalWatch {
 public:
  using Handler = std::function<void(int sig, bool from_kernel)>;
  static Result<std::unique_ptr<SignalWatch>> start(boost::asio::io_context& io,
                                                    const sigset_t& set, Handler on_signal);
  ~SignalWatch();
  SignalWatch(const SignalWatch&) = delete;
  SignalWatch& operator=(const SignalWatch&) = delete;

 private:
  struct Impl;
  explicit SignalWatch(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace acp::launch
