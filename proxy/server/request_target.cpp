#include "acp/proxy/request_target.hpp"

#include <idn2.h>

#include <array>
#include <cctype>
#include <charconv>
#include <vector>

namespace acp::proxy {
namespace {

bool parse_port(std::string_view s, uint16_t& out) {
  if (s.empty() || s.size() > 5) return false;
  unsigned v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v == 0 || v > 65535) return false;
  out = static_cast<uint16_t>(v);
  return true;
}

// Splits "host:port", "[v6]:port", "host" or "[v6]" into host and port text.
bool split_host_port(std::string_view hp, std::string_view& host, std::string_view& port,
                     bool& has_port) {
  has_port = false;
  if (!hp.empty() && hp.front() == '[') {
    auto close = hp.find(']');
    if (close == std::string_view::npos) return false;
    host = hp.substr(0, close + 1);
    auto rest = hp.substr(close + 1);
    if (rest.empty()) return true;
    if (rest.front() != ':') return false;
    port = rest.substr(1);
    has_port = true;
    return true;
  }
  auto colon = hp.rfind(':');
  if (colon == std::string_view::npos) {
    host = hp;
    return true;
  }
  if (hp.find(':') != colon) return false;  // a bare IPv6 literal must be bracketed
  host = hp.substr(0, colon);
  port = hp.substr(colon + 1);
  has_port = true;
  return true;
}

std::string quoted(std::string_view s) {
  std::string out = "'";
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) {
      static constexpr char kHex[] = "0123456789ABCDEF";
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out + "'";
}

Result<std::string> canonical_v6(std::string_view inner, std::string_view shown) {
  // No zone ids ("fe80::1%eth0"): they name an interface of the proxy's host, and Boost reads
  // them back differently ("%-5x" becomes "%18446744073709551611"; "::1%x" drops it), so the
  // host the policy saw would not be the one printed or connected to. Found by fuzzing.
  if (inner.find('%') != std::string_view::npos)
    return make_error("host " + quoted(shown) + ": IPv6 zone ids are refused");
  boost::system::error_code ec;
  auto a = boost::asio::ip::make_address_v6(std::string(inner), ec);
  if (ec) return make_error("host " + quoted(shown) + " is not a valid IPv6 address");
  // ::ffff:a.b.c.d is a.b.c.d: one address, one spelling.
  if (a.is_v4_mapped())
    return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, a).to_string();
  return a.to_string();
}

// WHATWG URL "IPv4 number parser": 0x/0X hex, a leading 0 octal, else decimal. nullopt when
// it is not a number; values past 2^32 saturate (they are refused by the caller anyway).
std::optional<uint64_t> ipv4_number(std::string_view s) {
  if (s.empty()) return std::nullopt;
  int radix = 10;
  if (s.size() >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    radix = 16;
    s.remove_prefix(2);
  } else if (s.size() >= 2 && s[0] == '0') {
    radix = 8;
    s.remove_prefix(1);
  }
  uint64_t v = 0;
  for (char c : s) {
    int d = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : 99;
    if (d >= radix) return std::nullopt;
    v = v * static_cast<uint64_t>(radix) + static_cast<uint64_t>(d);
    if (v > (uint64_t{1} << 40)) v = uint64_t{1} << 40;
  }
  return v;
}

// WHATWG URL "ends in a number": the last label is all digits or a 0x number. Such a name is
// an IPv4 address in some spelling, or refused: resolvers and browsers read it as one.
bool ends_in_number(std::string_view host) {
  auto dot = host.rfind('.');
  std::string_view last = dot == std::string_view::npos ? host : host.substr(dot + 1);
  if (last.empty()) return false;
  if (last.find_first_not_of("0123456789") == std::string_view::npos) return true;
  return ipv4_number(last).has_value();
}

Result<std::string> canonical_v4(std::string_view host) {
  auto refuse = [&] {
    return make_error("host " + quoted(host) +
                      " ends in a number but is not an IPv4 address; write the address as a "
                      "dotted quad (a.b.c.d)");
  };
  std::array<uint64_t, 4> parts{};
  size_t n = 0;
  for (size_t start = 0;;) {
    auto dot = host.find('.', start);
    if (n == parts.size()) return refuse();
    auto num = ipv4_number(host.substr(start, dot - start));
    if (!num) return refuse();
    parts[n++] = *num;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  uint64_t v = 0;
  for (size_t i = 0; i + 1 < n; ++i) {
    if (parts[i] > 255) return refuse();
    v |= parts[i] << (8 * (3 - i));
  }
  const uint64_t last = parts[n - 1];
  if (last >= (uint64_t{1} << (8 * (5 - n)))) return refuse();
  v |= last;
  return boost::asio::ip::address_v4(static_cast<uint32_t>(v)).to_string();
}

// Non-ASCII names through IDNA2008 with UTS #46 non-transitional mapping, as browsers and curl
// (libidn2) send them: "Bücher.de" is "xn--bcher-kva.de", "127。0。0。1" is "127.0.0.1".
Result<std::string> idna_to_ascii(std::string_view host) {
  char* out = nullptr;
  int rc = idn2_to_ascii_8z(std::string(host).c_str(), &out, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
  if (rc != IDN2_OK) {
    if (out) idn2_free(out);
    return make_error("host " + quoted(host) + " is not a valid internationalized name (" +
                      idn2_strerror(rc) + ")");
  }
  std::string ascii(out);
  idn2_free(out);
  return ascii;
}

constexpr bool is_unreserved(unsigned char c) {
  return std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

// Characters that stand for themselves in a path segment (RFC 3986 pchar), less ';': Tomcat,
// Jetty and Spring cut "/admin;x/y" to "/admin/y", so it is refused rather than judged as
// written. In the query '/', '?' and ';' are plain data.
bool is_plain(unsigned char c, bool query) {
  if (is_unreserved(c)) return true;
  switch (c) {
    case '!':
    case '$':
    case '&':
    case '\'':
    case '(':
    case ')':
    case '*':
    case '+':
    case ',':
    case '=':
    case ':':
    case '@':
    case '/':
      return true;
    case '?':
    case ';':
      return query;
    default:
      return false;
  }
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void append_escape(std::string& out, unsigned char c) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  out.push_back('%');
  out.push_back(kHex[c >> 4]);
  out.push_back(kHex[c & 15]);
}

// Percent-encoding normalized (RFC 3986 6.2.2.1-2): one spelling per character.
Status normalize_escapes(std::string_view in, bool query, std::string& out) {
  const char* where = query ? "the query" : "the path";
  for (size_t i = 0; i < in.size(); ++i) {
    auto c = static_cast<unsigned char>(in[i]);
    if (c < 0x20 || c == 0x7f || c == ' ')
      return make_error(std::string(where) + " holds a control character or a space");
    if (c == '%') {
      const int hi = i + 1 < in.size() ? hex_value(in[i + 1]) : -1;
      const int lo = i + 2 < in.size() ? hex_value(in[i + 2]) : -1;
      if (hi < 0 || lo < 0)
        return make_error(std::string(where) + " holds a malformed escape " +
                          quoted(in.substr(i, 3)) + " (a '%' must start %XX)");
      auto d = static_cast<unsigned char>(hi * 16 + lo);
      i += 2;
      if (is_unreserved(d)) {
        out.push_back(static_cast<char>(d));
      } else if (!query && (d == '/' || d == '\\')) {
        return make_error(std::string("the path holds an encoded '") + static_cast<char>(d) +
                          "' (%" + (d == '/' ? "2F" : "5C") +
                          "): origins disagree on whether it separates segments");
      } else if (!query && (d < 0x20 || d == 0x7f)) {
        std::string esc;
        append_escape(esc, d);
        return make_error("the path holds an encoded control character (" + esc + ")");
      } else {
        append_escape(out, d);
      }
    } else if (c == '\\' && !query) {
      return make_error("the path holds a '\\': some origins read it as '/'");
    } else if (c == ';' && !query) {
      return make_error(
          "the path holds a ';': some origins cut a segment at it (/admin;x/y is /admin/y); "
          "encode it as %3B if it is data");
    } else if (is_plain(c, query)) {
      out.push_back(static_cast<char>(c));
    } else {
      append_escape(out, c);  // '"', '<', '{', '|', non-ASCII ...: as browsers send them
    }
  }
  return {};
}

// Repeated slashes collapsed, then dot segments removed (RFC 3986 5.2.4): "/a//b/../c" is
// "/a/c". `path` starts with '/' and has no escapes of '/' or '.' left.
std::string remove_dot_segments(std::string_view path) {
  std::vector<std::string_view> stack;
  bool trailing = false;
  size_t i = 1;
  while (true) {
    auto slash = path.find('/', i);
    std::string_view seg = path.substr(i, slash == std::string_view::npos ? slash : slash - i);
    const bool last = slash == std::string_view::npos;
    if (seg == "..") {
      if (!stack.empty()) stack.pop_back();
      trailing = last;
    } else if (seg == "." || seg.empty()) {
      trailing = last;
    } else {
      stack.push_back(seg);
      trailing = false;
    }
    if (last) break;
    i = slash + 1;
  }
  std::string out;
  out.reserve(path.size());
  for (auto seg : stack) {
    out.push_back('/');
    out += seg;
  }
  if (trailing || out.empty()) out.push_back('/');
  return out;
}

}  // namespace

std::string RequestTarget::host_header(uint16_t default_port) const {
  std::string h = ipv6_literal ? "[" + host + "]" : host;
  if (port != default_port) h += ":" + std::to_string(port);
  return h;
}

Result<std::string> canonical_host(std::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    return canonical_v6(host.substr(1, host.size() - 2), host);
  if (host.find(':') != std::string_view::npos) return canonical_v6(host, host);
  std::string ascii;
  bool non_ascii = false;
  for (char c : host) non_ascii |= static_cast<unsigned char>(c) >= 0x80;
  if (non_ascii) {
    auto a = idna_to_ascii(host);
    if (!a) return a.error();
    ascii = std::move(*a);
    host = ascii;
  }
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  if (host.empty()) return make_error("the host is empty");
  if (host.size() > 253)
    return make_error("host name of " + std::to_string(host.size()) +
                      " characters is longer than DNS allows (253)");
  std::string out;
  out.reserve(host.size());
  for (char c : host) {
    auto u = static_cast<unsigned char>(c);
    if (!std::isalnum(u) && c != '-' && c != '.' && c != '_')
      return make_error("host " + quoted(host) + " holds " + quoted(std::string_view(&c, 1)) +
                        " (a host name has letters, digits, '-', '_' and '.')");
    out.push_back(static_cast<char>(std::tolower(u)));
  }
  // One trailing dot is the root label; a second ("a.b..") would leave the name unnormalized.
  if (out.find("..") != std::string::npos || out.front() == '.' || out.back() == '.')
    return make_error("host " + quoted(host) + " has an empty label");
  if (ends_in_number(out)) return canonical_v4(out);
  return out;
}

std::string normalize_host(std::string_view host) {
  auto h = canonical_host(host);
  return h ? std::move(*h) : std::string();
}

Result<std::string> canonical_path(std::string_view target) {
  if (auto hash = target.find('#'); hash != std::string_view::npos) target = target.substr(0, hash);
  if (target.empty() || target.front() != '/')
    return make_error("the request target " + quoted(target.substr(0, 64)) +
                      " does not start with '/'");
  const auto q = target.find('?');
  std::string path;
  path.reserve(target.size());
  if (auto st = normalize_escapes(target.substr(0, q), false, path); !st) return st.error();
  std::string out = remove_dot_segments(path);
  if (q != std::string_view::npos && q + 1 < target.size()) {
    out.push_back('?');
    if (auto st = normalize_escapes(target.substr(q + 1), true, out); !st) return st.error();
  }
  return out;
}

Result<RequestTarget> parse_authority(std::string_view authority) {
  std::string_view host, port;
  bool has_port = false;
  if (authority.find('@') != std::string_view::npos ||
      authority.find('/') != std::string_view::npos)
    return make_error("CONNECT target must be host:port, got '" + std::string(authority) + "'");
  if (!split_host_port(authority, host, port, has_port) || !has_port)
    return make_error("CONNECT target must be host:port, got '" + std::string(authority) + "'");
  RequestTarget t;
  auto h = canonical_host(host);
  if (!h) return h.error();
  t.host = std::move(*h);
  t.ipv6_literal = t.host.find(':') != std::string::npos;
  if (!parse_port(port, t.port)) return make_error("invalid port '" + std::string(port) + "'");
  return t;
}

Result<RequestTarget> parse_absolute_url(std::string_view url) {
  constexpr std::string_view kHttp = "http://";
  if (url.size() < kHttp.size()) return make_error("not an absolute http:// URL");
  std::string scheme(url.substr(0, kHttp.size()));
  for (auto& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (scheme != kHttp) {
    if (url.substr(0, 8) == "https://")
      return make_error("https:// URLs go through CONNECT (set HTTPS_PROXY), not absolute-form");
    return make_error("only http:// URLs can be proxied in absolute-form");
  }
  auto rest = url.substr(kHttp.size());
  auto end = rest.find_first_of("/?#");
  auto authority = rest.substr(0, end);
  if (authority.find('@') != std::string_view::npos)
    return make_error("URLs with user information are refused");
  std::string_view host, port;
  bool has_port = false;
  if (!split_host_port(authority, host, port, has_port))
    return make_error("invalid authority '" + std::string(authority) + "'");
  RequestTarget t;
  auto h = canonical_host(host);
  if (!h) return h.error();
  t.host = std::move(*h);
  t.ipv6_literal = t.host.find(':') != std::string::npos;
  t.port = 80;
  if (has_port && !parse_port(port, t.port))
    return make_error("invalid port '" + std::string(port) + "'");
  std::string_view path = end == std::string_view::npos ? std::string_view{} : rest.substr(end);
  if (auto hash = path.find('#'); hash != std::string_view::npos) path = path.substr(0, hash);
  auto p = canonical_path(path.empty() || path.front() != '/' ? "/" + std::string(path)
                                                              : std::string(path));
  if (!p) return p.error();
  t.path = std::move(*p);
  return t;
}

Result<RequestTarget> parse_origin_form(std::string_view target, const RequestTarget& authority) {
  auto p = canonical_path(target);
  if (!p) return p.error();
  RequestTarget t = authority;
  t.path = std::move(*p);
  return t;
}

std::optional<std::string> restricted_address_reason(const boost::asio::ip::address& addr) {
  using boost::asio::ip::address_v4;
  if (addr.is_v6()) {
    const auto b = addr.to_v6().to_bytes();
    auto prefix = [&](std::initializer_list<uint8_t> bytes) {
      size_t i = 0;
      for (uint8_t x : bytes)
        if (b[i++] != x) return false;
      return true;
    };
    auto embedded = [&](size_t at) {
      return address_v4(address_v4::bytes_type{b[at], b[at + 1], b[at + 2], b[at + 3]});
    };
    auto zeros = [&](size_t from, size_t to) {
      for (size_t i = from; i < to; ++i)
        if (b[i] != 0) return false;
      return true;
    };
    auto via = [&](const address_v4& v4, const char* form) -> std::optional<std::string> {
      if (auto r = restricted_address_reason(v4)) return *r + " (" + form + ")";
      return std::nullopt;
    };
    if (zeros(0, 16)) return "an unspecified address";
    if (zeros(0, 15) && b[15] == 1) return "a loopback address";
    // Forms that carry an IPv4 address: judged by that address (RFC 4291 2.5.5, RFC 6052,
    // RFC 3056).
    if (zeros(0, 10) && b[10] == 0xff && b[11] == 0xff)
      return via(embedded(12), "IPv4-mapped IPv6");
    if (zeros(0, 12)) return via(embedded(12), "IPv4-compatible IPv6");
    if (prefix({0x00, 0x64, 0xff, 0x9b}) && zeros(4, 12))
      return via(embedded(12), "NAT64 64:ff9b::/96");
    if (prefix({0x20, 0x02})) return via(embedded(2), "6to4 2002::/16");
    // Where the IPv4 address sits depends on the operator's prefix length (RFC 8215), and
    // Teredo hides the client's (RFC 4380): not judged, refused.
    if (prefix({0x00, 0x64, 0xff, 0x9b, 0x00, 0x01})) return "a local-use NAT64 address";
    if (prefix({0x20, 0x01, 0x00, 0x00})) return "a Teredo address (2001::/32)";
    if (prefix({0x20, 0x01, 0x0d, 0xb8})) return "a documentation address (2001:db8::/32)";
    if (b[0] == 0x3f && b[1] == 0xff && (b[2] & 0xf0) == 0)
      return "a documentation address (3fff::/20)";
    if (prefix({0x20, 0x01, 0x00, 0x02, 0x00, 0x00})) return "a benchmarking address";
    if (prefix({0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00})) return "a discard address";
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return "a link-local address";
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) return "a site-local address (fec0::/10)";
    if ((b[0] & 0xfe) == 0xfc) return "a unique local address (fc00::/7)";
    if (b[0] == 0xff) return "a multicast address";
    return std::nullopt;
  }
  const auto v = addr.to_v4().to_uint();
  auto in = [&](uint32_t net, int bits) { return (v >> (32 - bits)) == (net >> (32 - bits)); };
  // RFC 6890 and the IANA special-purpose registry: nothing here is a public origin.
  if (in(0x00000000, 8)) return "an unspecified address";  // 0.0.0.0/8 reaches this host
  if (in(0x7f000000, 8)) return "a loopback address";
  if (in(0x0a000000, 8) || in(0xac100000, 12) || in(0xc0a80000, 16))
    return "a private address (RFC 1918)";
  if (in(0x64400000, 10)) return "a shared (CGNAT) address (100.64.0.0/10)";
  if (in(0xa9fe0000, 16)) return "a link-local address";
  if (in(0xc0000000, 24)) return "an IETF protocol address (192.0.0.0/24)";
  if (in(0xc0000200, 24) || in(0xc6336400, 24) || in(0xcb007100, 24))
    return "a documentation address";
  if (in(0xc0586300, 24)) return "a 6to4 relay address (192.88.99.0/24)";
  if (in(0xc6120000, 15)) return "a benchmarking address (198.18.0.0/15)";
  if (in(0xe0000000, 4)) return "a multicast address";
  if (v == 0xffffffff) return "a broadcast address";
  if (in(0xf0000000, 4)) return "a reserved address (240.0.0.0/4)";
  return std::nullopt;
}

boost::asio::ip::address unmapped(const boost::asio::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, a.to_v6());
  return a;
}

}  // namespace acp::proxy
