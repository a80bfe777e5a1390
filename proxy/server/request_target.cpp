#include "acp/proxy/request_target.hpp"

#include <cctype>
#include <charconv>

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

}  // namespace

std::string RequestTarget::host_header() const {
  std::string h = ipv6_literal ? "[" + host + "]" : host;
  if (port != 80) h += ":" + std::to_string(port);
  return h;
}

std::string normalize_host(std::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    std::string inner(host.substr(1, host.size() - 2));
    // No zone ids ("fe80::1%eth0"): they name an interface of the proxy's host, and Boost reads
    // them back differently ("%-5x" becomes "%18446744073709551611"; "::1%x" drops it), so the
    // host the policy saw would not be the one printed or connected to. Found by fuzzing.
    if (inner.find('%') != std::string::npos) return {};
    boost::system::error_code ec;
    auto a = boost::asio::ip::make_address_v6(inner, ec);
    if (ec) return {};
    return a.to_string();
  }
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  if (host.empty() || host.size() > 253) return {};
  std::string out;
  out.reserve(host.size());
  for (char c : host) {
    auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '.' || c == '_') {
      out.push_back(static_cast<char>(std::tolower(u)));
    } else {
      return {};
    }
  }
  // One trailing dot is the root label; a second ("a.b..") would leave the name unnormalized.
  if (out.find("..") != std::string::npos || out.front() == '.' || out.back() == '.') return {};
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
  t.ipv6_literal = !host.empty() && host.front() == '[';
  t.host = normalize_host(host);
  if (t.host.empty()) return make_error("invalid host '" + std::string(host) + "'");
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
  t.ipv6_literal = !host.empty() && host.front() == '[';
  t.host = normalize_host(host);
  if (t.host.empty()) return make_error("invalid host '" + std::string(host) + "'");
  t.port = 80;
  if (has_port && !parse_port(port, t.port))
    return make_error("invalid port '" + std::string(port) + "'");
  std::string_view path = end == std::string_view::npos ? std::string_view{} : rest.substr(end);
  if (auto hash = path.find('#'); hash != std::string_view::npos) path = path.substr(0, hash);
  if (path.empty()) {
    t.path = "/";
  } else if (path.front() == '?') {
    t.path = "/" + std::string(path);
  } else {
    t.path = std::string(path);
  }
  return t;
}

std::optional<std::string> restricted_address_reason(const boost::asio::ip::address& addr) {
  using boost::asio::ip::address_v4;
  if (addr.is_v6()) {
    auto v6 = addr.to_v6();
    if (v6.is_v4_mapped()) {
      return restricted_address_reason(
          boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, v6));
    }
    if (v6.is_unspecified()) return "an unspecified address";
    if (v6.is_loopback()) return "a loopback address";
    if (v6.is_link_local()) return "a link-local address";
    if (v6.is_multicast()) return "a multicast address";
    return std::nullopt;
  }
  auto b = addr.to_v4().to_bytes();
  if (b[0] == 0) return "an unspecified address";  // 0.0.0.0/8 reaches this host
  if (b[0] == 127) return "a loopback address";
  if (b[0] == 169 && b[1] == 254) return "a link-local address";
  if (b[0] >= 224 && b[0] <= 239) return "a multicast address";
  if (addr.to_v4() == address_v4::broadcast()) return "a broadcast address";
  return std::nullopt;
}

}  // namespace acp::proxy
