#include "acp/session/event_pump.hpp"

#include <unistd.h>

namespace acp {

namespace asio = boost::asio;

EventPump::EventPump(asio::io_context& io, int events_fd,
                     std::function<void(const acp_event&)> on_event)
    : events_fd_(events_fd), stream_(io), on_event_(std::move(on_event)) {}

Status EventPump::start() {
  auto reader =
      kernel::EventReader::create(events_fd_, [this](const acp_event& e) { on_event_(e); });
  if (!reader) return reader.error();
  reader_.emplace(std::move(*reader));
  stream_.assign(::dup(reader_->epoll_fd()));
  arm();
  return {};
}

void EventPump::drain() {
  if (reader_ && !stopped_) (void)reader_->consume();
}

void EventPump::stop() {
  stopped_ = true;
  boost::system::error_code ec;
  stream_.cancel(ec);
  stream_.close(ec);
}

void EventPump::arm() {
  stream_.async_wait(asio::posix::stream_descriptor::wait_read,
                     [this](const boost::system::error_code& ec) {
                       if (ec || stopped_) return;
                       (void)reader_->consume();
                       arm();
                     });
}

}  // namespace acp
