#include "acp/proxy/request_head.hpp"

#include <algorithm>
#include <limits>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>

namespace acp::proxy {

namespace http = boost::beast::http;

size_t leading_empty_lines(std::string_view s) {
  size_t skip = s.find_first_not_of("\r\n");
  return skip == std::string_view::npos ? s.size() : skip;
}

size_t find_header_end(std::string_view s) {
  auto crlf = s.find("\r\n\r\n");
  auto lf = s.find("\n\n");
  size_t end = std::string_view::npos;
  if (crlf != std::string_view::npos) end = crlf + 4;
  if (lf != std::string_view::npos) end = std::min(end, lf + 2);
  return end;
}

// obs-fold is ambiguous between servers: a smuggling vector, refused (RFC 9112 5.2 allows a
// proxy to reject it).
bool has_obs_fold(std::string_view head) {
  for (size_t i = head.find('\n'); i != std::string_view::npos; i = head.find('\n', i + 1)) {
    if (i + 1 < head.size() && (head[i + 1] == ' ' || head[i + 1] == '\t')) return true;
  }
  return false;
}

std::optional<HeadRefusal> parse_request_head(std::string_view head, uint64_t max_body_bytes,
                                              RequestParser& p, size_t& used) {
  used = 0;
  p.header_limit(static_cast<std::uint32_t>(head.size() + 1));
  if (max_body_bytes > 0) {
    p.body_limit(max_body_bytes);
  } else {
    // Not boost::none: Boost 1.74 compares a Content-Length against an empty optional as
    // "exceeds" (basic_parser.ipp `len_ > body_limit_`).
    p.body_limit(std::numeric_limits<std::uint64_t>::max());
  }
  if (has_obs_fold(head))
    return HeadRefusal{400, "Bad request",
                       "obsolete header line folding is refused (ambiguous framing)"};
  boost::system::error_code ec;
  used = p.put(boost::asio::buffer(head.data(), head.size()), ec);
  if (!ec && !p.is_header_done()) ec = http::error::partial_message;
  if (ec == http::error::body_limit)
    return HeadRefusal{
        413, "Request body too large",
        "the request body exceeds " + std::to_string(max_body_bytes) + " bytes (max_body_bytes)"};
  if (ec) return HeadRefusal{400, "Bad request", "malformed request: " + ec.message()};
  // Framing that two servers could read differently is refused (request smuggling).
  const auto& req = p.get();
  std::string smuggling;
  if (req.count(http::field::content_length) > 1)
    smuggling = "more than one Content-Length header";
  else if (req.count(http::field::transfer_encoding) > 0 && !p.chunked())
    smuggling = "a Transfer-Encoding other than a final chunked";
  else if (req.count(http::field::host) > 1)
    smuggling = "more than one Host header";
  if (!smuggling.empty()) return HeadRefusal{400, "Bad request", "ambiguous request: " + smuggling};
  return std::nullopt;
}

}  // namespace acp::proxy
