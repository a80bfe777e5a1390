// Internal to proxy/server: the byte pumping of an established CONNECT tunnel. Plain Asio on
// the two sockets: no HTTP here.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

namespace acp::proxy {

// Who spoke first on a tunnel after its 200 (parked_tunnel.cpp races the two sides).
enum class Speaker { Client, Server };

struct TunnelTotals {
  uint64_t bytes_up = 0, bytes_down = 0;
  bool idled_out = false;  // closed for idle_timeout, not by either side
};

// Relays both ways between two sockets until both directions end (a half-close is passed on, a
// reset or a close ends both), nothing moves for `idle`, or stop(). The bytes go socket -> pipe
// -> socket with splice(2) and never enter user space; each direction's pipe is made when it
// first carries bytes. Where splice is refused (no fd for a pipe, a kernel without it) a
// direction reads and writes through a buffer that it drops whenever the peer goes quiet.
//
// Callbacks, not coroutines: an idle tunnel holds this object, one socket wait per direction
// and a timer, nothing more (issue 17: an idle tunnel in at most 4 KB). splice(2) has no
// MSG_NOSIGNAL: the process must ignore SIGPIPE (ProxyServer::start() makes sure).
class TunnelRelay {
 public:
  TunnelRelay(boost::asio::ip::tcp::socket& up_from, boost::asio::ip::tcp::socket& up_to);
  TunnelRelay(const TunnelRelay&) = delete;
  TunnelRelay& operator=(const TunnelRelay&) = delete;
  ~TunnelRelay();

  // Starts relaying. Every pending handler holds `owner` (what keeps this object and both
  // sockets alive); `done` runs once, when both directions have ended.
  void start(std::shared_ptr<void> owner, std::chrono::seconds idle,
             std::function<void(const TunnelTotals&)> done);
  // Closes both sockets; `done` follows once the pending waits have been aborted.
  void stop();

  // One way of the tunnel: from one socket to the other.
  struct Direction {
    Direction(boost::asio::ip::tcp::socket& from, boost::asio::ip::tcp::socket& to)
        : from(from), to(to) {}
    boost::asio::ip::tcp::socket& from;
    boost::asio::ip::tcp::socket& to;
    int pipe_r = -1, pipe_w = -1;  // made when the direction first carries bytes
    size_t in_pipe = 0;            // taken from `from`, not yet given to `to`
    bool use_splice = true;
    std::unique_ptr<char[]> buf;  // the fallback's, only while bytes are moving
    uint64_t bytes = 0;           // delivered to `to`
    bool ended = false;
  };

 private:
  enum class Step { Again, Wait, Stop };  // Stop: ended, or a handler carries on
  void run(Direction& d);
  Step splice_step(Direction& d);
  Step buffered_step(Direction& d);
  bool drain_pipe(Direction& d);
  void wait_readable(Direction& d);
  void half_close(Direction& d);
  void fail(Direction& d);
  void arm_idle_timer();
  void check_done();

  Direction up_, down_;
  boost::asio::steady_timer timer_;
  std::weak_ptr<void> owner_;  // each handler holds it (locked when the handler is made)
  std::chrono::seconds idle_{0};
  std::chrono::steady_clock::time_point last_;
  std::function<void(const TunnelTotals&)> done_;
  TunnelTotals totals_;
  bool finished_ = false;
};

}  // namespace acp::proxy
