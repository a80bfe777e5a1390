#include "acp/kernel/endpoint.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace acp::kernel {
namespace {

constexpr std::string_view kShape =
    "expected ADDR:PORT[/tcp|/udp], e.g. 127.0.0.1:8443 or [::1]:8443/tcp";

Error bad(std::string_view text, std::string_view why) {
  std::string msg = "\"" + std::string(text) + "\": ";
  msg += why;
  return make_error(std::move(msg), EINVAL);
}

Result<uint16_t> parse_port(std::string_view text, std::string_view port) {
  if (port.empty()) return bad(text, "missing port; " + std::string(kShape));
  if (port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return bad(text, "port \"" + std::string(port) + "\" is not a number from 1 to 65535");
  unsigned v = 0;
  for (char c : port) v = v * 10 + static_cast<unsigned>(c - '0');
  if (v == 0 || v > 65535)
    return bad(text, "port " + std::string(port) + " is out of range (1-65535)");
  return static_cast<uint16_t>(v);
}

}  // namespace

bool is_ipv4_mapped(const std::array<uint8_t, 16>& a) {
  for (int i = 0; i < 10; i++)
    if (a[i] != 0) return false;
  return a[10] == 0xff && a[11] == 0xff;
}

bool is_ipv4(const Endpoint& ep) {
  return is_ipv4_mapped(ep.addr);
}

Endpoint endpoint_from_ip4(uint32_t ip4_be, uint16_t port, uint8_t proto) {
  Endpoint ep;
  ep.addr[10] = 0xff;
  ep.addr[11] = 0xff;
  std::memcpy(&ep.addr[12], &ip4_be, 4);
  ep.port = port;
  ep.proto = proto;
  return ep;
}

Endpoint endpoint_from_ip6(const std::array<uint8_t, 16>& ip6, uint16_t port, uint8_t proto) {
  Endpoint ep;
  ep.addr = ip6;
  ep.port = port;
  ep.proto = proto;
  return ep;
}

Result<Endpoint> parse_endpoint(std::string_view text) {
  if (text.empty()) return bad(text, "empty; " + std::string(kShape));
  std::string_view rest = text;

  uint8_t proto = ACP_PROTO_TCP;
  if (auto slash = rest.rfind('/'); slash != std::string_view::npos) {
    std::string_view p = rest.substr(slash + 1);
    if (p == "tcp" || p == "TCP") {
      proto = ACP_PROTO_TCP;
    } else if (p == "udp" || p == "UDP") {
      proto = ACP_PROTO_UDP;
    } else {
      return bad(text, "protocol \"" + std::string(p) + "\" is not tcp or udp");
    }
    rest = rest.substr(0, slash);
  }

  std::string host;
  bool v6 = false;
  std::string_view port;
  if (rest.front() == '[') {
    auto close = rest.find(']');
    if (close == std::string_view::npos) return bad(text, "missing ']'; " + std::string(kShape));
    host = std::string(rest.substr(1, close - 1));
    std::string_view after = rest.substr(close + 1);
    if (after.empty() || after.front() != ':')
      return bad(text, "missing \":PORT\" after the ']'; " + std::string(kShape));
    port = after.substr(1);
    v6 = true;
  } else {
    auto colon = rest.rfind(':');
    if (colon == std::string_view::npos)
      return bad(text, "missing \":PORT\"; " + std::string(kShape));
    if (rest.find(':') != colon)
      return bad(text, "an IPv6 address needs brackets, e.g. [::1]:8443");
    host = std::string(rest.substr(0, colon));
    port = rest.substr(colon + 1);
  }
  if (host.empty()) return bad(text, "missing address; " + std::string(kShape));

  auto p = parse_port(text, port);
  if (!p) return p.error();

  if (v6) {
    std::array<uint8_t, 16> a{};
    if (inet_pton(AF_INET6, host.c_str(), a.data()) != 1)
      return bad(text, "\"" + host + "\" is not a numeric IPv6 address");
    return endpoint_from_ip6(a, *p, proto);
  }
  in_addr a4{};
  // inet_pton accepts only dotted quads (not "127.1" or hex), which is what we want.
  if (inet_pton(AF_INET, host.c_str(), &a4) != 1)
    return bad(text, "\"" + host +
                         "\" is not a numeric IPv4 address (host names are not resolved: the "
                         "wall matches addresses)");
  return endpoint_from_ip4(a4.s_addr, *p, proto);
}

std::string address_string(const std::array<uint8_t, 16>& addr) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (is_ipv4_mapped(addr)) {
    inet_ntop(AF_INET, &addr[12], buf, sizeof(buf));
  } else {
    inet_ntop(AF_INET6, addr.data(), buf, sizeof(buf));
  }
  return buf;
}

std::string proto_name(uint8_t proto) {
  if (proto == ACP_PROTO_TCP) return "tcp";
  if (proto == ACP_PROTO_UDP) return "udp";
  return "proto-" + std::to_string(proto);
}

std::string to_string(const Endpoint& ep) {
  std::string host = address_string(ep.addr);
  if (!is_ipv4(ep)) host = "[" + host + "]";
  return host + ":" + std::to_string(ep.port) + "/" + proto_name(ep.proto);
}

acp_endpoint to_abi(const Endpoint& ep) {
  acp_endpoint k{};
  std::memcpy(k.addr, ep.addr.data(), sizeof(k.addr));
  k.port = ep.port;
  k.proto = ep.proto;
  k.pad = 0;
  return k;
}

Endpoint from_abi(const acp_endpoint& key) {
  Endpoint ep;
  std::memcpy(ep.addr.data(), key.addr, sizeof(key.addr));
  ep.port = key.port;
  ep.proto = key.proto;
  return ep;
}

}  // namespace acp::kernel
