// Internal to proxy/server: one side of a proxied exchange (the agent's connection or the
// upstream one), plain TCP or TLS on top of it. The HTTP request path (handle_http and what
// it calls) is written once against this type, so a request decrypted from an inspected
// CONNECT goes through exactly the code a plain absolute-form request goes through.
#pragma once

#include <utility>  // before boost/asio/awaitable.hpp (Boost 1.74)

#include <memory>

#include <boost/asio/async_result.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/tcp_stream.hpp>

namespace acp::proxy {

class ProxyStream {
 public:
  using executor_type = boost::beast::tcp_stream::executor_type;
  using Tls = boost::asio::ssl::stream<boost::beast::tcp_stream&>;

  explicit ProxyStream(boost::asio::ip::tcp::socket s) : tcp_(std::move(s)) {}
  explicit ProxyStream(boost::beast::tcp_stream s) : tcp_(std::move(s)) {}
  // tls_ refers to tcp_: never moved.
  ProxyStream(const ProxyStream&) = delete;
  ProxyStream& operator=(const ProxyStream&) = delete;

  executor_type get_executor() { return tcp_.get_executor(); }
  boost::asio::ip::tcp::socket& socket() { return tcp_.socket(); }
  template <class Duration>
  void expires_after(Duration d) {
    tcp_.expires_after(d);
  }
  void expires_never() { tcp_.expires_never(); }

  // From here on, reads and writes go through TLS (the handshake is the caller's).
  Tls& start_tls(boost::asio::ssl::context& ctx) {
    tls_ = std::make_unique<Tls>(tcp_, ctx);
    return *tls_;
  }
  Tls* tls() { return tls_.get(); }

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& b, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, size_t)>(
        [this](auto handler, const MutableBuffers& b) {
          if (tls_)
            tls_->async_read_some(b, std::move(handler));
          else
            tcp_.async_read_some(b, std::move(handler));
        },
        token, b);
  }
  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& b, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, size_t)>(
        [this](auto handler, const ConstBuffers& b) {
          if (tls_)
            tls_->async_write_some(b, std::move(handler));
          else
            tcp_.async_write_some(b, std::move(handler));
        },
        token, b);
  }

 private:
  boost::beast::tcp_stream tcp_;
  std::unique_ptr<Tls> tls_;
};

}  // namespace acp::proxy
