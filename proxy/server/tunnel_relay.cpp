#include "tunnel_relay.hpp"
#include "coro.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <exception>
#include <memory>
#include <optional>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/write.hpp>

namespace acp::proxy {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kTunnelBufferBytes = 64 * 1024;

struct TunnelState {
  explicit TunnelState(const net::any_io_executor& ex) : timer(ex) {}
  net::steady_timer timer;
  int done = 0;
  Clock::time_point last = Clock::now();
};

// A pipe for splice(2), made when a direction first has bytes to move: a tunnel that never
// carries anything holds none.
class SplicePipe {
 public:
  SplicePipe() = default;
  SplicePipe(const SplicePipe&) = delete;
  SplicePipe& operator=(const SplicePipe&) = delete;
  ~SplicePipe() {
    if (r_ >= 0) ::close(r_);
    if (w_ >= 0) ::close(w_);
  }
  bool open() {
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return false;
    r_ = fds[0];
    w_ = fds[1];
    // The default capacity (16 pages, 64 KiB): what a tunnel whose reader stalls can hold in
    // the proxy, as the buffered relay's 64 KiB did. A larger pipe (F_SETPIPE_SZ 1 MiB)
    // measured no faster here and would let an agent that opens tunnels and never reads pin
    // 16 times more kernel memory per tunnel.
    return true;
  }
  bool is_open() const { return r_ >= 0; }
  int r() const { return r_; }
  int w() const { return w_; }

 private:
  int r_ = -1, w_ = -1;
};

enum class Moved { Some, Again, Eof, Failed, Unsupported };

// Moves what `from` has (up to one pipe's worth) into the pipe. Again: nothing to read yet.
Moved splice_in(int from, const SplicePipe& pipe, size_t& in_pipe) {
  const ssize_t n = ::splice(from, nullptr, pipe.w(), nullptr, kTunnelBufferBytes,
                             SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  if (n > 0) {
    in_pipe = static_cast<size_t>(n);
    return Moved::Some;
  }
  if (n == 0) return Moved::Eof;
  if (errno == EAGAIN || errno == EINTR) return Moved::Again;
  if (errno == EINVAL || errno == ENOSYS) return Moved::Unsupported;
  return Moved::Failed;
}

// One direction of a tunnel. While nothing needs judging, the bytes never enter user space:
// splice(2) moves them from one socket into a pipe and from the pipe into the other socket.
// Where splice cannot be used (no pipe: EMFILE; a kernel that refuses it) the direction falls
// back to read/write through a buffer that exists only while bytes are moving.
// Both ways: a half-close is passed on, a reset or local close ends both directions, and
// `bytes` counts what was delivered to `to`.
net::awaitable<void> pump(tcp::socket& from, tcp::socket& to, TunnelState& st, uint64_t& bytes) {
  SplicePipe pipe;
  bool use_splice = true;
  bool flowing = false;  // the last read moved bytes: read again before waiting
  std::unique_ptr<char[]> buf;
  error_code ec, ignored;
  for (;;) {
    if (!flowing) {
      buf.reset();  // quiet: hold no buffer while waiting
      co_await from.async_wait(tcp::socket::wait_read, redirect(ec));
      if (ec) break;
    }
    flowing = false;
    if (use_splice && !pipe.is_open() && !pipe.open()) use_splice = false;
    if (use_splice) {
      size_t in_pipe = 0;
      const Moved m = splice_in(from.native_handle(), pipe, in_pipe);
      if (m == Moved::Again) continue;
      if (m == Moved::Eof) {
        to.shutdown(tcp::socket::shutdown_send, ignored);  // half-close: pass it on
        co_return;
      }
      if (m == Moved::Unsupported && bytes == 0) {
        use_splice = false;  // nothing taken from `from` yet: read it the other way
        flowing = true;
        continue;
      }
      if (m != Moved::Some) break;
      // Out of the pipe into `to`, waiting whenever its send buffer is full.
      bool failed = false;
      while (in_pipe > 0) {
        const ssize_t n = ::splice(pipe.r(), nullptr, to.native_handle(), nullptr, in_pipe,
                                   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
          in_pipe -= static_cast<size_t>(n);
          bytes += static_cast<uint64_t>(n);
          st.last = Clock::now();
          continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
          co_await to.async_wait(tcp::socket::wait_write, redirect(ec));
          if (!ec) continue;
        }
        failed = true;
        break;
      }
      if (failed) break;
      flowing = true;
      continue;
    }
    if (!buf) buf.reset(new char[kTunnelBufferBytes]);
    size_t n = from.read_some(net::buffer(buf.get(), kTunnelBufferBytes), ec);
    if (ec == net::error::would_block || ec == net::error::try_again) continue;
    if (ec == net::error::eof) {
      to.shutdown(tcp::socket::shutdown_send, ignored);  // half-close: pass it on
      co_return;
    }
    if (ec) break;
    co_await net::async_write(to, net::buffer(buf.get(), n), redirect(ec));
    if (ec) break;
    bytes += n;
    st.last = Clock::now();
    flowing = true;
  }
  // A reset or a local close: end the other direction too.
  from.close(ignored);
  to.close(ignored);
}

}  // namespace

net::awaitable<Speaker> first_speaker(tcp::socket& client, tcp::socket& upstream,
                                      std::chrono::seconds idle, TunnelStop stop) {
  // Two waits race; the first readable side wins. The handlers hold only `race`: they may run
  // after this frame (cancelled), never touching the sockets.
  struct Race {
    explicit Race(const net::any_io_executor& ex) : timer(ex) {}
    net::steady_timer timer;
    std::optional<Speaker> who;
  };
  auto race = std::make_shared<Race>(co_await net::this_coro::executor);
  auto on = [race](Speaker s) {
    return [race, s](error_code ec) {
      if (!ec && !race->who) race->who = s;
      race->timer.cancel();
    };
  };
  race->timer.expires_after(idle);
  client.async_wait(tcp::socket::wait_read, on(Speaker::Client));
  upstream.async_wait(tcp::socket::wait_read, on(Speaker::Server));
  stop.wake = &race->timer;
  error_code ec;
  co_await race->timer.async_wait(redirect(ec));
  stop.wake = nullptr;
  error_code ignored;
  client.cancel(ignored);
  upstream.cancel(ignored);
  if (stop.closed || !race->who) co_return Speaker::Neither;  // closed, or idle_timeout
  co_return *race->who;
}

net::awaitable<TunnelTotals> relay_tunnel(tcp::socket& a, tcp::socket& b, std::chrono::seconds idle,
                                          TunnelStop stop) {
  TunnelTotals totals;
  error_code ec;
  a.non_blocking(true, ec);
  b.non_blocking(true, ec);
  auto ex = co_await net::this_coro::executor;
  TunnelState st(ex);
  stop.wake = &st.timer;
  auto finished = [&st](std::exception_ptr) {
    ++st.done;
    st.timer.cancel();
  };
  net::co_spawn(ex, pump(a, b, st, totals.bytes_up), finished);
  net::co_spawn(ex, pump(b, a, st, totals.bytes_down), finished);
  while (st.done < 2) {
    st.timer.expires_after(idle);
    co_await st.timer.async_wait(redirect(ec));
    if (st.done >= 2) break;
    if (stop.closed || (!ec && Clock::now() - st.last >= idle)) {
      totals.idled_out = !stop.closed;
      error_code ignored;
      a.close(ignored);
      b.close(ignored);
    }
  }
  stop.wake = nullptr;
  co_return totals;
}

}  // namespace acp::proxy
