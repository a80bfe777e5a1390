#include "parked_tunnel.hpp"

#include <exception>
#include <optional>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include "tunnel_relay.hpp"

namespace acp::proxy {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using boost::system::error_code;

namespace {

class ParkedTunnel final : public Closable, public std::enable_shared_from_this<ParkedTunnel> {
 public:
  ParkedTunnel(std::shared_ptr<ProxyServer::State> state, TunnelParts parts)
      : state_(std::move(state)), p_(std::move(parts)), timer_(p_.client.get_executor()) {
    state_->opened(this);
  }
  // No event from here: a tunnel destroyed with the io_context (its handlers never ran) must
  // not call the owner's callbacks while the owner is going away. Each way it ends calls end().
  ~ParkedTunnel() { state_->gone(this); }
  ParkedTunnel(const ParkedTunnel&) = delete;
  ParkedTunnel& operator=(const ParkedTunnel&) = delete;

  // Two socket waits and a timer race; the first to complete decides (file comment).
  void wait_first_speaker() {
    auto self = shared_from_this();
    timer_.expires_after(state_->cfg.limits.idle_timeout);
    timer_.async_wait([self](error_code ec) {
      if (!ec) self->decide(std::nullopt);  // idle_timeout: nobody spoke
    });
    p_.client.async_wait(tcp::socket::wait_read,
                         [self](error_code ec) { self->on_readable(Speaker::Client, ec); });
    p_.upstream.async_wait(tcp::socket::wait_read,
                           [self](error_code ec) { self->on_readable(Speaker::Server, ec); });
  }

  void relay() {
    ahead_ = p_.sent_ahead.size();
    if (ahead_ == 0) return start_relay();
    net::async_write(p_.upstream, net::buffer(p_.sent_ahead),
                     [self = shared_from_this()](error_code ec, size_t) {
                       std::string().swap(self->p_.sent_ahead);
                       if (ec || self->closed_) return self->close();
                       self->start_relay();
                     });
  }

  void close() override {
    closed_ = true;
    error_code ignored;
    timer_.cancel();
    p_.client.close(ignored);
    p_.upstream.close(ignored);  // a relay's pending waits end with it, and then its event
    if (!relay_) end();
  }

 private:
  void on_readable(Speaker who, error_code ec) {
    if (!ec) return decide(who);
    // A socket that cannot be waited on (closed under it): nothing can pass any more.
    if (ec != net::error::operation_aborted && !decided_) close();
  }

  // Once: the other waits are cancelled, their handlers then do nothing.
  void decide(std::optional<Speaker> who) {
    if (decided_ || closed_) return;
    decided_ = true;
    error_code ignored;
    timer_.cancel();
    p_.client.cancel(ignored);
    p_.upstream.cancel(ignored);
    if (!who) {
      close();
      return;
    }
    if (*who == Speaker::Server) {
      relay();
      return;
    }
    auto ex = p_.client.get_executor();
    TunnelParts resumed{std::move(p_.client), std::move(p_.upstream), std::move(p_.grant),
                        p_.event.take(), std::move(p_.sent_ahead)};
    net::co_spawn(ex, serve_resumed_tunnel(state_, std::move(resumed)), net::detached);
  }

  void start_relay() {
    relay_.emplace(p_.client, p_.upstream);
    relay_->start(shared_from_this(), state_->cfg.limits.idle_timeout,
                  [this](const TunnelTotals& t) {
                    p_.event.note("bytes_up", t.bytes_up + ahead_);
                    p_.event.note("bytes_down", t.bytes_down);
                    if (t.idled_out) p_.event.note("closed_by", "idle_timeout");
                    end();
                  });
  }

  // The tunnel is over: its event is finished, once (not when a resumed Connection took it).
  void end() {
    if (ended_) return;
    ended_ = true;
    state_->finish(p_.event);
  }

  std::shared_ptr<ProxyServer::State> state_;
  TunnelParts p_;
  net::steady_timer timer_;           // idle_timeout while nobody has spoken
  std::optional<TunnelRelay> relay_;  // once relayed
  uint64_t ahead_ = 0;                // sent_ahead's size, counted as bytes up
  bool decided_ = false;
  bool closed_ = false;
  bool ended_ = false;
};

}  // namespace

void park_tunnel(std::shared_ptr<ProxyServer::State> state, TunnelParts parts) {
  const bool stopped = state->stopped;
  auto t = std::make_shared<ParkedTunnel>(std::move(state), std::move(parts));
  if (stopped) return t->close();  // stop() closed every connection already: so this one
  t->wait_first_speaker();
}

void relay_parked_tunnel(std::shared_ptr<ProxyServer::State> state, TunnelParts parts) {
  const bool stopped = state->stopped;
  auto t = std::make_shared<ParkedTunnel>(std::move(state), std::move(parts));
  if (stopped) return t->close();
  t->relay();
}

}  // namespace acp::proxy
