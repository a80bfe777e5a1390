// Parsing and checking where a proxied request goes: the CONNECT authority or the
// absolute-form URL, the host normalized as the policy sees it, and the address classes
// that the proxy refuses to connect to unless a rule names the host.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/ip/address.hpp>

#include "acp/util/result.hpp"

namespace acp::proxy {

struct RequestTarget {
  std::string host;  // normalized: lowercase, no trailing dot, IPv6 without brackets
  uint16_t port = 0;
  std::string path;  // origin-form ("/a?b"); empty for CONNECT
  bool ipv6_literal = false;
  // host[:port] for a Host header: brackets around IPv6, port left out when it is 80.
  std::string host_header() const;
};

// Lowercase, without one trailing dot and without IPv6 brackets. Empty when the name is not a
// valid host (characters outside [a-z0-9._-], or a bad IPv6 literal).
std::string normalize_host(std::string_view host);

// CONNECT's authority-form: "host:port" or "[v6]:port"; the port is required.
Result<RequestTarget> parse_authority(std::string_view authority);

// Absolute-form: "http://host[:port][/path][?query]"; only the http scheme (HTTPS goes
// through CONNECT). No userinfo.
Result<RequestTarget> parse_absolute_url(std::string_view url);

// Why the proxy must not connect to this address without a rule naming the host (loopback,
// link-local, unspecified, multicast, broadcast), or nullopt. IPv4-mapped IPv6 is unwrapped.
std::optional<std::string> restricted_address_reason(const boost::asio::ip::address& a);

}  // namespace acp::proxy
