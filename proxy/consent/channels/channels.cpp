// make_channels: the registry of consent channels. Add a channel here and nowhere else.
#include "acp/proxy/channels.hpp"

#include "acp/proxy/prompt_channel.hpp"
#include "acp/proxy/telegram_channel.hpp"
#include "acp/proxy/web_channel.hpp"
#include "acp/proxy/webhook_channel.hpp"

namespace acp::consent {

Result<std::vector<std::unique_ptr<Channel>>> make_channels(boost::asio::io_context& io,
                                                            ConsentGate& gate,
                                                            const config::Config& cfg,
                                                            const ChannelContext& ctx) {
  std::vector<std::unique_ptr<Channel>> out;
  // Every enabled channel; each one asks the human its own way, the first answer wins.
  if (cfg.web.enabled) out.push_back(WebChannel::create(io, gate, cfg.web, ctx));
  if (cfg.webhook.enabled) {
    auto ch = WebhookChannel::from_config(io, gate, cfg.webhook, ctx);
    if (!ch) return ch.error();
    out.push_back(std::move(*ch));
  }
  if (cfg.telegram.enabled) {
    auto ch = TelegramChannel::from_config(io, gate, cfg.telegram, ctx);
    if (!ch) return ch.error();
    out.push_back(std::move(*ch));
  }
  if (cfg.prompt.enabled) {
    PromptSettings s;
    s.ctx = ctx;
    out.push_back(std::make_unique<PromptChannel>(io, gate, std::move(s)));
  }
  return out;
}

}  // namespace acp::consent
