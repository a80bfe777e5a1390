// The web page consent channel: a small Beast HTTP server on a loopback address (127.0.0.1:8444
// by default) that shows the session's pending requests live (Server-Sent Events) with approve
// and deny buttons, the session and its counters, and the recent audit log.
//
// Security (docs/consent.md): loopback only, and the wall lets the agent reach nothing but the
// proxy; every request needs the token (32 random bytes, hex, in a root-only 0600 file) as
// `?token=` (first load: answered with an HttpOnly SameSite=Strict cookie), the cookie, or
// `Authorization: Bearer`; compared in constant time; a wrong or missing token gets a bare 403.
// The Host header must name the listen address (DNS rebinding) and a POST's Origin must be the
// page's own. Everything runs on the gate's io_context and never blocks it: SSE writes are
// asynchronous, a client that falls behind is dropped.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <utility>  // before boost/asio (Boost 1.74)

#include <boost/asio/io_context.hpp>

#include "acp/proxy/acp_config.hpp"
#include "acp/proxy/channel.hpp"
#include "acp/proxy/channels.hpp"
#include "acp/proxy/consent_gate.hpp"
#include "acp/util/result.hpp"

namespace acp::consent {

// Reads the token from `path`, or, when the file does not exist, makes a new one (32 bytes from
// getrandom, hex: util::random_hex) and writes it atomically 0600 (root-owned when run as
// root), creating the parent directory 0755 when missing. `created` tells which happened.
Result<std::string> load_or_create_web_token(const std::string& path, bool* created = nullptr);

class WebChannel : public Channel {
 public:
  // `cfg.listen` is HOST:PORT on loopback; port 0 binds any free port (tests). When the listen
  // address is the default one and its port is taken, the next free port up to +50 is used.
  static std::unique_ptr<WebChannel> create(boost::asio::io_context& io, ConsentGate& gate,
                                            const config::WebChannel& cfg,
                                            const ChannelContext& ctx);
  ~WebChannel() override = default;

  // The bound port (after start()) and the token in use.
  virtual uint16_t port() const = 0;
  virtual const std::string& token() const = 0;
  // "http://127.0.0.1:<port>/?token=<token>"
  virtual std::string url() const = 0;
};

}  // namespace acp::consent
