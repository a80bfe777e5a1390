#include "tunnel_relay.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include <boost/asio/write.hpp>

namespace acp::proxy {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {

// At most this much is taken from a socket at once: the default pipe capacity (16 pages). It is
// also what a tunnel whose reader stalls can hold in the proxy per direction. A larger pipe
// (F_SETPIPE_SZ 1 MiB) measured no faster here and would let an agent that opens tunnels and
// never reads pin 16 times more kernel memory per tunnel.
constexpr size_t kTunnelChunkBytes = 64 * 1024;

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

}  // namespace

TunnelRelay::TunnelRelay(tcp::socket& up_from, tcp::socket& up_to)
    : up_(up_from, up_to), down_(up_to, up_from), timer_(up_from.get_executor()) {}

TunnelRelay::~TunnelRelay() {
  for (Direction* d : {&up_, &down_}) {
    close_fd(d->pipe_r);
    close_fd(d->pipe_w);
  }
}

void TunnelRelay::start(std::shared_ptr<void> owner, std::chrono::seconds idle,
                        std::function<void(const TunnelTotals&)> done) {
  owner_ = owner;
  idle_ = idle;
  done_ = std::move(done);
  last_ = Clock::now();
  error_code ignored;
  up_.from.non_blocking(true, ignored);
  down_.from.non_blocking(true, ignored);
  arm_idle_timer();
  // Each direction waits until it has bytes: one that never carries any makes no pipe.
  wait_readable(up_);
  wait_readable(down_);
}

void TunnelRelay::stop() {
  error_code ignored;
  up_.from.close(ignored);
  down_.from.close(ignored);
}

// Moves what `d` has until it would block (then waits) or ends.
void TunnelRelay::run(Direction& d) {
  for (;;) {
    if (d.ended) return;
    if (d.in_pipe > 0 && !drain_pipe(d)) return;  // waiting for `to`, or failed
    const Step s = d.use_splice ? splice_step(d) : buffered_step(d);
    if (s == Step::Wait) wait_readable(d);
    if (s != Step::Again) return;
  }
}

TunnelRelay::Step TunnelRelay::splice_step(Direction& d) {
  if (d.pipe_r < 0) {
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
      d.use_splice = false;  // no fd for a pipe: the buffered way
      return Step::Again;
    }
    d.pipe_r = fds[0];
    d.pipe_w = fds[1];
  }
  const ssize_t n = ::splice(d.from.native_handle(), nullptr, d.pipe_w, nullptr, kTunnelChunkBytes,
                             SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  if (n > 0) {
    d.in_pipe = static_cast<size_t>(n);
    return Step::Again;
  }
  if (n == 0) {
    half_close(d);
    return Step::Stop;
  }
  if (errno == EAGAIN || errno == EINTR) {
    d.buf.reset();
    return Step::Wait;
  }
  if ((errno == EINVAL || errno == ENOSYS) && d.bytes == 0) {
    d.use_splice = false;  // nothing taken from `from` yet: read it the other way
    return Step::Again;
  }
  fail(d);
  return Step::Stop;
}

TunnelRelay::Step TunnelRelay::buffered_step(Direction& d) {
  if (!d.buf) d.buf.reset(new char[kTunnelChunkBytes]);
  error_code ec;
  const size_t n = d.from.read_some(net::buffer(d.buf.get(), kTunnelChunkBytes), ec);
  if (ec == net::error::would_block || ec == net::error::try_again) {
    d.buf.reset();  // quiet: hold no buffer while waiting
    return Step::Wait;
  }
  if (ec == net::error::eof) {
    half_close(d);
    return Step::Stop;
  }
  if (ec) {
    fail(d);
    return Step::Stop;
  }
  net::async_write(d.to, net::buffer(d.buf.get(), n),
                   [this, &d, owner = owner_.lock()](error_code ec, size_t written) {
                     if (ec) return fail(d);
                     d.bytes += written;
                     last_ = Clock::now();
                     run(d);
                   });
  return Step::Stop;  // the write's handler carries on
}

// Out of the pipe into `to`; false when it waits for `to` to drain (the wait carries on) or
// failed.
bool TunnelRelay::drain_pipe(Direction& d) {
  while (d.in_pipe > 0) {
    const ssize_t n = ::splice(d.pipe_r, nullptr, d.to.native_handle(), nullptr, d.in_pipe,
                               SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
      d.in_pipe -= static_cast<size_t>(n);
      d.bytes += static_cast<uint64_t>(n);
      last_ = Clock::now();
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      d.to.async_wait(tcp::socket::wait_write, [this, &d, owner = owner_.lock()](error_code ec) {
        if (ec) return fail(d);
        run(d);
      });
      return false;
    }
    fail(d);
    return false;
  }
  return true;
}

void TunnelRelay::wait_readable(Direction& d) {
  d.from.async_wait(tcp::socket::wait_read, [this, &d, owner = owner_.lock()](error_code ec) {
    if (ec) return fail(d);
    run(d);
  });
}

void TunnelRelay::half_close(Direction& d) {
  error_code ignored;
  d.to.shutdown(tcp::socket::shutdown_send, ignored);  // pass it on
  d.ended = true;
  check_done();
}

// A reset, a local close or stop(): both directions end (the other's pending wait is aborted).
void TunnelRelay::fail(Direction& d) {
  error_code ignored;
  d.from.close(ignored);
  d.to.close(ignored);
  d.ended = true;
  check_done();
}

void TunnelRelay::arm_idle_timer() {
  timer_.expires_after(idle_);
  timer_.async_wait([this, owner = owner_.lock()](error_code ec) {
    if (ec || finished_) return;  // cancelled: done, or stopped
    if (Clock::now() - last_ >= idle_) {
      totals_.idled_out = true;
      stop();
      return;
    }
    arm_idle_timer();
  });
}

void TunnelRelay::check_done() {
  if (finished_ || !up_.ended || !down_.ended) return;
  finished_ = true;
  timer_.cancel();
  totals_.bytes_up = up_.bytes;
  totals_.bytes_down = down_.bytes;
  if (auto done = std::move(done_)) done(totals_);
}

}  // namespace acp::proxy
