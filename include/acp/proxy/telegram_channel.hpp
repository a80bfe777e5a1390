// The Telegram consent channel: the Bot API over HTTPS. Each new pending request is a message
// to the configured chat with three inline buttons (Approve once / Approve 10 min / Deny);
// getUpdates long polling picks up the button presses. Only presses from the configured chat
// count (callback_query.message.chat.id == chat_id); others are answered "not allowed" and
// ignored. When the request ends (here, on another channel, or by timeout) the message is
// edited to say how, and its buttons go away. The bot token (token_file) is never logged.
// See docs/consent.md, "Telegram".
#pragma once

#include <utility>  // before boost/asio (Boost 1.74)

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "acp/proxy/acp_config.hpp"
#include "acp/proxy/channel.hpp"
#include "acp/proxy/channels.hpp"
#include "acp/proxy/consent_gate.hpp"
#include "acp/util/result.hpp"

namespace acp::consent {

struct TelegramSettings {
  std::string api_base = "https://api.telegram.org";
  std::string token;
  std::string chat_id;
  std::string ca_file;                      // extra CA bundle (PEM); "" = the system store
  std::chrono::seconds poll_timeout{25};    // getUpdates long-poll timeout
  std::chrono::milliseconds backoff{1000};  // after a failed poll; doubles, at most 30 s
  ChannelContext ctx;
};

class TelegramChannel final : public Channel {
 public:
  TelegramChannel(boost::asio::io_context& io, ConsentGate& gate, TelegramSettings s);
  ~TelegramChannel() override;
  // From the config: reads the token file (read_secret_file).
  static Result<std::unique_ptr<TelegramChannel>> from_config(boost::asio::io_context& io,
                                                              ConsentGate& gate,
                                                              const config::TelegramChannel& cfg,
                                                              const ChannelContext& ctx);

  std::string name() const override { return "telegram"; }
  Status start() override;
  void stop() override;
  std::string describe() const override;
  void on_request(const PendingInfo& p) override;
  void on_resolved(const PendingInfo& p, const ConsentOutcome& o) override;

  struct State;

 private:
  std::shared_ptr<State> s_;
};

}  // namespace acp::consent
