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
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

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

// ---- The Bot API replies, parsed without side effects (fuzz/fuzz_telegram.cpp) ----
// Everything here takes what the network sent and never throws: a field of the wrong type is
// the same as a missing one.

// The "result" of a Bot API reply body ({"ok":true,"result":...}); nullopt when the body is not
// JSON, not an object, "ok" is not the boolean true, or there is no "result".
std::optional<nlohmann::json> telegram_result(const std::string& body);

// A getUpdates result: the callback_query objects in it, in order, and the offset for the next
// poll (the largest update_id + 1, never less than `offset`; an update_id that cannot be
// advanced past, such as the largest integer, leaves the offset where it is).
struct TelegramUpdates {
  long long next_offset = 0;
  std::vector<nlohmann::json> callbacks;
};
TelegramUpdates telegram_updates(const nlohmann::json& result, long long offset);

// The message_id of a sendMessage result; nullopt when missing or not an integer.
std::optional<long long> telegram_message_id(const nlohmann::json& result);

// One button press (a callback_query). `error` non-empty: refuse it and tell the presser that
// text (answerCallbackQuery), unless callback_id is empty (then nothing can be answered).
struct TelegramPress {
  std::string callback_id;
  std::string error;       // "not allowed: ...", "unknown button"
  std::string request_id;  // acp:<request id>:<choice>
  Answer answer;           // approve/scope/duration/reason/by, when error is empty
};
TelegramPress parse_telegram_callback(const nlohmann::json& cb, const std::string& chat_id);

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
