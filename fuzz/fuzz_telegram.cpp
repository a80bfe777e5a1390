// Fuzz target: what the Telegram Bot API sends back (acp/proxy/telegram_channel.hpp). The input
// is a reply body, as getUpdates or sendMessage would return it. It goes through
// telegram_result(), then telegram_updates() (the next offset and the callback_query objects)
// and telegram_message_id(); every callback_query found, and the whole body read as one
// callback_query, go through parse_telegram_callback() for the configured chat "42". None may
// throw (a field of the wrong type is a missing field); the offset never goes backwards or
// overflows; a press is accepted only from chat 42, only as an acp:<id>:<once|10m|deny>
// button, and is attributed to "telegram...".
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include "acp/proxy/telegram_channel.hpp"

using namespace acp::consent;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

void check_press(const nlohmann::json& cb) {
  TelegramPress p = parse_telegram_callback(cb, "42");
  if (!p.error.empty()) return;
  check(!p.callback_id.empty());
  const auto& m = cb["message"]["chat"]["id"];
  check((m.is_number_integer() && m.dump() == "42") || (m.is_string() && m == "42"));
  const std::string data = cb["data"].get<std::string>();
  check(data.rfind("acp:", 0) == 0);
  check(data.size() >= 4 + p.request_id.size());
  check(p.answer.by.rfind("telegram", 0) == 0);
  if (p.answer.approve) {
    check(p.answer.scope == Scope::Once ||
          (p.answer.scope == Scope::Duration && p.answer.duration == std::chrono::seconds(600)));
  } else {
    check(!p.answer.reason.empty());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  const long long offsets[] = {0, 7, LLONG_MAX - 1, LLONG_MAX};
  if (auto r = telegram_result(body)) {
    for (long long off : offsets) {
      TelegramUpdates u = telegram_updates(*r, off);
      check(u.next_offset >= off);
      for (const auto& cb : u.callbacks) {
        check(cb.is_object());
        check_press(cb);
      }
    }
    if (auto id = telegram_message_id(*r)) (void)*id;
  }
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_discarded()) check_press(j);
  return 0;
}
