#include "acp/proxy/request_head.hpp"

#include <algorithm>
#include <limits>

#include <boost/asio/buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/rfc7230.hpp>

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

namespace {

template <class Key>
std::string joined(const http::fields& f, Key name) {
  std::string out;
  auto range = f.equal_range(name);
  for (auto it = range.first; it != range.second; ++it) {
    if (!out.empty()) out += ", ";
    out.append(it->value().data(), it->value().size());
  }
  return out;
}

bool is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

}  // namespace

std::string field_value(const http::fields& f, http::field name) {
  return joined(f, name);
}

std::string field_value(const http::fields& f, std::string_view name) {
  return joined(f, name);
}

bool has_token(std::string_view value, std::string_view token) {
  for (auto t : http::token_list{value})
    if (boost::beast::iequals(t, token)) return true;
  return false;
}

TunnelBytes classify_tunnel_bytes(std::string_view s, size_t max_line) {
  if (s.empty()) return TunnelBytes::NeedMore;
  // A TLS record: content type 22 (handshake), version major 3.
  if (static_cast<unsigned char>(s[0]) == 0x16)
    return s.size() < 2 ? TunnelBytes::NeedMore
                        : (s[1] == 0x03 ? TunnelBytes::Tls : TunnelBytes::Other);
  size_t i = leading_empty_lines(s);
  if (i > max_line) return TunnelBytes::Other;
  const size_t start = i;
  auto more = [&] {
    return s.size() - start > max_line ? TunnelBytes::Other : TunnelBytes::NeedMore;
  };
  // method SP
  while (i < s.size() && is_tchar(static_cast<unsigned char>(s[i]))) ++i;
  if (i == s.size()) return more();
  if (i == start || s[i] != ' ') return TunnelBytes::Other;
  // request-target SP: visible characters (and obs-text), at least one
  const size_t target = ++i;
  while (i < s.size() && static_cast<unsigned char>(s[i]) > 0x20 && s[i] != 0x7f) ++i;
  if (i == s.size()) return more();
  if (i == target || s[i] != ' ') return TunnelBytes::Other;
  // HTTP/1.x CRLF (or a bare LF, which the parser then judges). HTTP/2 prior knowledge
  // ("PRI * HTTP/2.0") cannot be judged request by request: Other.
  static constexpr std::string_view kVersion = "HTTP/1.d";
  ++i;
  for (char want : kVersion) {
    if (i == s.size()) return more();
    const char c = s[i++];
    if (want == 'd' ? (c < '0' || c > '9') : c != want) return TunnelBytes::Other;
  }
  if (i == s.size()) return more();
  if (s[i] == '\n') return TunnelBytes::Http;
  if (s[i] != '\r') return TunnelBytes::Other;
  if (++i == s.size()) return more();
  return s[i] == '\n' ? TunnelBytes::Http : TunnelBytes::Other;
}

}  // namespace acp::proxy
