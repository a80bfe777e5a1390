#include "acp/launch/session_signals.hpp"

#include <sys/signalfd.h>
#include <unistd.h>

#include <boost/asio/posix/stream_descriptor.hpp>

#include "acp/util/unique_fd.hpp"

namespace acp::launch {

sigset_t session_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) sigaddset(&set, s);
  return set;
}

struct SignalWatch::Impl {
  Impl(boost::asio::io_context& io, UniqueFd fd, Handler h)
      : sfd(std::move(fd)), stream(io, ::dup(sfd.get())), on_signal(std::move(h)) {}

  void arm() {
    stream.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                      [this](const boost::system::error_code& ec) {
                        if (ec) return;  // cancelled: the watch is going away
                        signalfd_siginfo si{};
                        while (::read(sfd.get(), &si, sizeof si) == sizeof si)
                          on_signal(static_cast<int>(si.ssi_signo), si.ssi_code == SI_KERNEL);
                        arm();
                      });
  }

  UniqueFd sfd;
  boost::asio::posix::stream_descriptor stream;
  Handler on_signal;
};

Result<std::unique_ptr<SignalWatch>> SignalWatch::start(boost::asio::io_context& io,
                                                        const sigset_t& set, Handler on_signal) {
  UniqueFd sfd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!sfd.valid()) return errno_error("signalfd");
  auto impl = std::make_unique<Impl>(io, std::move(sfd), std::move(on_signal));
  impl->arm();
  return std::unique_ptr<SignalWatch>(new SignalWatch(std::move(impl)));
}

SignalWatch::SignalWatch(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SignalWatch::~SignalWatch() = default;

}  // namespace acp::launch
