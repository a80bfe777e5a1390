// Internal to proxy/server: what every coroutine file of the proxy connection shares.
#pragma once

#include <utility>  // before boost/asio/awaitable.hpp (Boost 1.74)

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

// GCC 12 misreads asio's awaitable frame allocator (operator new/delete of
// awaitable_frame_base) as a mismatched pair once a coroutine is inlined: a known false
// positive (as in proxy/consent/channels/http_client.cpp). Set for the including file.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace acp::proxy {

// The completion token for the errors a caller expects: into `ec`, not thrown.
inline auto redirect(boost::system::error_code& ec) {
  return boost::asio::redirect_error(boost::asio::use_awaitable, ec);
}

}  // namespace acp::proxy
