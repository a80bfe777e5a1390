// Fuzz target: where a request goes. The CONNECT authority, the absolute-form URL and the
// origin-form target as an agent sends them, parsed as the proxy parses them
// (include/acp/proxy/request_target.hpp). Beyond "no crash, no UB", it checks what the proxy
// relies on: a parsed host and path are canonical (canonicalizing them again changes nothing),
// and the request the proxy forwards (its origin-form target and Host header) parses back to
// exactly what was judged, so what the policy saw is what the origin gets.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "acp/proxy/request_target.hpp"

using namespace acp::proxy;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

void check_target(const RequestTarget& t) {
  check(!t.host.empty());
  check(t.port != 0);
  if (t.ipv6_literal) {
    check(normalize_host("[" + t.host + "]") == t.host);
  } else {
    check(normalize_host(t.host) == t.host);
  }
  boost::system::error_code ec;
  auto addr = boost::asio::ip::make_address(t.host, ec);
  if (!ec) (void)restricted_address_reason(addr);
  // host_header() leaves out port 80; the authority form always carries the port.
  std::string hh = t.ipv6_literal ? "[" + t.host + "]" : t.host;
  auto again = parse_authority(hh + ":" + std::to_string(t.port));
  check(again.ok());
  check(again->host == t.host && again->port == t.port && again->ipv6_literal == t.ipv6_literal);
  check(t.ipv6_literal == (t.host.find(':') != std::string::npos));
}

// A canonical path: starts with '/', no fragment, no "//" or dot segment, and a fixed point.
void check_path(const std::string& path) {
  check(!path.empty() && path.front() == '/');
  check(path.find('#') == std::string::npos);
  const std::string_view p = std::string_view(path).substr(0, path.find('?'));
  check(p.find("//") == std::string_view::npos);
  check(p.find("/./") == std::string_view::npos && p.find("/../") == std::string_view::npos);
  check(!p.ends_with("/.") && !p.ends_with("/.."));
  auto again = canonical_path(path);
  check(again.ok() && *again == path);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  if (auto h = canonical_host(in); h.ok()) {
    check(!h->empty());
    auto again = canonical_host(*h);
    check(again.ok() && *again == *h);
    check(normalize_host(in) == *h);
  } else {
    check(normalize_host(in).empty());
  }
  if (auto p = canonical_path(in); p.ok()) check_path(*p);
  if (auto a = parse_authority(in); a.ok()) {
    check_target(*a);
    // A request inside this tunnel: forwarded as the path and Host that were judged.
    if (auto o = parse_origin_form("/" + std::string(in), *a); o.ok()) {
      check_path(o->path);
      auto back = parse_authority(o->host_header(0));
      check(back.ok() && back->host == a->host && back->port == a->port);
    }
  }
  if (auto u = parse_absolute_url(in); u.ok()) {
    check_target(*u);
    check_path(u->path);
    // The forwarded request line's target and Host header, read back as a proxy would.
    auto again = parse_absolute_url("http://" + u->host_header() + u->path);
    check(again.ok());
    check(again->host == u->host && again->port == u->port && again->path == u->path &&
          again->ipv6_literal == u->ipv6_literal);
  }
  return 0;
}
