#include "http_client.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <memory>
#include <optional>

#include "acp/util/redact.hpp"
#include "acp/util/scope_exit.hpp"

// GCC 12 misreads asio's awaitable frame allocator (operator new/delete of
// awaitable_frame_base) as a mismatched pair in this file's coroutine: a known false positive.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace acp::consent::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using asio::ip::tcp;

Result<Url> parse_url(const std::string& url) {
  // Errors reach acp's stderr, which the agent may read: a credential in the URL is hidden.
  const std::string shown = util::redact_url(url);
  Url u;
  std::string rest;
  if (url.rfind("http://", 0) == 0) {
    rest = url.substr(7);
  } else if (url.rfind("https://", 0) == 0) {
    u.tls = true;
    rest = url.substr(8);
  } else {
    return make_error("url '" + shown + "' is not http:// or https://");
  }
  auto slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  u.target = slash == std::string::npos ? "/" : rest.substr(slash);
  if (auto hash = u.target.find('#'); hash != std::string::npos) u.target.resize(hash);
  if (authority.find('@') != std::string::npos)
    return make_error("url '" + shown + "' has user info: put secrets in the secret file instead");
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string::npos) return make_error("url '" + shown + "' has a bad IPv6 host");
    u.host = authority.substr(1, close - 1);
    std::string after = authority.substr(close + 1);
    if (!after.empty() && after.front() != ':')
      return make_error("url '" + shown + "' has a bad host");
    u.port = after.empty() ? "" : after.substr(1);
  } else {
    auto colon = authority.find(':');
    u.host = authority.substr(0, colon);
    u.port = colon == std::string::npos ? "" : authority.substr(colon + 1);
  }
  if (u.port.empty()) u.port = u.tls ? "443" : "80";
  if (u.host.empty()) return make_error("url '" + shown + "' has no host");
  for (char c : u.port)
    if (c < '0' || c > '9') return make_error("url '" + shown + "' has a bad port");
  return u;
}

Client::Client(asio::io_context& io) : io_(io), tls_(asio::ssl::context::tls_client) {}

Status Client::init(const std::string& ca_file) {
  boost::system::error_code ec;
  tls_.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                       asio::ssl::context::no_tlsv1_1,
                   ec);
  tls_.set_default_verify_paths(ec);
  if (ec) return make_error("cannot load the system's CA certificates: " + ec.message());
  if (!ca_file.empty()) {
    tls_.load_verify_file(ca_file, ec);
    if (ec) return make_error("cannot load CA file " + ca_file + ": " + ec.message());
  }
  tls_.set_verify_mode(asio::ssl::verify_peer);
  return {};
}

namespace {

// Everything one request owns; the timer's handler holds it weakly, so it may fire late.
struct Exchange {
  explicit Exchange(asio::io_context& io, asio::ssl::context& ctx, bool tls)
      : resolver(io), timer(io), plain(io) {
    if (tls) secure.emplace(io, ctx);
  }
  tcp::resolver resolver;
  asio::steady_timer timer;
  beast::tcp_stream plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> secure;
  bool timed_out = false;
  bool cancelled = false;
  beast::tcp_stream& lowest() { return secure ? beast::get_lowest_layer(*secure) : plain; }
  void abort() {
    resolver.cancel();
    boost::system::error_code ignored;
    lowest().socket().close(ignored);
  }
};

template <class Stream>
asio::awaitable<void> send_and_receive(Stream& s, bhttp::request<bhttp::string_body>& req,
                                       bhttp::response_parser<bhttp::string_body>& parser,
                                       boost::system::error_code& ec, bool& sent) {
  co_await bhttp::async_write(s, req, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return;
  sent = true;
  beast::flat_buffer buf;
  co_await bhttp::async_read(s, buf, parser, asio::redirect_error(asio::use_awaitable, ec));
}

bool is_ip_literal(const std::string& host) {
  boost::system::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

}  // namespace

asio::awaitable<Outcome> Client::request(const Url& url, const std::string& method,
                                         const std::string& target, std::string body,
                                         std::vector<std::pair<std::string, std::string>> headers,
                                         std::chrono::milliseconds timeout, std::string tag) {
  auto x = std::make_shared<Exchange>(io_, tls_, url.tls);
  const uint64_t id = next_++;
  cancels_[id] = {std::move(tag), [w = std::weak_ptr<Exchange>(x)] {
                    if (auto s = w.lock()) {
                      s->cancelled = true;
                      s->abort();
                    }
                  }};
  auto unregister = util::on_scope_exit([this, id, x] {
    cancels_.erase(id);
    x->timer.cancel();
  });
  x->timer.expires_after(timeout);
  x->timer.async_wait([w = std::weak_ptr<Exchange>(x)](boost::system::error_code ec) {
    auto s = w.lock();
    if (ec || !s) return;
    s->timed_out = true;
    s->abort();
  });

  Outcome out;
  auto fail = [&](Outcome::Kind kind, const std::string& what) {
    out.kind = x->cancelled   ? Outcome::Kind::Cancelled
               : x->timed_out ? Outcome::Kind::Timeout
                              : kind;
    if (out.kind == Outcome::Kind::Timeout)
      out.error = "no answer within " + std::to_string(timeout.count()) + " ms";
    else if (out.kind == Outcome::Kind::Cancelled)
      out.error = "cancelled";
    else
      out.error = what;
    return out;
  };

  boost::system::error_code ec;
  auto results = co_await x->resolver.async_resolve(url.host, url.port,
                                                    asio::redirect_error(asio::use_awaitable, ec));
  if (ec || x->cancelled || x->timed_out)
    co_return fail(Outcome::Kind::Connect, "cannot resolve " + url.host + ": " + ec.message());
  co_await x->lowest().async_connect(results, asio::redirect_error(asio::use_awaitable, ec));
  if (ec || x->cancelled || x->timed_out)
    co_return fail(Outcome::Kind::Connect,
                   "cannot connect to " + url.host + ":" + url.port + ": " + ec.message());

  if (x->secure) {
    SSL* ssl = x->secure->native_handle();
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    if (is_ip_literal(url.host)) {
      X509_VERIFY_PARAM_set1_ip_asc(param, url.host.c_str());
    } else {
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      X509_VERIFY_PARAM_set1_host(param, url.host.c_str(), 0);
      SSL_set_tlsext_host_name(ssl, url.host.c_str());  // SNI
    }
    co_await x->secure->async_handshake(asio::ssl::stream_base::client,
                                        asio::redirect_error(asio::use_awaitable, ec));
    if (ec || x->cancelled || x->timed_out) {
      std::string why = ec.message();
      long v = SSL_get_verify_result(ssl);
      if (v != X509_V_OK) why = std::string("certificate: ") + X509_verify_cert_error_string(v);
      co_return fail(Outcome::Kind::Connect, "TLS with " + url.host + " failed: " + why);
    }
  }

  bhttp::verb verb = bhttp::string_to_verb(method);
  bhttp::request<bhttp::string_body> req{verb, target, 11};
  const bool default_port = url.port == (url.tls ? "443" : "80");
  std::string host_header =
      url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host;
  if (!default_port) host_header += ":" + url.port;
  req.set(bhttp::field::host, host_header);
  req.set(bhttp::field::user_agent, "acp");
  req.set(bhttp::field::connection, "close");
  if (!body.empty()) req.set(bhttp::field::content_type, "application/json");
  for (auto& [k, v] : headers) req.set(k, v);
  req.body() = std::move(body);
  req.prepare_payload();

  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(1 << 20);
  parser.header_limit(16 * 1024);
  bool sent = false;
  if (x->secure)
    co_await send_and_receive(*x->secure, req, parser, ec, sent);
  else
    co_await send_and_receive(x->plain, req, parser, ec, sent);
  // A TLS peer that closes without close_notify after a complete response is fine.
  if (ec == asio::ssl::error::stream_truncated && parser.is_done()) ec = {};
  if (ec || x->cancelled || x->timed_out)
    co_return fail(sent ? Outcome::Kind::Broken : Outcome::Kind::Connect,
                   (sent ? "reading the answer failed: " : "sending failed: ") + ec.message());
  auto res = parser.release();
  out.kind = Outcome::Kind::Ok;
  out.response.status = res.result_int();
  out.response.content_type = std::string(res[bhttp::field::content_type]);
  out.response.body = std::move(res.body());
  boost::system::error_code ignored;
  x->lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
  co_return out;
}

void Client::cancel(const std::string& tag) {
  auto cancels = cancels_;
  for (auto& [_, c] : cancels)
    if (c.first == tag) c.second();
}

void Client::cancel_all() {
  auto cancels = cancels_;
  for (auto& [_, c] : cancels) c.second();
}

std::string hmac_sha256_hex(const std::string& key, const std::string& data) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac, &len);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += hex[mac[i] >> 4];
    out += hex[mac[i] & 15];
  }
  return out;
}

bool equal_constant_time(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace acp::consent::http
