// A minimal Kubernetes API client: HTTPS GETs (Boost.Beast over OpenSSL) with the service
// account's bearer token, verifying the API server against the cluster CA. Enough for
// list + watch of pods; runs on the caller's io_context.
#pragma once

#include <utility>  // before awaitable.hpp (Boost 1.74)

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include "acp/util/result.hpp"

namespace acp::k8s {

inline constexpr const char* kServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";

struct ApiServerConfig {
  std::string host;  // name or address (IPv6 without brackets)
  uint16_t port = 443;
  // Re-read before every connection: projected service account tokens rotate. Empty: no
  // Authorization header.
  std::string token_path;
  std::string ca_path;  // PEM bundle the server certificate must chain to
  std::chrono::seconds connect_timeout{10};
};

// From KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT and the service account directory.
Result<ApiServerConfig> in_cluster_config();
// "https://host[:port]" or "https://[v6]:port" into host and port (the rest is kept).
Status parse_api_server_url(std::string_view url, ApiServerConfig& cfg);

// "a b/c" -> "a%20b%2Fc": every byte but RFC 3986 unreserved ones is escaped.
std::string url_encode(std::string_view s);

struct HttpResult {
  int status = 0;
  std::string body;
};

class KubeClient {
 public:
  KubeClient(boost::asio::io_context& io, ApiServerConfig cfg);

  // GET target (origin-form: "/api/v1/pods?..."); the whole body, at most max_body bytes.
  boost::asio::awaitable<Result<HttpResult>> get(std::string target, size_t max_body = 256u << 20);

  // GET target and hand every '\n'-terminated line of the body to on_line as it arrives (a
  // watch: one JSON event per line, chunked). on_line returning false ends the stream early.
  // Returns the HTTP status once the body ended (or was ended); on a non-2xx status the body
  // is returned in HttpResult::body instead of being split into lines. idle_timeout bounds
  // the wait for each piece of the body.
  boost::asio::awaitable<Result<HttpResult>> stream_lines(
      std::string target, std::function<bool(std::string_view)> on_line,
      std::chrono::seconds idle_timeout);

  const ApiServerConfig& config() const { return cfg_; }

 private:
  boost::asio::io_context& io_;
  ApiServerConfig cfg_;
};

}  // namespace acp::k8s
