// The webhook consent channel: every new pending request is POSTed to a URL; the reply (or a
// later signed callback) approves or denies it. See docs/consent.md, "Webhook".
//
// Request: POST <url>, Content-Type: application/json, body
//   {"type":"consent_request","request_id":"1a2b3c4d","session":"…","created_at":"…Z",
//    "expires_at":"…Z","expires_in_s":120,"rule":"…","agent":"curl …",
//    "action":{"name":"http:CONNECT","args":"example.com:443",
//              "meta":{"kind":"http","host":"example.com","method":"CONNECT","port":443},
//              "kind":"http","host":"example.com","port":443,"method":"CONNECT","path":""},
//    "callback_url":"http://127.0.0.1:8445/acp/webhook/answer"}      (only with callback_listen)
// (upstream's {"type","action":{name,args,meta}} plus ACP's fields), with the headers
//   X-ACP-Secret: <secret>                          (upstream compatibility)
//   X-ACP-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
//   X-ACP-Request-Id: <request id>
// Reply: 200 with application/json {"approved":bool,"reason":string?,"scope":string?,
// "duration_s":int?} answers; {"pending":true} (200 or 202) means "I will answer through the
// callback". Anything else (another status, another content type, bad JSON, wrong types,
// unknown fields) denies, with the reason in the audit log. Connection failures and 5xx are
// retried (`retries` times, backoff doubling from 0.5 s); a reply slower than `timeout`
// denies. The rule's ask timeout bounds everything (the gate times the request out).
//
// Callback (callback_listen set, loopback only): POST /acp/webhook/answer with
// {"request_id":…,"approved":…,"reason":…?,"scope":…?,"duration_s":…?} and an X-ACP-Signature
// over that body whose timestamp is within 5 minutes; accepted once per request id.
#pragma once

#include <utility>  // before boost/asio (Boost 1.74)

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "acp/proxy/acp_config.hpp"
#include "acp/proxy/channel.hpp"
#include "acp/proxy/channels.hpp"
#include "acp/proxy/consent_gate.hpp"
#include "acp/util/result.hpp"

namespace acp::consent {

inline constexpr const char* kWebhookCallbackPath = "/acp/webhook/answer";
inline constexpr std::chrono::seconds kWebhookSignatureTolerance{300};

struct WebhookSettings {
  std::string url;
  std::string secret;
  std::chrono::milliseconds timeout{10000};  // per attempt
  int retries = 2;                           // extra attempts on connection errors and 5xx
  std::string callback_listen;               // "127.0.0.1:8445"; empty: no callback server
  std::string ca_file;                       // extra CA for https (tests); "" = system store
  std::chrono::milliseconds backoff{500};    // before the first retry; doubles, at most 8 s
  ChannelContext ctx;
};

// "t=<ts>,v1=<hex HMAC-SHA256(secret, "<ts>.<body>")>"
std::string webhook_signature(const std::string& secret, long long unix_ts,
                              const std::string& body);
// Checks an X-ACP-Signature header: well formed, a v1 that matches (several v1= may be given,
// any match passes), and a timestamp within `tolerance` of `now`. The error says which failed.
Status verify_webhook_signature(const std::string& header, const std::string& body,
                                const std::string& secret,
                                std::chrono::system_clock::time_point now,
                                std::chrono::seconds tolerance = kWebhookSignatureTolerance);
// The body POSTed for a pending request.
nlohmann::json webhook_request_body(const PendingInfo& p, const ChannelContext& ctx,
                                    const std::string& callback_url);

// ---- The hook's answers, parsed without side effects (fuzz/fuzz_webhook.cpp) ----

// What the hook's reply to the POST of a pending request decides. `can_wait`: a callback
// listener is configured, so {"pending":true} is allowed. Strict: anything but a well-formed
// answer is a deny whose reason says what was wrong. Never throws.
struct WebhookReply {
  enum class Kind { kAnswer, kPending, kDeny } kind = Kind::kDeny;
  Answer answer;       // kAnswer: the decision (a deny carries "webhook: <reason>")
  std::string reason;  // kDeny: why the reply was refused
};
WebhookReply parse_webhook_reply(int status, const std::string& content_type,
                                 const std::string& body, bool can_wait);

// The body of a signed callback (after verify_webhook_signature): the request id and the
// answer. The error says what is wrong (answered as HTTP 400). Never throws.
struct WebhookCallback {
  std::string request_id;
  Answer answer;
};
Result<WebhookCallback> parse_webhook_callback(const std::string& body);

class WebhookChannel final : public Channel {
 public:
  WebhookChannel(boost::asio::io_context& io, ConsentGate& gate, WebhookSettings s);
  ~WebhookChannel() override;
  // From the config: reads the secret file (read_secret_file), checks the url.
  static Result<std::unique_ptr<WebhookChannel>> from_config(boost::asio::io_context& io,
                                                             ConsentGate& gate,
                                                             const config::WebhookChannel& cfg,
                                                             const ChannelContext& ctx);

  std::string name() const override { return "webhook"; }
  Status start() override;
  void stop() override;
  std::string describe() const override;
  void on_request(const PendingInfo& p) override;
  void on_resolved(const PendingInfo& p, const ConsentOutcome& o) override;

  // The callback server's port (0 when there is none); for tests that listen on port 0.
  uint16_t callback_port() const;

  struct State;

 private:
  std::shared_ptr<State> s_;
};

}  // namespace acp::consent
