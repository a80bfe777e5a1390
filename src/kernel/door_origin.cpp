#include "acp/kernel/door_origin.hpp"

#include "acp/kernel/endpoint.hpp"
#include "acp/kernel/session_maps.hpp"

namespace acp::kernel {

namespace asio = boost::asio;
using asio::ip::tcp;

Result<tcp::endpoint> door_original(int door_origin_fd, const tcp::endpoint& peer) {
  const auto a = peer.address();
  // The map is keyed as the kernel saw the client: IPv6 form, IPv4 mapped.
  const auto v6 = a.is_v4() ? asio::ip::make_address_v6(asio::ip::v4_mapped, a.to_v4()) : a.to_v6();
  auto orig = original_destination(door_origin_fd, endpoint_from_ip6(v6.to_bytes(), peer.port()));
  if (!orig) return orig.error();
  asio::ip::address_v6 dst(orig->addr);
  if (dst.is_v4_mapped())
    return tcp::endpoint(asio::ip::make_address_v4(asio::ip::v4_mapped, dst), orig->port);
  return tcp::endpoint(dst, orig->port);
}

}  // namespace acp::kernel
