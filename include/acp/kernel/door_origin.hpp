// The transparent door's original destinations, as the proxy asks for them: the wall's
// door_origin map (session_maps.hpp: original_destination) keyed by the accepted peer, with
// asio's endpoints on both sides. One lookup for every proxy that holds a door: `acp run`'s,
// the daemon's sessions and the node agent's pods.
#pragma once

#include <boost/asio/ip/tcp.hpp>

#include "acp/util/result.hpp"

namespace acp::kernel {

// Where the client at `peer` (IPv4 in either form) was connecting to when the wall led it to
// the door; an error when the map holds no entry for it (not led in by this wall, or closed).
Result<boost::asio::ip::tcp::endpoint> door_original(int door_origin_fd,
                                                     const boost::asio::ip::tcp::endpoint& peer);

}  // namespace acp::kernel
