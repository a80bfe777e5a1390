// What the proxy does with the first bytes of each request an agent sends, before any judge
// or upstream is involved: finding the end of the header section, refusing ambiguous framing
// (request smuggling) and parsing the head with the proxy's limits. Pure functions, so that
// the unit tests and the fuzzers (fuzz/) reach exactly the code the connection runs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>

namespace acp::proxy {

using RequestParser = boost::beast::http::request_parser<boost::beast::http::buffer_body>;

// Bytes of empty lines ("\r\n" or "\n") before a request line; RFC 9112 2.2 says to ignore them.
size_t leading_empty_lines(std::string_view s);

// End of the header section (just past the empty line), or npos. A bare-LF header ends at
// "\n\n" so that the parser gets to reject it rather than the proxy waiting for more.
size_t find_header_end(std::string_view s);

// obs-fold: a header line continued on the next line.
bool has_obs_fold(std::string_view head);

struct HeadRefusal {
  unsigned status = 400;  // 400 or 413
  std::string error;      // short, e.g. "Bad request"
  std::string reason;     // what was wrong, for the agent and the event log
};

// Parses one complete head (`head` ends where find_header_end() said) into `p`, with the
// header limit set to the head's size and the body limit to `max_body_bytes` (0: unlimited).
// Refuses what two servers could frame differently: obs-fold, more than one Content-Length,
// a Transfer-Encoding other than a final chunked, more than one Host. `used` is how many bytes
// of `head` the parser took. nullopt: the head is accepted and `p` holds it.
std::optional<HeadRefusal> parse_request_head(std::string_view head, uint64_t max_body_bytes,
                                              RequestParser& p, size_t& used);

// A header's value as HTTP defines it (RFC 9110 5.3): every field line of that name, in order,
// joined with ", ", as the origin server reads it. Every header the proxy judges by is read
// through this, never with fields[name] (the first line only).
std::string field_value(const boost::beast::http::fields& f, boost::beast::http::field name);
std::string field_value(const boost::beast::http::fields& f, std::string_view name);
// Does the comma-separated list `value` (a field_value) hold `token` (case-insensitive)?
bool has_token(std::string_view value, std::string_view token);

// What the first bytes a client sends inside a CONNECT tunnel are. Http: a complete HTTP/1.x
// request line (after optional empty lines), judged request by request. Tls: a TLS handshake
// record. Other: anything else, including HTTP/0.9, HTTP/2 prior knowledge and request lines a
// lenient server might still take (tabs, lowercase version). NeedMore: a prefix of a request
// line, or too little to tell. A request line longer than `max_line` bytes is Other.
enum class TunnelBytes { NeedMore, Http, Tls, Other };
TunnelBytes classify_tunnel_bytes(std::string_view first, size_t max_line);

}  // namespace acp::proxy
