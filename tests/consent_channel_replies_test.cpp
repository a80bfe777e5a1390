// The webhook and Telegram reply parsers as pure functions (what fuzz/fuzz_webhook.cpp and
// fuzz/fuzz_telegram.cpp drive): hostile or malformed replies are refused without throwing.
// The inputs that used to throw or overflow inside the channels are here as regressions.
#include <gtest/gtest.h>

#include <climits>
#include <nlohmann/json.hpp>

#include "acp/proxy/telegram_channel.hpp"
#include "acp/proxy/webhook_channel.hpp"

namespace {

using namespace acp::consent;
using nlohmann::json;

TEST(ChannelReplies, TelegramOkOfAnotherTypeIsNotAnErrorButARefusal) {
  // json::value("ok", false) threw type_error on this, inside the poll loop.
  EXPECT_FALSE(telegram_result(R"({"ok":"yes","result":[]})"));
  EXPECT_FALSE(telegram_result(R"({"ok":1,"result":[]})"));
  EXPECT_FALSE(telegram_result(R"({"ok":false,"result":[]})"));
  EXPECT_FALSE(telegram_result(R"({"ok":true})"));
  EXPECT_FALSE(telegram_result("not json"));
  auto r = telegram_result(R"({"ok":true,"result":[1]})");
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, json::array({1}));
}

TEST(ChannelReplies, TelegramUpdateIdsNeverOverflowOrGoBack) {
  auto u =
      telegram_updates(json::parse(R"([{"update_id":5},{"update_id":3},{"update_id":"9"}])"), 0);
  EXPECT_EQ(u.next_offset, 6);
  // update_id + 1 overflowed (UB) on the largest id; it is skipped now.
  u = telegram_updates(json::parse(R"([{"update_id":9223372036854775807,"callback_query":{}}])"),
                       7);
  EXPECT_EQ(u.next_offset, 7);
  EXPECT_TRUE(u.callbacks.empty());
  u = telegram_updates(json::parse(R"([{"update_id":18446744073709551615}])"), 7);
  EXPECT_EQ(u.next_offset, 7);
  u = telegram_updates(json::parse(R"([{"update_id":-5}])"), 7);
  EXPECT_EQ(u.next_offset, 7);
  u = telegram_updates(json::parse(R"({"update_id":1})"), 2);
  EXPECT_EQ(u.next_offset, 2);
}

TEST(ChannelReplies, TelegramCallbackFieldsOfTheWrongTypeAreRefused) {
  // cb.value("id", "") threw type_error on a numeric id.
  auto p = parse_telegram_callback(
      json::parse(R"({"id":5,"message":{"chat":{"id":42}},"data":"acp:r:once"})"), "42");
  EXPECT_TRUE(p.callback_id.empty());
  EXPECT_FALSE(p.error.empty());
  p = parse_telegram_callback(
      json::parse(R"({"id":"c","message":{"chat":{"id":41}},"data":"acp:r:once"})"), "42");
  EXPECT_EQ(p.error, "not allowed: this bot answers only its configured chat");
  p = parse_telegram_callback(
      json::parse(R"({"id":"c","message":{"chat":{"id":42}},"data":"acp:r:maybe"})"), "42");
  EXPECT_EQ(p.error, "unknown button");
  p = parse_telegram_callback(json::parse(R"({"id":"c","message":"x","data":7})"), "42");
  EXPECT_FALSE(p.error.empty());
  p = parse_telegram_callback(
      json::parse(
          R"({"id":"c","from":{"username":7,"id":9},"message":{"chat":{"id":"42"}},"data":"acp:a:b:10m"})"),
      "42");
  ASSERT_TRUE(p.error.empty()) << p.error;
  EXPECT_EQ(p.request_id, "a:b");
  EXPECT_TRUE(p.answer.approve);
  EXPECT_EQ(p.answer.scope, Scope::Duration);
  EXPECT_EQ(p.answer.by, "telegram:9");
}

TEST(ChannelReplies, TelegramMessageIdMustBeAnInteger) {
  EXPECT_EQ(telegram_message_id(json::parse(R"({"message_id":17})")), 17);
  EXPECT_FALSE(telegram_message_id(json::parse(R"({"message_id":"17"})")));
  EXPECT_FALSE(telegram_message_id(json::parse(R"({"message_id":18446744073709551615})")));
  EXPECT_FALSE(telegram_message_id(json::parse("[]")));
}

TEST(ChannelReplies, WebhookReplyIsStrict) {
  auto r = parse_webhook_reply(200, "application/json", R"({"approved":true})", false);
  EXPECT_EQ(r.kind, WebhookReply::Kind::kAnswer);
  EXPECT_TRUE(r.answer.approve);
  r = parse_webhook_reply(200, "application/json", R"({"approved":false})", false);
  EXPECT_EQ(r.kind, WebhookReply::Kind::kAnswer);
  EXPECT_EQ(r.answer.reason, "webhook: denied by the hook");
  r = parse_webhook_reply(202, "application/json", R"({"pending":true})", true);
  EXPECT_EQ(r.kind, WebhookReply::Kind::kPending);
  r = parse_webhook_reply(202, "application/json", R"({"pending":true})", false);
  EXPECT_EQ(r.kind, WebhookReply::Kind::kDeny);
  r = parse_webhook_reply(202, "application/json", R"({"approved":true})", true);
  EXPECT_EQ(r.kind, WebhookReply::Kind::kDeny);
  r = parse_webhook_reply(200, "text/plain", R"({"approved":true})", true);
  EXPECT_EQ(r.kind, WebhookReply::Kind::kDeny);
  r = parse_webhook_reply(
      200, "application/json",
      R"({"approved":true,"scope":"duration","duration_s":18446744073709551615})", false);
  EXPECT_EQ(r.kind, WebhookReply::Kind::kDeny);
  EXPECT_FALSE(r.reason.empty());
  // "scope":"duration" alone: the gate's default_duration (Answer::duration 0).
  r = parse_webhook_reply(200, "application/json", R"({"approved":true,"scope":"duration"})",
                          false);
  ASSERT_EQ(r.kind, WebhookReply::Kind::kAnswer) << r.reason;
  EXPECT_EQ(r.answer.scope, acp::consent::Scope::Duration);
  EXPECT_EQ(r.answer.duration.count(), 0);
}

// JSON text never holds a raw NUL; a parser that takes it for the end of input would read a
// first object while the sender meant more (here: a deny, then an approval).
TEST(ChannelReplies, AWebhookBodyWithANulByteIsNotJson) {
  const std::string body = std::string(R"({"approved":false})") + std::string("\0", 1) +
                           R"({"approved":true,"scope":"always"})";
  auto r = parse_webhook_reply(200, "application/json", body, false);
  EXPECT_EQ(r.kind, WebhookReply::Kind::kDeny);
  EXPECT_NE(r.reason.find("not valid JSON"), std::string::npos) << r.reason;
  EXPECT_FALSE(
      parse_webhook_callback(R"({"request_id":"r1","approved":true})" + std::string("\0x", 2)));
}

TEST(ChannelReplies, WebhookCallbackNeedsARequestId) {
  auto cb = parse_webhook_callback(R"({"request_id":"r1","approved":false,"reason":"no"})");
  ASSERT_TRUE(cb) << cb.error().message();
  EXPECT_EQ(cb->request_id, "r1");
  EXPECT_EQ(cb->answer.reason, "webhook: no");
  EXPECT_FALSE(parse_webhook_callback(R"({"request_id":1,"approved":true})"));
  EXPECT_FALSE(parse_webhook_callback(R"({"approved":true})"));
  EXPECT_FALSE(parse_webhook_callback("[]"));
}

}  // namespace
