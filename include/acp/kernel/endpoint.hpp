// One (address, port, protocol) the BPF wall lets through: the user-space form of
// struct acp_endpoint (bpf/acp_abi.h).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "acp/util/result.hpp"
#include "acp_abi.h"

namespace acp::kernel {

struct Endpoint {
  // IPv6 form, network byte order. IPv4 a.b.c.d is ::ffff:a.b.c.d (RFC 4291 2.5.5.2),
  // exactly as the kernel side keys it, so 127.0.0.1 and ::ffff:127.0.0.1 are one endpoint.
  std::array<uint8_t, 16> addr{};
  uint16_t port = 0;              // host byte order
  uint8_t proto = ACP_PROTO_TCP;  // ACP_PROTO_TCP or ACP_PROTO_UDP

  bool operator==(const Endpoint&) const = default;
};

// Parses "127.0.0.1:8443", "127.0.0.1:53/udp", "[::1]:8443", "[::1]:8443/tcp".
// Addresses are numeric only (a wall keyed on names would change under DNS); IPv6 needs
// brackets; port 1-65535; protocol tcp (default) or udp. The error names the value:
//   "localhost:80": expected ADDR:PORT[/tcp|/udp] ...
Result<Endpoint> parse_endpoint(std::string_view text);

// "127.0.0.1:8443/tcp" for IPv4 (and mapped) addresses, "[::1]:8443/tcp" otherwise.
std::string to_string(const Endpoint& ep);
// Only the address part: "127.0.0.1" or "::1" (no brackets).
std::string address_string(const std::array<uint8_t, 16>& addr);
// "tcp", "udp", or "proto-N" for anything else.
std::string proto_name(uint8_t proto);

// True for an IPv4-mapped address (::ffff:a.b.c.d).
bool is_ipv4(const Endpoint& ep);
bool is_ipv4_mapped(const std::array<uint8_t, 16>& addr);

// Builds endpoints from sockets' own forms: ip4 in network byte order; port host order.
Endpoint endpoint_from_ip4(uint32_t ip4_be, uint16_t port, uint8_t proto = ACP_PROTO_TCP);
Endpoint endpoint_from_ip6(const std::array<uint8_t, 16>& ip6, uint16_t port,
                           uint8_t proto = ACP_PROTO_TCP);

// Conversions to and from the map key (pad always 0: the kernel hashes the key as bytes).
acp_endpoint to_abi(const Endpoint& ep);
Endpoint from_abi(const acp_endpoint& key);

}  // namespace acp::kernel
