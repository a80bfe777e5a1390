// KubeClient: one TLS connection per request (a watch holds its connection for minutes; a
// list is rare), the token re-read each time.
#include "acp/k8s/kube_client.hpp"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <array>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

// GCC 12 misreads asio's awaitable frame allocator (operator new/delete of
// awaitable_frame_base) as a mismatched pair in coroutines: a known false positive.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace acp::k8s {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using asio::ip::tcp;
using error_code = boost::system::error_code;

constexpr size_t kMaxLineBytes = 64u << 20;  // one watch event; a pod object is far smaller

Result<std::string> read_token(const std::string& path) {
  std::ifstream in(path);
  if (!in) return errno_error("read service account token " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string t = ss.str();
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ')) t.pop_back();
  if (t.empty()) return make_error("service account token " + path + " is empty");
  return t;
}

std::string host_header(const ApiServerConfig& cfg) {
  const bool v6 = cfg.host.find(':') != std::string::npos;
  return (v6 ? "[" + cfg.host + "]" : cfg.host) + ":" + std::to_string(cfg.port);
}

using Stream = beast::ssl_stream<beast::tcp_stream>;

struct Connection {
  ssl::context ctx{ssl::context::tls_client};
  std::unique_ptr<Stream> stream;
  beast::flat_buffer buffer;
};

// Connects, verifies the server (chain to the CA, name or IP address in the certificate) and
// sends the GET. The token is read now, so a rotated one is picked up by the next request.
asio::awaitable<Result<std::unique_ptr<Connection>>> open_request(asio::io_context& io,
                                                                  const ApiServerConfig& cfg,
                                                                  const std::string& target) {
  auto conn = std::make_unique<Connection>();
  error_code ec;
  conn->ctx.set_verify_mode(ssl::verify_peer);
  conn->ctx.load_verify_file(cfg.ca_path, ec);
  if (ec) co_return make_error("load the cluster CA " + cfg.ca_path + ": " + ec.message());
  std::string token;
  if (!cfg.token_path.empty()) {
    auto t = read_token(cfg.token_path);
    if (!t) co_return t.error();
    token = std::move(*t);
  }
  conn->stream = std::make_unique<Stream>(io, conn->ctx);
  SSL* ssl_handle = conn->stream->native_handle();
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl_handle);
  error_code addr_ec;
  asio::ip::make_address(cfg.host, addr_ec);
  if (!addr_ec) {
    X509_VERIFY_PARAM_set1_ip_asc(param, cfg.host.c_str());
  } else {
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    X509_VERIFY_PARAM_set1_host(param, cfg.host.c_str(), 0);
    SSL_set_tlsext_host_name(ssl_handle, cfg.host.c_str());
  }

  tcp::resolver resolver(io);
  auto results = co_await resolver.async_resolve(cfg.host, std::to_string(cfg.port),
                                                 asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return make_error("resolve " + host_header(cfg) + ": " + ec.message());
  auto& lower = beast::get_lowest_layer(*conn->stream);
  lower.expires_after(cfg.connect_timeout);
  co_await lower.async_connect(results, asio::redirect_error(asio::use_awaitable, ec));
  if (ec)
    co_return make_error("connect to the API server " + host_header(cfg) + ": " + ec.message());
  co_await conn->stream->async_handshake(ssl::stream_base::client,
                                         asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return make_error("TLS handshake with " + host_header(cfg) + ": " + ec.message());

  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, host_header(cfg));
  req.set(http::field::accept, "application/json");
  req.set(http::field::user_agent, "acp-node-agent");
  if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
  co_await http::async_write(*conn->stream, req, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return make_error("send GET " + target + ": " + ec.message());
  co_return conn;
}

}  // namespace

Status parse_api_server_url(std::string_view url, ApiServerConfig& cfg) {
  constexpr std::string_view scheme = "https://";
  if (url.substr(0, scheme.size()) != scheme)
    return make_error("API server URL \"" + std::string(url) + "\": expected https://HOST[:PORT]");
  std::string_view rest = url.substr(scheme.size());
  if (auto slash = rest.find('/'); slash != std::string_view::npos) rest = rest.substr(0, slash);
  std::string host;
  std::string_view port_text;
  if (!rest.empty() && rest.front() == '[') {
    auto close = rest.find(']');
    if (close == std::string_view::npos)
      return make_error("API server URL \"" + std::string(url) + "\": unclosed [");
    host = std::string(rest.substr(1, close - 1));
    if (close + 1 < rest.size() && rest[close + 1] == ':') port_text = rest.substr(close + 2);
  } else {
    auto colon = rest.rfind(':');
    host = std::string(rest.substr(0, colon));
    if (colon != std::string_view::npos) port_text = rest.substr(colon + 1);
  }
  if (host.empty()) return make_error("API server URL \"" + std::string(url) + "\": no host");
  uint16_t port = 443;
  if (!port_text.empty()) {
    char* end = nullptr;
    std::string p(port_text);
    long v = std::strtol(p.c_str(), &end, 10);
    if (*end != '\0' || v < 1 || v > 65535)
      return make_error("API server URL \"" + std::string(url) + "\": bad port");
    port = static_cast<uint16_t>(v);
  }
  cfg.host = std::move(host);
  cfg.port = port;
  return {};
}

Result<ApiServerConfig> in_cluster_config() {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (!host || !*host)
    return make_error(
        "KUBERNETES_SERVICE_HOST is not set: not running in a pod; pass "
        "--api-server=https://HOST:PORT");
  ApiServerConfig cfg;
  std::string url =
      "https://" + std::string(std::string_view(host).find(':') != std::string_view::npos
                                   ? "[" + std::string(host) + "]"
                                   : std::string(host));
  if (port && *port) url += ":" + std::string(port);
  if (auto st = parse_api_server_url(url, cfg); !st) return st.error();
  cfg.token_path = std::string(kServiceAccountDir) + "/token";
  cfg.ca_path = std::string(kServiceAccountDir) + "/ca.crt";
  return cfg;
}

std::string url_encode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

KubeClient::KubeClient(asio::io_context& io, ApiServerConfig cfg) : io_(io), cfg_(std::move(cfg)) {}

asio::awaitable<Result<HttpResult>> KubeClient::get(std::string target, size_t max_body) {
  auto conn = co_await open_request(io_, cfg_, target);
  if (!conn) co_return conn.error();
  auto& c = **conn;
  error_code ec;
  http::response_parser<http::string_body> p;
  p.body_limit(max_body);
  beast::get_lowest_layer(*c.stream).expires_after(std::chrono::seconds(60));
  co_await http::async_read(*c.stream, c.buffer, p, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return make_error("GET " + target + ": " + ec.message());
  beast::get_lowest_layer(*c.stream).close();
  co_return HttpResult{static_cast<int>(p.get().result_int()), std::move(p.get().body())};
}

asio::awaitable<Result<HttpResult>> KubeClient::stream_lines(
    std::string target, std::function<bool(std::string_view)> on_line,
    std::chrono::seconds idle_timeout) {
  auto conn = co_await open_request(io_, cfg_, target);
  if (!conn) co_return conn.error();
  auto& c = **conn;
  auto& lower = beast::get_lowest_layer(*c.stream);
  error_code ec;
  http::response_parser<http::buffer_body> p;
  p.body_limit(std::numeric_limits<std::uint64_t>::max());
  lower.expires_after(std::chrono::seconds(60));
  co_await http::async_read_header(*c.stream, c.buffer, p,
                                   asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return make_error("GET " + target + ": " + ec.message());
  HttpResult out{static_cast<int>(p.get().result_int()), {}};
  const bool ok = out.status >= 200 && out.status < 300;
  std::array<char, 16384> buf;
  std::string line;
  while (!p.is_done()) {
    p.get().body().data = buf.data();
    p.get().body().size = buf.size();
    lower.expires_after(idle_timeout);
    // read_some: returns as soon as some of the body is parsed (a watch event must be handled
    // when it arrives, not when 16 KiB of them have piled up).
    co_await http::async_read_some(*c.stream, c.buffer, p,
                                   asio::redirect_error(asio::use_awaitable, ec));
    if (ec == http::error::need_buffer) ec = {};
    if (ec) co_return make_error("GET " + target + " (reading the body): " + ec.message());
    const size_t n = buf.size() - p.get().body().size;
    if (!ok) {
      if (out.body.size() < 65536) out.body.append(buf.data(), n);
      continue;
    }
    for (size_t i = 0; i < n; ++i) {
      if (buf[i] != '\n') {
        line.push_back(buf[i]);
        if (line.size() > kMaxLineBytes)
          co_return make_error("GET " + target + ": a line of the body exceeds " +
                               std::to_string(kMaxLineBytes) + " bytes");
        continue;
      }
      if (!line.empty() && !on_line(line)) {
        lower.close();
        co_return out;
      }
      line.clear();
    }
  }
  if (ok && !line.empty()) on_line(line);
  lower.close();
  co_return out;
}

}  // namespace acp::k8s
