// A small asynchronous HTTP/1.1 client for the consent channels (webhook, Telegram): one
// request per connection, http:// or https:// (OpenSSL through asio::ssl, certificates
// verified against the system store plus an optional CA file, SNI and host name checked).
// Everything runs on the session's io_context; cancel_all() ends every outstanding request
// (stop()). Internal to proxy/consent/channels.
#pragma once

#include <utility>  // before boost/asio/awaitable.hpp (Boost 1.74)

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "acp/util/result.hpp"

namespace acp::consent::http {

struct Url {
  bool tls = false;
  std::string host;  // without brackets for IPv6
  std::string port;
  std::string target;  // path and query, "/" at least
};
// http://HOST[:PORT][/PATH] or https://...; user info and fragments are refused.
Result<Url> parse_url(const std::string& url);

struct Response {
  unsigned status = 0;
  std::string content_type;
  std::string body;
};

struct Outcome {
  enum class Kind {
    Ok,         // a complete response (any status)
    Connect,    // resolve/connect/TLS handshake failed: nothing reached the server
    Broken,     // the connection failed after the request was sent (reset, bad response)
    Timeout,    // no complete response in time
    Cancelled,  // cancel_all()
  };
  Kind kind = Kind::Connect;
  Response response;
  std::string error;  // for Kind != Ok: what went wrong, for logs and denial reasons
};

class Client {
 public:
  explicit Client(boost::asio::io_context& io);
  // TLS trust: the system store and, when given, `ca_file` (PEM). Errors name the file.
  Status init(const std::string& ca_file = "");

  // `headers` beyond Host, Content-Type (application/json when body is not empty),
  // Content-Length and Connection: close. The response body is limited to 1 MiB.
  boost::asio::awaitable<Outcome> request(const Url& url, const std::string& method,
                                          const std::string& target, std::string body,
                                          std::vector<std::pair<std::string, std::string>> headers,
                                          std::chrono::milliseconds timeout, std::string tag = "");
  // Ends the outstanding requests made with `tag` (every one for cancel_all) as Cancelled.
  void cancel(const std::string& tag);
  void cancel_all();

 private:
  boost::asio::io_context& io_;
  boost::asio::ssl::context tls_;
  uint64_t next_ = 0;
  std::map<uint64_t, std::pair<std::string, std::function<void()>>> cancels_;
};

// Lowercase hex of HMAC-SHA256(key, data).
std::string hmac_sha256_hex(const std::string& key, const std::string& data);
// Constant-time comparison of two strings (length leaks, content does not).
bool equal_constant_time(const std::string& a, const std::string& b);

}  // namespace acp::consent::http
