// The transparent door's proxy side without a kernel: a ProxyServer with door listeners from
// open_door_listeners() and a stand-in for the wall's original destinations. The judge denies
// everything, so nothing is dialled: what is checked is what each led-in connection is judged
// as (SNI, Host, the address), what the client gets, and what is refused before any judgement.
#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>

#include <memory>
#include <mutex>
#include <thread>

#include "acp/proxy/proxy_server.hpp"
#include "proxy_test_support.hpp"

namespace {

using namespace acp;
using namespace acp::proxy;
using namespace acp::proxy::testing;

// TEST-NET-1 (RFC 5737): documentation only; the denying judge means it is never dialled.
constexpr const char* kOriginal = "192.0.2.10";
constexpr uint16_t kOriginalPort = 8443;

// The bytes a real OpenSSL client sends first, asking for `sni`.
std::string client_hello(const std::string& sni) {
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                        SSL_CTX_free);
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx.get()), SSL_free);
  BIO* out = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl.get(), BIO_new(BIO_s_mem()), out);
  SSL_set_connect_state(ssl.get());
  SSL_set_tlsext_host_name(ssl.get(), sni.c_str());
  (void)SSL_do_handshake(ssl.get());
  char* data = nullptr;
  const long n = BIO_get_mem_data(out, &data);
  return std::string(data, static_cast<size_t>(n));
}

class TransparentDoor : public ::testing::Test {
 protected:
  void TearDown() override {
    if (!thread_.joinable()) return;
    net::post(io_, [this] { server_->stop(); });
    net::post(io_, [this] { io_.stop(); });
    thread_.join();
  }

  // original: what the wall says the client was connecting to; empty: it knows nothing.
  void start(std::string original) {
    judge_.decide = [](const Action&) { return Judgement{false, "denied by test", "req-1"}; };
    auto door = open_door_listeners(io_);
    ASSERT_TRUE(door.ok()) << door.error().message();
    door_port_ = (*door)->port4;
    ProxyConfig cfg;
    cfg.listen = {tcp::endpoint(net::ip::make_address("127.0.0.1"), 0)};
    cfg.session_id = "test-session";
    cfg.door = *door;
    cfg.door_origin = [original](int, const tcp::endpoint&) -> Result<tcp::endpoint> {
      if (original.empty()) return make_error("no entry", ENOENT);
      return tcp::endpoint(net::ip::make_address(original), kOriginalPort);
    };
    server_ = std::make_unique<ProxyServer>(io_, cfg, judge_);
    server_->set_audit_callback([this](nlohmann::json e) {
      std::lock_guard lk(mu_);
      audits_.push_back(std::move(e));
    });
    auto st = server_->start();
    ASSERT_TRUE(st.ok()) << st.error().message();
    thread_ = std::thread([this] { io_.run(); });
  }

  // The one Action judged, after `client` has its answer (or the close).
  Action only_action() {
    EXPECT_TRUE(judge_.wait_for_actions(1));
    auto actions = judge_.actions();
    EXPECT_EQ(actions.size(), 1u);
    return actions.empty() ? Action{} : actions.front();
  }
  std::vector<nlohmann::json> audits() {
    std::lock_guard lk(mu_);
    return audits_;
  }

  net::io_context io_;
  ScriptedJudge judge_{io_};
  std::unique_ptr<ProxyServer> server_;
  std::thread thread_;
  uint16_t door_port_ = 0;
  std::mutex mu_;
  std::vector<nlohmann::json> audits_;
};

TEST_F(TransparentDoor, AnHttpClientIsJudgedByItsHostAndGetsTheRefusal) {
  start(kOriginal);
  RawClient c(door_port_);
  c.send("GET /x HTTP/1.1\r\nHost: named.example\r\n\r\n");
  auto res = c.read_response();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 403u);
  const auto a = only_action();
  EXPECT_EQ(a.host, "named.example");
  EXPECT_EQ(a.port, kOriginalPort);  // the original port, not one the agent names
  // The request itself, as through the explicit proxy: no CONNECT judged (and asked) first.
  EXPECT_EQ(a.method, "GET");
  EXPECT_EQ(a.path, "/x");
  EXPECT_EQ(a.via, "transparent");
}

// Every request on a led-in HTTP connection must name the host its first one was judged as:
// a later request naming another host is refused without being judged (or dialled).
TEST_F(TransparentDoor, ALaterRequestNamingAnotherHostIsRefusedUnjudged) {
  start(kOriginal);
  RawClient c(door_port_);
  c.send("GET /x HTTP/1.1\r\nHost: named.example\r\n\r\n");
  auto first = c.read_response();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->result_int(), 403u);  // the judge's refusal, the connection kept
  c.send("GET /y HTTP/1.1\r\nHost: other.example\r\n\r\n");
  auto second = c.read_response();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->result_int(), 403u);
  EXPECT_NE(second->body().find("other.example"), std::string::npos) << second->body();
  const auto a = only_action();  // the first request only
  EXPECT_EQ(a.host, "named.example");
  EXPECT_EQ(a.path, "/x");
}

TEST_F(TransparentDoor, ATlsClientIsJudgedByItsSniAndJustClosed) {
  start(kOriginal);
  RawClient c(door_port_);
  c.send(client_hello("tls.example"));
  EXPECT_EQ(c.read_all(), "");  // no HTTP answer to a TLS client
  const auto a = only_action();
  EXPECT_EQ(a.host, "tls.example");
  EXPECT_EQ(a.via, "transparent");
}

TEST_F(TransparentDoor, ASilentClientIsJudgedByTheOriginalAddress) {
  start(kOriginal);
  RawClient c(door_port_);  // sends nothing: a server-speaks-first protocol
  EXPECT_EQ(c.read_all(), "");
  const auto a = only_action();
  EXPECT_EQ(a.host, kOriginal);
  EXPECT_EQ(a.port, kOriginalPort);
}

TEST_F(TransparentDoor, LoopbackOriginalsAndUnknownOnesAreRefusedUnjudgedAndAudited) {
  for (const std::string original : {"127.0.0.1", "::1", ""}) {
    SCOPED_TRACE(original);
    TearDown();
    io_.restart();
    audits_.clear();
    start(original);
    RawClient c(door_port_);
    c.send("GET / HTTP/1.1\r\nHost: named.example\r\n\r\n");
    EXPECT_EQ(c.read_all(), "");  // the refusal is audited before the close
    auto entries = audits();
    ASSERT_EQ(entries.size(), 1u);
    EXPECT_EQ(entries[0]["event"], "door_refused");
    EXPECT_EQ(entries[0]["via"], "transparent");
    EXPECT_TRUE(judge_.actions().empty());
    // Counted for acp status: led in, and refused before judging.
    const auto counted = server_->counters();
    EXPECT_EQ(counted.door, 1u);
    EXPECT_EQ(counted.door_refused, 1u);
    EXPECT_EQ(counted.requests, 0u);
  }
}

}  // namespace
