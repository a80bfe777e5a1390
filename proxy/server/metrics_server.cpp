#include "acp/proxy/metrics_server.hpp"

#include <chrono>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "acp/proxy/own_endpoints.hpp"

// GCC 12 misreads asio's awaitable frame allocator (operator new/delete of
// awaitable_frame_base) as a mismatched pair in coroutines: a known false positive.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace acp::proxy {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;

struct MetricsServer::State {
  explicit State(net::io_context& io) : acceptor(io) {}
  tcp::acceptor acceptor;
  OwnEndpoint own;
  Route route;
};

namespace {

constexpr auto kRequestTimeout = std::chrono::seconds(10);
constexpr size_t kMaxHeader = 8 * 1024;

net::awaitable<void> serve(std::shared_ptr<MetricsServer::State> state, tcp::socket sock) {
  beast::tcp_stream stream(std::move(sock));
  beast::flat_buffer buf;
  http::request_parser<http::empty_body> parser;
  parser.header_limit(kMaxHeader);
  error_code ec;
  stream.expires_after(kRequestTimeout);
  co_await http::async_read(stream, buf, parser, net::redirect_error(net::use_awaitable, ec));
  if (ec) co_return;
  const auto& req = parser.get();
  HttpReply reply;
  if (req.method() != http::verb::get) {
    reply = {405, "text/plain; charset=utf-8", "only GET\n"};
  } else {
    reply = state->route(req.target());
  }
  http::response<http::string_body> res{static_cast<http::status>(reply.status), req.version()};
  res.set(http::field::content_type, reply.content_type);
  if (reply.status == 405) res.set(http::field::allow, "GET");
  res.body() = std::move(reply.body);
  res.keep_alive(false);
  res.prepare_payload();
  co_await http::async_write(stream, res, net::redirect_error(net::use_awaitable, ec));
  stream.socket().shutdown(tcp::socket::shutdown_both, ec);
}

net::awaitable<void> accept_loop(std::shared_ptr<MetricsServer::State> state) {
  for (;;) {
    error_code ec;
    tcp::socket s =
        co_await state->acceptor.async_accept(net::redirect_error(net::use_awaitable, ec));
    if (!state->acceptor.is_open() || ec == net::error::operation_aborted) co_return;
    if (ec) continue;
    net::co_spawn(state->acceptor.get_executor(), serve(state, std::move(s)), net::detached);
  }
}

}  // namespace

Result<std::unique_ptr<MetricsServer>> MetricsServer::start(net::io_context& io,
                                                            const tcp::endpoint& listen,
                                                            const std::string& what, Route route) {
  auto state = std::make_shared<State>(io);
  state->route = std::move(route);
  auto& a = state->acceptor;
  const std::string where =
      "listen on " + listen.address().to_string() + " port " + std::to_string(listen.port());
  error_code ec;
  if (a.open(listen.protocol(), ec); ec) return make_error(where, ec.value());
  a.set_option(tcp::acceptor::reuse_address(true), ec);
  if (a.bind(listen, ec); ec) return make_error(where, ec.value());
  // Before listen(): no connection ever reaches it unregistered.
  auto own = register_own_endpoint(a.native_handle(), what);
  if (!own) return own.error();
  state->own = std::move(*own);
  if (a.listen(net::socket_base::max_listen_connections, ec); ec)
    return make_error(where, ec.value());
  net::co_spawn(io, accept_loop(state), net::detached);
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(state)));
}

MetricsServer::~MetricsServer() {
  stop();
}

tcp::endpoint MetricsServer::local_endpoint() const {
  error_code ec;
  return state_->acceptor.local_endpoint(ec);
}

void MetricsServer::stop() {
  error_code ec;
  state_->acceptor.close(ec);
  state_->own = OwnEndpoint();
}

}  // namespace acp::proxy
