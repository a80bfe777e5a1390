// Fuzz target: where a request goes. The CONNECT authority and the absolute-form URL as an
// agent sends them, parsed as the proxy parses them (include/acp/proxy/request_target.hpp).
// Beyond "no crash, no UB", it checks what the proxy relies on: a parsed host is normalized
// (normalizing it again changes nothing) and rebuilding the target from its parts parses back
// to the same destination, so the host the policy judged is the host the proxy connects to.
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
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  (void)normalize_host(in);
  if (auto a = parse_authority(in); a.ok()) check_target(*a);
  if (auto u = parse_absolute_url(in); u.ok()) {
    check_target(*u);
    check(!u->path.empty() && u->path.front() == '/');
    check(u->path.find('#') == std::string::npos);
    auto again = parse_absolute_url("http://" + u->host_header() + u->path);
    check(again.ok());
    check(again->host == u->host && again->port == u->port && again->path == u->path);
  }
  return 0;
}
