// make_channels: the registry of consent channels. Add a channel here and nowhere else.
#include "acp/proxy/channels.hpp"

#include "acp/proxy/web_channel.hpp"

namespace acp::consent {

Result<std::vector<std::unique_ptr<Channel>>> make_channels(boost::asio::io_context& io,
                                                            ConsentGate& gate,
                                                            const config::Config& cfg,
                                                            const ChannelContext& ctx) {
  (void)io;
  (void)gate;
  (void)cfg;
  (void)ctx;
  std::vector<std::unique_ptr<Channel>> out;
  // Channels are added here as they are built: web, webhook, telegram, prompt.
  if (cfg.web.enabled) out.push_back(WebChannel::create(io, gate, cfg.web, ctx));
  return out;
}

}  // namespace acp::consent
