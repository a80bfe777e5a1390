// ACP's own monitoring endpoint: a small HTTP/1.1 server for /metrics (Prometheus text) and
// health checks, shared by `acp daemon --metrics` and `acp node-agent --metrics-listen`. One
// GET per connection, answered on the caller's io_context, so a route reads
// that loop's state without locks. Its listener is one of ACP's own endpoints
// (own_endpoints.hpp), registered before it listens: no proxy connects to it, whatever a
// policy allows.
#pragma once

#include <utility>  // before boost/asio (Boost 1.74)

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "acp/util/result.hpp"

namespace acp::proxy {

struct HttpReply {
  unsigned status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

class MetricsServer {
 public:
  // The answer to a GET of `target` (path and query as sent).
  using Route = std::function<HttpReply(std::string_view target)>;

  // Binds `listen`, registers it as ACP's own endpoint described by `what`, listens, and
  // serves until stop(). Errors name the address ("listen on 127.0.0.1 port 9464: Address
  // already in use").
  static Result<std::unique_ptr<MetricsServer>> start(boost::asio::io_context& io,
                                                      const boost::asio::ip::tcp::endpoint& listen,
                                                      const std::string& what, Route route);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  boost::asio::ip::tcp::endpoint local_endpoint() const;
  // Closes the listener; a request being answered finishes on the loop.
  void stop();

  struct State;

 private:
  explicit MetricsServer(std::shared_ptr<State> s) : state_(std::move(s)) {}
  std::shared_ptr<State> state_;
};

}  // namespace acp::proxy
