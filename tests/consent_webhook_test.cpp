// The webhook channel against a real HTTP server on loopback, with a real ConsentGate.
#include "acp/proxy/webhook_channel.hpp"

#include <gtest/gtest.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <nlohmann/json.hpp>

#include "channel_test_support.hpp"
#include "consent_test_support.hpp"

namespace {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using acp::consent::ConsentGate;
using acp::consent::GateConfig;
using acp::consent::WebhookChannel;
using acp::consent::WebhookSettings;
using acp::testing::HttpReply;
using acp::testing::HttpRequestMsg;
using acp::testing::run_until;
using acp::testing::start_ask;
using acp::testing::TempDir;
using acp::testing::TestHttpServer;
using namespace std::chrono_literals;

const std::string kSecret = "s3cret-for-tests";

struct Fixture : acp::testing::ChannelFixture<WebhookChannel> {
  void start(const std::string& url, int retries = 2, std::chrono::milliseconds timeout = 5000ms,
             const std::string& callback = "") {
    WebhookSettings s;
    s.url = url;
    s.secret = kSecret;
    s.retries = retries;
    s.timeout = timeout;
    s.backoff = 10ms;
    s.callback_listen = callback;
    s.ctx.session_id = "sess1";
    s.ctx.agent_command = "curl https://example.com";
    auto st = attach(std::move(s));
    ASSERT_TRUE(st.ok()) << st.error().message();
  }
  acp::consent::ConsentOutcome ask(const std::string& host = "example.com",
                                   std::chrono::seconds t = 60s) {
    auto out = start_ask(io, *gate, host, t);
    EXPECT_TRUE(run_until(io, [&] { return out->has_value(); }));
    return out->value_or(acp::consent::ConsentOutcome{});
  }
};

std::string hmac_hex(const std::string& key, const std::string& data) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac, &len);
  std::string out;
  char b[3];
  for (unsigned i = 0; i < len; ++i) {
    std::snprintf(b, sizeof b, "%02x", mac[i]);
    out += b;
  }
  return out;
}

HttpReply json_reply(const std::string& body, unsigned status = 200) {
  return {status, "application/json", body};
}

TEST(WebhookChannel, ApprovesWithSignedUpstreamBody) {
  TestHttpServer server([](const HttpRequestMsg&) { return json_reply(R"({"approved":true})"); });
  Fixture f;
  f.start(server.url());
  auto o = f.ask();
  EXPECT_TRUE(o.approved);
  EXPECT_EQ(o.decided_by, "human");
  ASSERT_EQ(server.requests(), 1);
  auto req = server.received().at(0);
  EXPECT_EQ(req.method(), bhttp::verb::post);
  EXPECT_EQ(req.target(), "/hook");
  EXPECT_EQ(req["X-ACP-Secret"], kSecret);
  // The signature recomputed here, independently of the channel's code.
  std::string sig(req["X-ACP-Signature"]);
  auto t = sig.substr(2, sig.find(',') - 2);
  std::string want = hmac_hex(kSecret, t + "." + req.body());
  EXPECT_EQ(sig, "t=" + t + ",v1=" + want);
  EXPECT_LE(std::abs(std::stoll(t) - std::time(nullptr)), 60);
  auto body = nlohmann::json::parse(req.body());
  EXPECT_EQ(body["type"], "consent_request");
  EXPECT_EQ(body["request_id"], o.request_id);
  EXPECT_EQ(req["X-ACP-Request-Id"], o.request_id);
  EXPECT_EQ(body["session"], "sess1");
  EXPECT_EQ(body["agent"], "curl https://example.com");
  EXPECT_TRUE(body["expires_at"].is_string());
  EXPECT_EQ(body["action"]["host"], "example.com");
  EXPECT_EQ(body["action"]["port"], 443);
  EXPECT_EQ(body["action"]["method"], "CONNECT");
  EXPECT_EQ(body["action"]["name"], "http:CONNECT");
  EXPECT_EQ(body["action"]["args"], "example.com:443");
  EXPECT_EQ(body["action"]["meta"]["host"], "example.com");
  EXPECT_EQ(body["action"]["meta"]["kind"], "http");
  EXPECT_FALSE(body.contains("callback_url"));
}

TEST(WebhookChannel, DenialCarriesTheHooksReason) {
  TestHttpServer server(
      [](const HttpRequestMsg&) { return json_reply(R"({"approved":false,"reason":"nope"})"); });
  Fixture f;
  f.start(server.url());
  auto o = f.ask();
  EXPECT_FALSE(o.approved);
  EXPECT_NE(o.reason.find("nope"), std::string::npos) << o.reason;
}

TEST(WebhookChannel, ScopeFromTheReplyIsApplied) {
  TestHttpServer server([](const HttpRequestMsg&) {
    return json_reply(R"({"approved":true,"scope":"duration","duration_s":600})");
  });
  Fixture f;
  f.start(server.url());
  EXPECT_TRUE(f.ask().approved);
  auto second = f.ask();  // covered by the 10-minute grant: the hook is not asked again
  EXPECT_TRUE(second.approved);
  EXPECT_EQ(second.scope, "grant:duration");
  EXPECT_EQ(server.requests(), 1);
}

TEST(WebhookChannel, BadRepliesDeny) {
  const std::vector<HttpReply> bad = {
      {200, "application/json", "approved"},                           // not JSON
      {200, "application/json", R"({"approved":"yes"})"},              // wrong type
      {200, "application/json", R"({"approved":1})"},                  // wrong type
      {200, "application/json", R"([true])"},                          // not an object
      {200, "application/json", R"({"reason":"x"})"},                  // no approved
      {200, "application/json", R"({"approved":true,"admin":true})"},  // unknown field
      {200, "application/json", R"({"approved":true,"scope":"forever"})"},
      {200, "text/plain", R"({"approved":true})"},        // content type
      {404, "application/json", R"({"approved":true})"},  // status
      {302, "application/json", R"({"approved":true})"},
      {202, "application/json", R"({"approved":true})"},
      {200, "application/json", R"({"pending":true})"},  // pending without a callback server
  };
  for (const auto& reply : bad) {
    TestHttpServer server([&](const HttpRequestMsg&) { return reply; });
    Fixture f;
    f.start(server.url());
    auto o = f.ask();
    EXPECT_FALSE(o.approved) << reply.status << " " << reply.body;
    EXPECT_EQ(o.decided_by, "human") << reply.body;  // the channel answered, not the timeout
    EXPECT_NE(o.reason.find("webhook"), std::string::npos) << o.reason;
    EXPECT_EQ(server.requests(), 1) << reply.body;  // client errors are not retried
  }
}

TEST(WebhookChannel, ServerErrorsAreRetriedABoundedNumberOfTimes) {
  TestHttpServer server([](const HttpRequestMsg&) { return json_reply("{}", 500); });
  Fixture f;
  f.start(server.url(), /*retries=*/2);
  auto o = f.ask();
  EXPECT_FALSE(o.approved);
  EXPECT_NE(o.reason.find("HTTP 500"), std::string::npos) << o.reason;
  EXPECT_NE(o.reason.find("3 attempts"), std::string::npos) << o.reason;
  EXPECT_EQ(server.requests(), 3);
}

TEST(WebhookChannel, RetrySucceedsAfterA503) {
  std::atomic<int> n{0};
  TestHttpServer server([&](const HttpRequestMsg&) {
    return ++n == 1 ? json_reply("{}", 503) : json_reply(R"({"approved":true})");
  });
  Fixture f;
  f.start(server.url(), 1);
  EXPECT_TRUE(f.ask().approved);
  EXPECT_EQ(server.requests(), 2);
}

TEST(WebhookChannel, UnreachableHookDenies) {
  uint16_t port;
  {
    TestHttpServer gone([](const HttpRequestMsg&) { return json_reply("{}"); });
    port = gone.port();
  }  // nothing listens there now
  Fixture f;
  f.start("http://127.0.0.1:" + std::to_string(port) + "/hook", 1);
  auto o = f.ask();
  EXPECT_FALSE(o.approved);
  EXPECT_NE(o.reason.find("2 attempts"), std::string::npos) << o.reason;
}

TEST(WebhookChannel, SlowReplyTimesOutAndDenies) {
  TestHttpServer* sp = nullptr;
  TestHttpServer server([&](const HttpRequestMsg&) {
    sp->wait_until_stopped(30s);  // hangs until the test ends
    return json_reply(R"({"approved":true})");
  });
  sp = &server;
  Fixture f;
  f.start(server.url(), 2, 300ms);
  auto o = f.ask();
  EXPECT_FALSE(o.approved);
  EXPECT_NE(o.reason.find("did not answer"), std::string::npos) << o.reason;
  EXPECT_EQ(server.requests(), 1);  // a hook that received the request is not asked again
  f.channel->stop();
  server.stop();
}

TEST(WebhookChannel, CallbackNeedsAFreshValidSignature) {
  TestHttpServer server([](const HttpRequestMsg&) { return json_reply(R"({"pending":true})"); });
  Fixture f;
  f.start(server.url(), 0, 5000ms, "127.0.0.1:0");
  const uint16_t port = f.channel->callback_port();
  ASSERT_NE(port, 0);
  auto out = start_ask(f.io, *f.gate, "example.com");
  ASSERT_TRUE(run_until(f.io, [&] { return server.requests() == 1; }));
  const std::string id = f.gate->pending().at(0).id;
  auto body = nlohmann::json::parse(server.received().at(0).body());
  EXPECT_EQ(body["callback_url"],
            "http://127.0.0.1:" + std::to_string(port) + acp::consent::kWebhookCallbackPath);

  std::vector<std::pair<unsigned, std::string>> replies;
  std::thread client([&] {
    using acp::consent::webhook_signature;
    const std::string answer =
        nlohmann::json{{"request_id", id}, {"approved", true}, {"reason", "ok"}}.dump();
    const long long now = std::time(nullptr);
    auto post = [&](const std::string& b, const std::string& sig) {
      replies.push_back(acp::testing::http_post(port, acp::consent::kWebhookCallbackPath, b,
                                                {{"X-ACP-Signature", sig}}));
    };
    post(answer, webhook_signature("wrong secret", now, answer));  // bad secret
    post(answer, webhook_signature(kSecret, now - 600, answer));   // replayed, old
    post(answer, webhook_signature(kSecret, now, answer + " "));   // altered body
    post(answer, "");                                              // none
    auto other = nlohmann::json{{"request_id", "ffffffff"}, {"approved", true}}.dump();
    post(other, webhook_signature(kSecret, now, other));    // unknown id
    post(answer, webhook_signature(kSecret, now, answer));  // good
    post(answer, webhook_signature(kSecret, now, answer));  // replay of the good
  });
  ASSERT_TRUE(run_until(f.io, [&] { return out->has_value(); }));
  client.join();
  ASSERT_EQ(replies.size(), 7u);
  EXPECT_EQ(replies[0].first, 401u) << replies[0].second;
  EXPECT_EQ(replies[1].first, 401u) << replies[1].second;
  EXPECT_NE(replies[1].second.find("replay"), std::string::npos);
  EXPECT_EQ(replies[2].first, 401u);
  EXPECT_EQ(replies[3].first, 401u);
  EXPECT_EQ(replies[4].first, 404u);
  EXPECT_EQ(replies[5].first, 200u) << replies[5].second;
  EXPECT_EQ(replies[6].first, 404u);
  EXPECT_TRUE((*out)->approved);
}

// The payload's human text: the request as every channel shows it, with the agent's escapes
// and bidi controls visible; `action` keeps the raw data for programs; JSON escapes the rest.
TEST(WebhookChannel, HumanTextInThePayloadIsVisibleAndActionStaysRaw) {
  acp::consent::PendingInfo p;
  p.id = "abcd0123";
  p.session = "sess1";
  p.rule_text = "{kind: mcp}";
  p.created = std::chrono::system_clock::now();
  p.expires = p.created + 60s;
  p.action.kind = "mcp";
  p.action.host = "127.0.0.1";
  p.action.port = 3000;
  p.action.server = "files";
  p.action.tool = "list\x1b[2K\rdelete_file";
  p.action.args =
      "{\"path\":\"/tmp/\xe2\x80\xae"
      "exe.txt\"}";
  acp::consent::ChannelContext ctx;
  ctx.agent_command = "agent";
  auto j = acp::consent::webhook_request_body(p, ctx, "");
  const std::string want =
      "MCP tool list\\x1b[2K\\rdelete_file on files with {\"path\":\"/tmp/\\u{202E}exe.txt\"}";
  EXPECT_EQ(j["summary"], want);
  EXPECT_EQ(j["text"],
            "ACP consent request abcd0123: agent `agent` wants " + want + " (rule {kind: mcp})");
  EXPECT_NE(j["reach"]["session"].get<std::string>().find("every call of MCP tool"),
            std::string::npos);
  EXPECT_EQ(j["action"]["tool"], p.action.tool);  // the data, unchanged
  const std::string body = j.dump();
  EXPECT_EQ(body.find('\x1b'), std::string::npos);  // JSON escapes what stays raw
}

TEST(WebhookChannel, SignatureVerification) {
  using acp::consent::verify_webhook_signature;
  using acp::consent::webhook_signature;
  auto now = std::chrono::system_clock::now();
  long long t = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  EXPECT_TRUE(verify_webhook_signature(webhook_signature("k", t, "b"), "b", "k", now).ok());
  // A rotated secret: either v1 may match.
  auto two = webhook_signature("k", t, "b") + ",v1=" + std::string(64, '0');
  EXPECT_TRUE(verify_webhook_signature(two, "b", "k", now).ok());
  EXPECT_FALSE(verify_webhook_signature(webhook_signature("k", t + 301, "b"), "b", "k", now).ok());
  EXPECT_FALSE(verify_webhook_signature("v1=abc", "b", "k", now).ok());
  EXPECT_FALSE(verify_webhook_signature("t=x,v1=abc", "b", "k", now).ok());
}

}  // namespace

// The description goes to acp's stderr (the agent's) and the world-readable session record: a
// credential in the hook's URL query is not in it.
TEST(WebhookChannel, DescriptionHidesTheUrlsCredentials) {
  Fixture f;
  f.start("http://127.0.0.1:9/hooks/acp?key=hook-key#frag");
  const std::string d = f.channel->describe();
  EXPECT_NE(d.find("webhook: POST http://127.0.0.1:9/hooks/acp?key=…#…"), std::string::npos) << d;
  for (const char* secret : {"hook-key", "frag"}) EXPECT_EQ(d.find(secret), std::string::npos) << d;
}
