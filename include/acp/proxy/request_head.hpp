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

}  // namespace acp::proxy
