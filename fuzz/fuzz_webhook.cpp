// Fuzz target: what a webhook sends back (acp/proxy/webhook_channel.hpp). The first byte picks
// the HTTP status (200, 202, or another), the second the Content-Type, the third whether a
// callback listener is configured; the rest is the body. It goes through
// parse_webhook_reply() as the hook's reply to the POST and through parse_webhook_callback()
// as a signed callback body. Neither may throw; every decision they return must be one the
// gate can act on safely: an approval only from a 200 with a well-formed answer, a deny always
// with a reason, a duration only with scope "duration" and within a year (0: the gate's
// default_duration), and nothing but a deny from a body with a NUL byte (not JSON text).
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "acp/proxy/webhook_channel.hpp"

using namespace acp::consent;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

void check_answer(const Answer& a) {
  if (!a.approve) {
    check(a.scope == Scope::Once);
    check(a.reason.rfind("webhook: ", 0) == 0);
  }
  check(a.reason.size() <= 1000 + 9 + 20);
  if (a.scope == Scope::Duration) {
    check(a.duration.count() >= 0);
    check(a.duration <= std::chrono::seconds(366LL * 24 * 3600));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  static const int kStatus[] = {200, 202, 200, 500, 204, 301};
  static const char* const kType[] = {
      "application/json", "application/json; charset=utf-8", "Application/JSON ", "text/plain", "",
      "application/jsonx"};
  const int status = kStatus[data[0] % 6];
  const std::string type = kType[data[1] % 6];
  const bool can_wait = (data[2] & 1) != 0;
  const std::string body(reinterpret_cast<const char*>(data) + 3, size - 3);

  WebhookReply r = parse_webhook_reply(status, type, body, can_wait);
  switch (r.kind) {
    case WebhookReply::Kind::kAnswer:
      check(status == 200);
      check_answer(r.answer);
      break;
    case WebhookReply::Kind::kPending:
      check(can_wait);
      check(status == 200 || status == 202);
      break;
    case WebhookReply::Kind::kDeny:
      check(!r.reason.empty());
      break;
  }

  auto cb = parse_webhook_callback(body);
  if (body.find('\0') != std::string::npos) {
    check(r.kind == WebhookReply::Kind::kDeny);
    check(!cb);
  }
  if (cb) {
    check_answer(cb->answer);
  } else {
    check(!cb.error().message().empty());
  }
  return 0;
}
