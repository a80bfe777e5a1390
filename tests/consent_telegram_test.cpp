// The Telegram channel against a local HTTPS server speaking the Bot API subset it uses
// (sendMessage, getUpdates long polling, answerCallbackQuery, editMessageText), with a test CA
// and server certificate made by openssl in the test's temp dir.
#include "acp/proxy/telegram_channel.hpp"

#include <gtest/gtest.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>

#include "channel_test_support.hpp"
#include "consent_test_support.hpp"

namespace {

namespace asio = boost::asio;
using acp::consent::ConsentGate;
using acp::consent::GateConfig;
using acp::consent::TelegramChannel;
using acp::consent::TelegramSettings;
using acp::testing::HttpReply;
using acp::testing::HttpRequestMsg;
using acp::testing::run_until;
using acp::testing::start_ask;
using acp::testing::TempDir;
using acp::testing::TestHttpServer;
using json = nlohmann::json;
using namespace std::chrono_literals;

const std::string kToken = "123456:TEST-token";
const std::string kChat = "4242";

// The Bot API as the channel sees it.
class FakeBot {
 public:
  HttpReply handle(const HttpRequestMsg& req) {
    const std::string prefix = "/bot" + kToken + "/";
    std::string target(req.target());
    if (target.rfind(prefix, 0) != 0)
      return reply({{"ok", false}, {"description", "Unauthorized"}}, 401);
    const std::string method = target.substr(prefix.size());
    auto body = json::parse(req.body(), nullptr, false);
    std::unique_lock lk(mu_);
    if (method == "sendMessage") {
      sent_.push_back(body);
      cv_.notify_all();
      return reply({{"ok", true},
                    {"result",
                     {{"message_id", 100 + static_cast<int>(sent_.size())},
                      {"chat", {{"id", std::stoll(kChat)}}}}}});
    }
    if (method == "getUpdates") {
      const long long offset = body.value("offset", 0LL);
      const int timeout = body.value("timeout", 0);
      auto ready = [&] {
        if (stopping_) return true;
        for (const auto& u : updates_)
          if (u["update_id"].get<long long>() >= offset) return true;
        return false;
      };
      cv_.wait_for(lk, std::chrono::seconds(std::min(timeout, 2)), ready);
      json out = json::array();
      for (const auto& u : updates_)
        if (u["update_id"].get<long long>() >= offset) out.push_back(u);
      ++polls_;
      cv_.notify_all();
      return reply({{"ok", true}, {"result", out}});
    }
    if (method == "answerCallbackQuery") {
      answers_.push_back(body);
      cv_.notify_all();
      return reply({{"ok", true}, {"result", true}});
    }
    if (method == "editMessageText") {
      edits_.push_back(body);
      cv_.notify_all();
      return reply({{"ok", true}, {"result", {{"message_id", body["message_id"]}}}});
    }
    return reply({{"ok", false}, {"description", "Not Found"}}, 404);
  }
  void press(long long chat, const std::string& data, const std::string& user = "alice") {
    std::lock_guard lk(mu_);
    const long long id = next_update_++;
    updates_.push_back({{"update_id", id},
                        {"callback_query",
                         {{"id", "cb" + std::to_string(id)},
                          {"from", {{"id", 7}, {"username", user}}},
                          {"message", {{"message_id", 101}, {"chat", {{"id", chat}}}}},
                          {"data", data}}}});
    cv_.notify_all();
  }
  void stop() {
    std::lock_guard lk(mu_);
    stopping_ = true;
    cv_.notify_all();
  }
  std::vector<json> sent() { return copy(sent_); }
  std::vector<json> answers() { return copy(answers_); }
  std::vector<json> edits() { return copy(edits_); }

 private:
  static HttpReply reply(const json& j, unsigned status = 200) {
    return {status, "application/json", j.dump()};
  }
  std::vector<json> copy(const std::vector<json>& v) {
    std::lock_guard lk(mu_);
    return v;
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<json> sent_, answers_, edits_;
  std::deque<json> updates_;
  long long next_update_ = 1;
  int polls_ = 0;
  bool stopping_ = false;
};

struct Fixture : acp::testing::ChannelFixture<TelegramChannel> {
  FakeBot bot;
  std::unique_ptr<TestHttpServer> server;

  Fixture() {
    acp::testing::write_test_tls_files(dir.path());
    server =
        std::make_unique<TestHttpServer>([this](const HttpRequestMsg& r) { return bot.handle(r); },
                                         dir / "server.pem", dir / "server.key");
  }
  ~Fixture() {
    stop_channel();  // its long poll talks to the server: stop it first
    bot.stop();
    server->stop();
  }
  acp::Status start(const std::string& ca_file) {
    TelegramSettings s;
    s.api_base = "https://127.0.0.1:" + std::to_string(server->port());
    s.token = kToken;
    s.chat_id = kChat;
    s.ca_file = ca_file;
    s.poll_timeout = 2s;
    s.backoff = 20ms;
    s.ctx.agent_command = "curl https://example.com";
    return attach(std::move(s));
  }
};

std::string button_data(const json& msg, size_t row, size_t col) {
  return msg["reply_markup"]["inline_keyboard"][row][col]["callback_data"];
}

TEST(TelegramChannel, ButtonsWrongChatIgnoredRightChatApprovesMessageEdited) {
  Fixture f;
  ASSERT_TRUE(f.start(f.dir / "ca.pem").ok());
  auto out = start_ask(f.io, *f.gate, "example.com");
  ASSERT_TRUE(run_until(f.io, [&] { return f.bot.sent().size() == 1; }));
  auto msg = f.bot.sent()[0];
  EXPECT_EQ(msg["chat_id"], kChat);
  const std::string id = f.gate->pending().at(0).id;
  EXPECT_NE(msg["text"].get<std::string>().find("CONNECT example.com:443"), std::string::npos);
  EXPECT_NE(msg["text"].get<std::string>().find(id), std::string::npos);
  auto kb = msg["reply_markup"]["inline_keyboard"];
  EXPECT_EQ(kb[0][0]["text"], "Approve once");
  EXPECT_EQ(kb[0][1]["text"], "Approve 10 min");
  EXPECT_EQ(kb[1][0]["text"], "Deny");
  EXPECT_EQ(button_data(msg, 0, 0), "acp:" + id + ":once");
  EXPECT_EQ(button_data(msg, 1, 0), "acp:" + id + ":deny");

  // A press from another chat: answered "not allowed", the request stays pending.
  f.bot.press(999, button_data(msg, 0, 0), "mallory");
  ASSERT_TRUE(run_until(f.io, [&] { return f.bot.answers().size() == 1; }));
  EXPECT_NE(f.bot.answers()[0]["text"].get<std::string>().find("not allowed"), std::string::npos);
  EXPECT_FALSE(out->has_value());
  EXPECT_EQ(f.gate->pending().size(), 1u);

  f.bot.press(std::stoll(kChat), button_data(msg, 0, 0));
  ASSERT_TRUE(run_until(f.io, [&] { return out->has_value(); }));
  EXPECT_TRUE((*out)->approved);
  EXPECT_EQ((*out)->scope, "once");
  ASSERT_TRUE(run_until(f.io, [&] { return f.bot.edits().size() == 1; }));
  auto edit = f.bot.edits()[0];
  EXPECT_EQ(edit["message_id"], 101);
  EXPECT_NE(edit["text"].get<std::string>().find("APPROVED (once) by telegram:@alice"),
            std::string::npos)
      << edit["text"];
  EXPECT_TRUE(edit["reply_markup"]["inline_keyboard"].empty());
  ASSERT_TRUE(run_until(f.io, [&] { return f.bot.answers().size() == 2; }));
  EXPECT_EQ(f.bot.answers()[1]["text"], "Approved");
}

// The message goes with parse_mode HTML: the agent's text made visible, HTML-escaped and in
// <code> (no links, no formatting from it); a request too long for one message is cut with a
// note that says how much and where to see it all.
TEST(TelegramChannel, AgentTextIsVisibleEscapedAndNeverSilentlyCut) {
  Fixture f;
  ASSERT_TRUE(f.start(f.dir / "ca.pem").ok());
  acp::Action a;
  a.kind = "mcp";
  a.host = "127.0.0.1";
  a.port = 3000;
  a.server = "files";
  a.tool = "<b>list</b>\x1b[2K\r@admin";
  a.args = "{\"x\":\"" + std::string(5000, 'a') + "\",\"path\":\"/etc/shadow\"}";
  acp::PolicyDecision d;
  d.verdict = acp::Verdict::Ask;
  d.rule_text = "{kind: mcp}";
  auto out = std::make_shared<std::optional<acp::consent::ConsentOutcome>>();
  boost::asio::co_spawn(
      f.io, [&, a, d]() -> boost::asio::awaitable<void> { *out = co_await f.gate->ask(a, d); },
      boost::asio::detached);
  ASSERT_TRUE(run_until(f.io, [&] { return f.bot.sent().size() == 1; }));
  auto msg = f.bot.sent()[0];
  const std::string id = f.gate->pending().at(0).id;
  EXPECT_EQ(msg["parse_mode"], "HTML");
  const std::string text = msg["text"];
  EXPECT_NE(text.find("Wants: <code>MCP tool &lt;b&gt;list&lt;/b&gt;\\x1b[2K\\r@admin on files"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find('\x1b'), std::string::npos);
  EXPECT_EQ(text.find("<b>"), std::string::npos);
  EXPECT_NE(text.find("bytes hidden: acp pending " + id + ", or the web page]"), std::string::npos)
      << text;
  EXPECT_LT(text.size(), 4096u);
  EXPECT_NE(text.find("Approve 10 min covers every call of MCP tool"), std::string::npos);
  EXPECT_FALSE(out->has_value());
}
TEST(TelegramChannel, DenyButtonDenies) {
  Fixture f;
  ASSERT_TRUE(f.start(f.dir / "ca.pem").ok());
  auto out = start_ask(f.io, *f.gate, "example.com");
  ASSERT_TRUE(run_until(f.io, [&] { return f.bot.sent().size() == 1; }));
  f.bot.press(std::stoll(kChat), button_data(f.bot.sent()[0], 1, 0));
  ASSERT_TRUE(run_until(f.io, [&] { return out->has_value(); }));
  EXPECT_FALSE((*out)->approved);
  ASSERT_TRUE(run_until(f.io, [&] { return f.bot.edits().size() == 1; }));
  EXPECT_NE(f.bot.edits()[0]["text"].get<std::string>().find("DENIED by telegram:@alice"),
            std::string::npos);
}

TEST(TelegramChannel, TimeoutIsEditedIn) {
  Fixture f;
  ASSERT_TRUE(f.start(f.dir / "ca.pem").ok());
  auto out = start_ask(f.io, *f.gate, "example.com", 1s);
  ASSERT_TRUE(run_until(f.io, [&] { return out->has_value(); }));
  EXPECT_FALSE((*out)->approved);
  EXPECT_EQ((*out)->decided_by, "timeout");
  ASSERT_TRUE(run_until(f.io, [&] { return f.bot.edits().size() == 1; }));
  EXPECT_NE(f.bot.edits()[0]["text"].get<std::string>().find("TIMED OUT"), std::string::npos);
}

TEST(TelegramChannel, AnsweredElsewhereIsEditedIn) {
  Fixture f;
  ASSERT_TRUE(f.start(f.dir / "ca.pem").ok());
  auto out = start_ask(f.io, *f.gate, "example.com");
  ASSERT_TRUE(run_until(f.io, [&] { return f.bot.sent().size() == 1; }));
  acp::consent::Answer a;
  a.approve = false;
  a.by = "control";
  ASSERT_TRUE(f.gate->answer(f.gate->pending().at(0).id, a).ok());
  ASSERT_TRUE(run_until(f.io, [&] { return f.bot.edits().size() == 1; }));
  EXPECT_NE(f.bot.edits()[0]["text"].get<std::string>().find("DENIED on another channel"),
            std::string::npos);
}

TEST(TelegramChannel, UntrustedCertificateIsRefused) {
  Fixture f;
  // Without the test CA the server's certificate does not verify: nothing is sent.
  ASSERT_TRUE(f.start("").ok());
  auto out = start_ask(f.io, *f.gate, "example.com", 1s);
  ASSERT_TRUE(run_until(f.io, [&] { return out->has_value(); }));
  EXPECT_EQ((*out)->decided_by, "timeout");
  EXPECT_EQ(f.bot.sent().size(), 0u);
}

}  // namespace
