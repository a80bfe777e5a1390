#include "tunnel_relay.hpp"
#include "coro.hpp"

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

// One direction of a tunnel.
net::awaitable<void> pump(tcp::socket& from, tcp::socket& to, TunnelState& st, uint64_t& bytes) {
  std::unique_ptr<char[]> buf;
  error_code ec, ignored;
  for (;;) {
    if (!buf) {
      co_await from.async_wait(tcp::socket::wait_read, redirect(ec));
      if (ec) break;
      buf.reset(new char[kTunnelBufferBytes]);
    }
    size_t n = from.read_some(net::buffer(buf.get(), kTunnelBufferBytes), ec);
    if (ec == net::error::would_block || ec == net::error::try_again) {
      buf.reset();
      continue;
    }
    if (ec == net::error::eof) {
      to.shutdown(tcp::socket::shutdown_send, ignored);  // half-close: pass it on
      co_return;
    }
    if (ec) break;
    co_await net::async_write(to, net::buffer(buf.get(), n), redirect(ec));
    if (ec) break;
    bytes += n;
    st.last = Clock::now();
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
