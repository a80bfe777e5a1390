// What is judged is what is forwarded: requests spelled many ways go through a real
// ProxyServer to a real origin on loopback; for each one the proxy forwards, the path and the
// host the judge was given are exactly the target and the Host header the origin received.
#include <gtest/gtest.h>

#include <map>

#include "acp/proxy/proxy_server.hpp"
#include "acp/proxy/request_target.hpp"
#include "proxy_test_support.hpp"

namespace {

using namespace acp;
using namespace acp::proxy;
using namespace acp::proxy::testing;

class CanonicalForwarding : public ::testing::Test {
 protected:
  void TearDown() override {
    if (thread_.joinable()) {
      net::post(io_, [this] { server_->stop(); });
      net::post(io_, [this] { io_.stop(); });
      thread_.join();
    }
  }
  void start() {
    ProxyConfig cfg;
    cfg.listen = {tcp::endpoint(net::ip::make_address("127.0.0.1"), 0)};
    cfg.session_id = "canon";
    server_ = std::make_unique<ProxyServer>(io_, cfg, judge_);
    auto st = server_->start();
    ASSERT_TRUE(st.ok()) << st.error().message();
    port_ = server_->local_endpoints().at(0).port();
    thread_ = std::thread([this] { io_.run(); });
  }

  net::io_context io_;
  ScriptedJudge judge_{io_};
  Origin origin_;
  std::unique_ptr<ProxyServer> server_;
  std::thread thread_;
  uint16_t port_ = 0;
};

TEST_F(CanonicalForwarding, TheJudgedTargetAndHostAreTheForwardedOnes) {
  start();
  const std::string port = std::to_string(origin_.port());
  const char* hosts[] = {"127.0.0.1",  "127.1",      "2130706433",         "0x7f.0.0.1",
                         "0177.0.0.1", "127.0.0.1.", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]"};
  const char* pieces[] = {"/",   "//",  ".", "..",  "%2e", "%2E", "%68", "headers", "a",
                          "%7e", "?",   "&", "=",   "%20", "%ff", "\"",  "{",       "%3b",
                          "%25", "%2f", ";", "%41", ":",   "@",   "+",   "%",       "\xc3\xa9"};
  uint64_t seed = 0x2545f4914f6cdd1dull;
  auto next = [&] {
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    return seed;
  };
  RawClient c(port_);
  size_t forwarded = 0, refused = 0, judged_before = 0;
  for (int i = 0; i < 400; ++i) {
    std::string target = i % 2 ? "/headers" : "/";
    for (int k = static_cast<int>(next() % 6); k >= 0; --k)
      target += pieces[next() % std::size(pieces)];
    const std::string host = hosts[next() % std::size(hosts)];
    c.send("GET http://" + host + ":" + port + target + " HTTP/1.1\r\nHost: evil.example\r\n\r\n");
    auto res = c.read_response();
    ASSERT_TRUE(res) << target;
    auto actions = judge_.actions();
    auto canon = canonical_path(target);
    if (!canon) {
      // Refused before the judge, with the reason: nothing was judged, nothing forwarded.
      ASSERT_EQ(res->result_int(), 400) << target;
      EXPECT_EQ(nlohmann::json::parse(res->body()).value("reason", ""), canon.error().message());
      ASSERT_EQ(actions.size(), judged_before) << target;
      ++refused;
      continue;
    }
    ASSERT_EQ(actions.size(), judged_before + 1) << target;
    judged_before = actions.size();
    const Action& a = actions.back();
    EXPECT_EQ(a.host, "127.0.0.1") << host;
    EXPECT_EQ(a.path, *canon) << target;
    // The origin says what it got: /headers echoes target and headers, other paths 404
    // "no route <target>".
    std::string got_target, got_host;
    if (res->result_int() == 200) {
      auto j = nlohmann::json::parse(res->body());
      got_target = j["target"];
      got_host = j["headers"]["Host"];
    } else {
      ASSERT_EQ(res->result_int(), 404) << target << " " << res->body();
      got_target = res->body().substr(std::string("no route ").size());
      got_host = a.host + ":" + port;  // not echoed on this route
    }
    EXPECT_EQ(got_target, a.path) << "sent " << target;
    EXPECT_EQ(got_host, a.host + ":" + port) << "sent " << target;
    ++forwarded;
  }
  EXPECT_GT(forwarded, 80u);
  EXPECT_GT(refused, 40u);
}

}  // namespace
