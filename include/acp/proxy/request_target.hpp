// Parsing and checking where a proxied request goes: the CONNECT authority, the absolute-form
// URL or the origin-form target inside a tunnel, in the one canonical form that the policy, the
// SSRF guard, the consent gate, the audit and the upstream request all see (docs/policy.md,
// "Canonical form"); and the address classes that the proxy refuses to connect to unless a
// rule names the host literally.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/ip/address.hpp>

#include "acp/util/result.hpp"

namespace acp::proxy {

struct RequestTarget {
  std::string host;  // canonical_host(): IPv6 without brackets
  uint16_t port = 0;
  std::string path;  // canonical_path(): origin-form ("/a?b"); empty for CONNECT
  bool ipv6_literal = false;
  // host[:port] for a Host header: brackets around IPv6, the port left out when it is the
  // scheme's default (80 for http, 443 inside an inspected TLS tunnel).
  std::string host_header(uint16_t default_port = 80) const;
};

// The one spelling of a host: IDNA2008/UTS #46 (libidn2) for non-ASCII names, then lowercase
// without the trailing dot; every IPv4 spelling that inet_aton accepts (127.1, 2130706433,
// 0x7f.1, 0177.0.0.1) as the dotted quad, and a name whose last label is numeric but is not an
// address is refused (WHATWG URL's "ends in a number"); IPv6 ("[..]" or bare) in RFC 5952 form
// without brackets, IPv4-mapped IPv6 as the IPv4 address; zone ids refused. The error names
// the host and why.
Result<std::string> canonical_host(std::string_view host);

// canonical_host(), or empty when the host is refused.
std::string normalize_host(std::string_view host);

// The one spelling of an origin-form target "/path[?query]" (RFC 3986 6.2.2): escapes of
// unreserved characters decoded, the others' hex uppercased, bytes outside the URI character
// set percent-encoded, repeated slashes collapsed, dot segments (also %2E) removed; the
// fragment and an empty query dropped. Refused, with the reason, when the path stays
// ambiguous: an encoded '/' or '\', a raw '\' or ';', an encoded control character, a
// malformed escape, a control character anywhere.
Result<std::string> canonical_path(std::string_view target);

// CONNECT's authority-form: "host:port" or "[v6]:port"; the port is required.
Result<RequestTarget> parse_authority(std::string_view authority);

// Absolute-form: "http://host[:port][/path][?query]"; only the http scheme (HTTPS goes
// through CONNECT). No userinfo.
Result<RequestTarget> parse_absolute_url(std::string_view url);

// Origin-form ("/path?query") inside a tunnel whose authority is `authority`.
Result<RequestTarget> parse_origin_form(std::string_view target, const RequestTarget& authority);

// An IPv4-mapped IPv6 address (::ffff:a.b.c.d) as the IPv4 address it is; any other as it is.
// A dual-stack socket reports IPv4 peers that way: compare and print them as IPv4.
boost::asio::ip::address unmapped(const boost::asio::ip::address& a);

// Why the proxy must not connect to this address without a rule naming the host literally
// (loopback, private, CGNAT, link-local, ULA, documentation, benchmarking, multicast, reserved,
// ...), or nullopt. Forms that embed an IPv4 address (mapped, compatible, NAT64, 6to4) are
// judged by the address they embed; Teredo and local-use NAT64 are refused.
std::optional<std::string> restricted_address_reason(const boost::asio::ip::address& a);

}  // namespace acp::proxy
