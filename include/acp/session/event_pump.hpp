// Kernel events (denied connects) of one session, read from its ring buffer on the session's
// event loop and handed to a callback: `acp run` prints them and writes them to the audit log;
// `acp daemon` writes them to the audit log and forwards them to the `acp run` that registered
// the session.
#pragma once

#include <utility>  // before boost/asio (Boost 1.74)

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <functional>
#include <optional>

#include "acp/kernel/event_reader.hpp"
#include "acp/util/result.hpp"
#include "acp_abi.h"

namespace acp {

class EventPump {
 public:
  // events_fd: the session's events ring buffer (SockPrograms::events_fd() or a pinned
  // map_events); it is duplicated by the reader.
  EventPump(boost::asio::io_context& io, int events_fd,
            std::function<void(const acp_event&)> on_event);
  EventPump(const EventPump&) = delete;
  EventPump& operator=(const EventPump&) = delete;

  Status start();
  // Handles what is waiting now (before the session is taken down).
  void drain();
  // No on_event call after this returns.
  void stop();

 private:
  void arm();

  int events_fd_;
  std::optional<kernel::EventReader> reader_;
  boost::asio::posix::stream_descriptor stream_;
  std::function<void(const acp_event&)> on_event_;
  bool stopped_ = false;  // a wait that completed before stop() must not call on_event_
};

}  // namespace acp
