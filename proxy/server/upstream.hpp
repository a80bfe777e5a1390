// Internal to proxy/server: the upstream side of a forwarded request. Resolve once, drop every
// address the request may not reach (docs/proxy.md, "The destination is the address it
// judged"), connect to what is left; and the one kept-alive upstream connection a client
// connection reuses for its next request to the same host:port.
#pragma once

#include <utility>  // before boost/asio/awaitable.hpp (Boost 1.74)

#include <optional>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "acp/proxy/request_target.hpp"
#include "proxy_state.hpp"
#include "proxy_stream.hpp"
#include "request_event.hpp"

namespace acp::proxy {

struct UpstreamConnect {
  std::optional<boost::beast::tcp_stream> stream;  // empty: refused, see `refusal`
  bool restricted = false;     // the address connected to needed a rule naming the host
  Refusal refusal{0, {}, {}};  // 403 (no address may be reached), 502, 504
};

// Resolves `target` (an IP literal skips the resolver), keeps the addresses that are neither
// this proxy's listeners nor ACP's own endpoints, nor restricted unless `host_named`, and
// connects to them within connect_timeout. The addresses checked are the only ones connected to.
boost::asio::awaitable<UpstreamConnect> connect_upstream(const ProxyServer::State& state,
                                                         const RequestTarget& target,
                                                         bool host_named);

// The upstream connection a client connection keeps alive between its requests.
class KeptUpstream {
 public:
  // Whether the next request to `key` (host:port) may go over it: same destination, open, no
  // unread response bytes (they would answer the next request), not to be closed after this
  // request, and a restricted address only for a judgement naming the host.
  bool reusable_for(const std::string& key, bool host_named, bool close_after) {
    return stream_ && key_ == key && stream_->socket().is_open() && buffer_.size() == 0 &&
           !close_after && (!restricted_ || host_named);
  }
  ProxyStream& hold(boost::beast::tcp_stream s, std::string key, bool restricted) {
    drop();
    stream_.emplace(std::move(s));
    key_ = std::move(key);
    restricted_ = restricted;
    return *stream_;
  }
  void drop() {
    stream_.reset();
    buffer_.clear();
  }
  bool held() const { return stream_.has_value(); }
  ProxyStream& stream() { return *stream_; }
  boost::beast::flat_buffer& buffer() { return buffer_; }  // response bytes read ahead
  // From Connection::close(): aborts whatever waits on it, from outside the coroutine.
  void close_socket() {
    boost::system::error_code ec;
    if (stream_) stream_->socket().close(ec);
  }

 private:
  std::optional<ProxyStream> stream_;  // plain, or TLS inside an inspected CONNECT
  boost::beast::flat_buffer buffer_;
  std::string key_;          // host:port it was opened for
  bool restricted_ = false;  // its address needed a rule naming the host
};

}  // namespace acp::proxy
