// The forward proxy end to end: real clients (curl, python3 urllib, raw sockets) through a
// ProxyServer on 127.0.0.1:0 to a real origin on loopback, with a scripted RequestJudge.
#include "acp/proxy/proxy_server.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include <boost/asio/read_until.hpp>

#include "acp/cgroup/mounts.hpp"
#include "acp/proxy/own_endpoints.hpp"
#include "proxy_test_support.hpp"

namespace {

using namespace acp;
using namespace acp::proxy;
using namespace acp::proxy::testing;
namespace fs = std::filesystem;

// Whether peak RSS says anything about what the proxy holds. Not under ASan: its allocator
// keeps freed blocks in a quarantine (256 MB by default) to catch use-after-free, so a relay
// that frees every 64 KiB buffer still grows the process by the bytes it moved.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kRssMeasuresHeldMemory = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kRssMeasuresHeldMemory = false;
#else
constexpr bool kRssMeasuresHeldMemory = true;
#endif
#else
constexpr bool kRssMeasuresHeldMemory = true;
#endif

// Peak resident memory of this process (the proxy runs in it), in bytes.
size_t peak_rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

bool have_ipv6_loopback() {
  net::io_context io;
  tcp::acceptor a(io);
  boost::system::error_code ec;
  a.open(tcp::v6(), ec);
  if (!ec) a.bind(tcp::endpoint(net::ip::make_address("::1"), 0), ec);
  return !ec;
}

class ProxyServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/acp-proxy-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (thread_.joinable()) {
      net::post(io_, [this] { server_->stop(); });
      judge_.release();
      net::post(io_, [this] { io_.stop(); });
      thread_.join();
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void start(ProxyLimits limits = {}) {
    ProxyConfig cfg;
    cfg.listen = {tcp::endpoint(net::ip::make_address("127.0.0.1"), 0)};
    cfg.limits = limits;
    cfg.session_id = "test-session";
    cfg.client_cgroup = client_cgroup_;
    server_ = std::make_unique<ProxyServer>(io_, cfg, judge_);
    server_->set_audit_callback([this](nlohmann::json e) {
      std::lock_guard lk(mu_);
      audits_.push_back(std::move(e));
    });
    server_->set_event_callback([this](const nlohmann::json& e) {
      {
        std::lock_guard lk(mu_);
        events_.push_back(e);
      }
      events_cv_.notify_all();
    });
    auto st = server_->start();
    ASSERT_TRUE(st.ok()) << st.error().message();
    port_ = server_->local_endpoints().at(0).port();
    thread_ = std::thread([this] { io_.run(); });
  }

  std::string proxy() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string origin_url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(origin_.port()) + path;
  }
  // curl through the proxy: returns "<status>" from -w, the body goes to `out_file`.
  CommandResult curl(const std::string& args, const std::string& out_file = "/dev/null") {
    return run_command("curl -sS --max-time 120 -x " + proxy() + " -o " + out_file +
                       " -w '%{http_code}' " + args + " 2>&1");
  }
  std::string file(const std::string& name) const { return dir_ + "/" + name; }
  static std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  }
  // The event is emitted once the proxy is done with the request, which may be just after
  // the client has its answer: wait for n of them (synchronisation, not a timing check).
  std::vector<nlohmann::json> events(size_t n) {
    std::unique_lock lk(mu_);
    events_cv_.wait_for(lk, std::chrono::seconds(30), [&] { return events_.size() >= n; });
    return events_;
  }

  net::io_context io_;
  ScriptedJudge judge_{io_};
  Origin origin_{have_ipv6_loopback()};
  std::unique_ptr<ProxyServer> server_;
  std::thread thread_;
  uint16_t port_ = 0;
  std::string dir_;
  std::mutex mu_;
  std::condition_variable events_cv_;
  std::vector<nlohmann::json> events_;
  std::vector<nlohmann::json> audits_;
  std::string client_cgroup_;  // ProxyConfig::client_cgroup for start()
};

TEST_F(ProxyServerTest, CurlGetIsJudgedAndForwarded) {
  start();
  auto r = curl(origin_url("/hello"), file("out"));
  EXPECT_EQ(r.out, "200");
  EXPECT_EQ(slurp(file("out")), "hello from origin");
  auto actions = judge_.actions();
  ASSERT_EQ(actions.size(), 1u);
  EXPECT_EQ(actions[0].kind, "http");
  EXPECT_EQ(actions[0].host, "127.0.0.1");
  EXPECT_EQ(actions[0].port, origin_.port());
  EXPECT_EQ(actions[0].method, "GET");
  EXPECT_EQ(actions[0].path, "/hello");
  EXPECT_EQ(actions[0].session, "test-session");
  auto c = server_->counters();
  EXPECT_EQ(c.requests, 1u);
  EXPECT_EQ(c.allowed, 1u);
  EXPECT_EQ(c.denied, 0u);
  auto ev = events(1);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0]["status"], 200);
  EXPECT_EQ(ev[0]["host"], "127.0.0.1");
  EXPECT_EQ(ev[0]["path"], "/hello");
}

TEST_F(ProxyServerTest, HostNamesAreNormalizedForTheJudge) {
  judge_.decide = [](const Action&) { return Judgement{false, "test", "r1", false}; };
  start();
  RawClient c(port_);
  c.send("GET http://API.Example.COM./x?y=1 HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
  auto res = c.read_response();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 403);
  auto actions = judge_.actions();
  ASSERT_EQ(actions.size(), 1u);
  EXPECT_EQ(actions[0].host, "api.example.com");
  EXPECT_EQ(actions[0].port, 80);
  EXPECT_EQ(actions[0].path, "/x?y=1");
}

TEST_F(ProxyServerTest, HopByHopHeadersRemovedAndHostRewritten) {
  start();
  RawClient c(port_);
  c.send("GET " + origin_url("/headers") +
         " HTTP/1.1\r\nHost: wrong.example\r\nConnection: keep-alive, X-Secret\r\n"
         "X-Secret: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic eDp5\r\n"
         "Proxy-Connection: keep-alive\r\nTE: trailers\r\nUpgrade: h2c\r\nX-Kept: yes\r\n\r\n");
  auto res = c.read_response();
  ASSERT_TRUE(res);
  ASSERT_EQ(res->result_int(), 200);
  auto got = nlohmann::json::parse(res->body());
  EXPECT_EQ(got["target"], "/headers");
  auto h = got["headers"];
  EXPECT_EQ(h["Host"], "127.0.0.1:" + std::to_string(origin_.port()));
  EXPECT_EQ(h["X-Kept"], "yes");
  for (const char* gone : {"X-Secret", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection",
                           "TE", "Upgrade", "Connection"})
    EXPECT_FALSE(h.contains(gone)) << gone;
}

TEST_F(ProxyServerTest, LargeSizedAndChunkedUploadsAreStreamed) {
  start();
  const size_t size = 20 * 1024 * 1024;
  {
    std::ofstream f(file("up"), std::ios::binary);
    std::string block(1 << 20, '\0');
    for (size_t i = 0; i < block.size(); ++i) block[i] = static_cast<char>(i * 7);
    for (size_t i = 0; i < size / block.size(); ++i) f << block;
  }
  uint64_t sum = 0;
  for (unsigned char ch : slurp(file("up"))) sum += ch;
  size_t before = peak_rss_bytes();
  auto sized = curl("--data-binary @" + file("up") + " " + origin_url("/sink"), file("sized"));
  EXPECT_EQ(sized.out, "200");
  auto s = nlohmann::json::parse(slurp(file("sized")));
  EXPECT_EQ(s["bytes"], size);
  EXPECT_EQ(s["sum"], sum);
  auto chunked = curl(
      "-H 'Transfer-Encoding: chunked' --data-binary @" + file("up") + " " + origin_url("/sink"),
      file("chunked"));
  EXPECT_EQ(chunked.out, "200") << slurp(file("chunked"));
  auto c = nlohmann::json::parse(slurp(file("chunked")));
  EXPECT_EQ(c["bytes"], size);
  EXPECT_EQ(c["sum"], sum);
  // Neither the proxy nor the origin (same process) held a 20 MB body.
  if (kRssMeasuresHeldMemory) {
    EXPECT_LT(peak_rss_bytes() - before, size / 2);
  }
  EXPECT_EQ(judge_.actions().size(), 2u);
  EXPECT_EQ(judge_.actions()[0].method, "POST");
}

TEST_F(ProxyServerTest, LargeDownloadsSizedChunkedAndUntilEof) {
  start();
  const size_t size = 20 * 1024 * 1024;
  size_t before = peak_rss_bytes();
  for (const char* kind : {"/big/", "/chunked/", "/eof/"}) {
    auto r = curl(origin_url(kind + std::to_string(size)), file("down"));
    EXPECT_EQ(r.out, "200") << kind;
    EXPECT_EQ(fs::file_size(file("down")), size) << kind;
  }
  if (kRssMeasuresHeldMemory) {
    EXPECT_LT(peak_rss_bytes() - before, size / 2);
  }
}

TEST_F(ProxyServerTest, EveryRequestOnAKeptAliveConnectionIsJudged) {
  judge_.decide = [](const Action& a) {
    if (a.path == "/deny-me") return Judgement{false, "path is denied", "r-deny", true};
    return Judgement{true, "ok", "r-ok", true};
  };
  start();
  RawClient c(port_);
  const std::string host = "Host: 127.0.0.1\r\n\r\n";
  c.send("GET " + origin_url("/hello") + " HTTP/1.1\r\n" + host);
  auto first = c.read_response();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->result_int(), 200);
  EXPECT_EQ(first->body(), "hello from origin");
  c.send("GET " + origin_url("/hello") + " HTTP/1.1\r\n" + host);
  auto second = c.read_response();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->result_int(), 200);
  c.send("GET " + origin_url("/deny-me") + " HTTP/1.1\r\n" + host);
  auto third = c.read_response();
  ASSERT_TRUE(third);
  EXPECT_EQ(third->result_int(), 403);
  EXPECT_EQ(third->body(), R"({"error":"Blocked by ACP","reason":"path is denied"})");
  EXPECT_EQ((*third)["X-ACP-Request-Id"], "r-deny");
  EXPECT_EQ((*third)[http::field::content_type], "application/json");
  // Still usable after the denial.
  c.send("GET " + origin_url("/hello") + " HTTP/1.1\r\n" + host);
  auto fourth = c.read_response();
  ASSERT_TRUE(fourth);
  EXPECT_EQ(fourth->result_int(), 200);
  EXPECT_EQ(judge_.actions().size(), 4u);
  EXPECT_EQ(origin_.requests(), 3);
  EXPECT_EQ(origin_.connections(), 1);  // the upstream connection was kept alive too
  auto cnt = server_->counters();
  EXPECT_EQ(cnt.connections, 1u);
  EXPECT_EQ(cnt.requests, 4u);
  EXPECT_EQ(cnt.denied, 1u);
  EXPECT_EQ(cnt.allowed, 3u);
}

TEST_F(ProxyServerTest, CurlReusesItsConnectionAndEachRequestIsJudged) {
  judge_.decide = [](const Action& a) {
    if (a.path == "/hello?2") return Judgement{false, "second one denied", "r2", true};
    return Judgement{true, "ok", "r1", true};
  };
  start();
  auto r = run_command("curl -sS --max-time 60 -x " + proxy() + " -o /dev/null -o " + file("two") +
                       " -w '%{http_code} %{num_connects}\\n' " + origin_url("/hello?1") + " " +
                       origin_url("/hello?2") + " 2>&1");
  EXPECT_EQ(r.out, "200 1\n403 0\n");
  EXPECT_EQ(slurp(file("two")), R"({"error":"Blocked by ACP","reason":"second one denied"})");
  EXPECT_EQ(server_->counters().connections, 1u);
  EXPECT_EQ(judge_.actions().size(), 2u);
}

TEST_F(ProxyServerTest, DenialIs403WithUpstreamBody) {
  judge_.decide = [](const Action&) {
    return Judgement{false, "Denied by policy rule 3", "abc123", false};
  };
  start();
  auto r = curl("-D " + file("hdr") + " " + origin_url("/hello"), file("body"));
  EXPECT_EQ(r.out, "403");
  EXPECT_EQ(slurp(file("body")),
            R"({"error":"Blocked by ACP","reason":"Denied by policy rule 3"})");
  EXPECT_NE(slurp(file("hdr")).find("X-ACP-Request-Id: abc123"), std::string::npos);
  EXPECT_EQ(origin_.requests(), 0);
  auto ev = events(1);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0]["allowed"], false);
  EXPECT_EQ(ev[0]["request_id"], "abc123");
}

TEST_F(ProxyServerTest, ConnectTunnelWithCurl) {
  start();
  auto r = curl("-p " + origin_url("/hello"), file("out"));
  EXPECT_EQ(r.out, "200");
  EXPECT_EQ(slurp(file("out")), "hello from origin");
  // The CONNECT, then the plain HTTP request inside it, each judged.
  auto actions = judge_.actions();
  ASSERT_EQ(actions.size(), 2u);
  EXPECT_EQ(actions[0].method, "CONNECT");
  EXPECT_EQ(actions[0].host, "127.0.0.1");
  EXPECT_EQ(actions[0].port, origin_.port());
  EXPECT_TRUE(actions[0].path.empty());
  EXPECT_EQ(actions[1].method, "GET");
  EXPECT_EQ(actions[1].host, "127.0.0.1");
  EXPECT_EQ(actions[1].port, origin_.port());
  EXPECT_EQ(actions[1].path, "/hello");
  // HTTP/1.0 CONNECT, and a bulk transfer through the tunnel.
  auto big = curl("-p --proxy1.0 127.0.0.1:" + std::to_string(port_) + " " +
                      origin_url("/big/" + std::to_string(8 << 20)),
                  file("big"));
  EXPECT_EQ(big.out, "200");
  EXPECT_EQ(fs::file_size(file("big")), 8u << 20);
  EXPECT_EQ(server_->counters().tunnels, 2u);
}

// A raw tunnel (bytes that are neither HTTP nor TLS, no rule reading inside) carries megabytes
// both ways unchanged, passes the client's half-close on to the origin (which answers only after
// it), and counts what it delivered each way.
TEST_F(ProxyServerTest, RawTunnelMovesBulkBothWaysAndPassesAHalfClose) {
  constexpr size_t kUp = 12u << 20, kDown = 9u << 20;
  auto pattern = [](size_t n, unsigned seed) {
    std::string b(n, '\0');
    uint32_t x = seed;
    for (auto& c : b) {
      x = x * 1664525u + 1013904223u;
      c = static_cast<char>(x >> 24);
    }
    b[0] = '\0';  // not a request line, not a TLS record
    return b;
  };
  const std::string up = pattern(kUp, 1), down = pattern(kDown, 2);
  net::io_context sync_io;
  tcp::acceptor origin(sync_io, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  const uint16_t origin_port = origin.local_endpoint().port();
  std::string origin_got;
  std::thread origin_thread([&] {
    tcp::socket s(sync_io);
    origin.accept(s);
    boost::system::error_code ec;
    std::vector<char> buf(1 << 16);
    for (;;) {  // everything the client sends, until its half-close arrives
      size_t n = s.read_some(net::buffer(buf), ec);
      if (ec) break;
      origin_got.append(buf.data(), n);
    }
    net::write(s, net::buffer(down), ec);  // answered only after the half-close
    s.shutdown(tcp::socket::shutdown_send, ec);
  });
  start();
  tcp::socket c(sync_io);
  c.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port_));
  const std::string connect = "CONNECT 127.0.0.1:" + std::to_string(origin_port) +
                              " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(origin_port) +
                              "\r\n\r\n";
  net::write(c, net::buffer(connect));
  std::string head;
  size_t head_len = net::read_until(c, net::dynamic_buffer(head), "\r\n\r\n");
  ASSERT_EQ(head.rfind("HTTP/1.1 200", 0), 0u) << head;
  ASSERT_EQ(head.size(), head_len) << "nothing comes from the origin before the client sends";
  net::write(c, net::buffer(up));
  c.shutdown(tcp::socket::shutdown_send);
  std::string got;
  boost::system::error_code ec;
  std::vector<char> buf(1 << 16);
  for (;;) {
    size_t n = c.read_some(net::buffer(buf), ec);
    if (ec) break;
    got.append(buf.data(), n);
  }
  EXPECT_EQ(ec, net::error::eof);
  origin_thread.join();
  EXPECT_EQ(origin_got.size(), kUp);
  EXPECT_TRUE(origin_got == up) << "the origin got other bytes than the client sent";
  EXPECT_EQ(got.size(), kDown);
  EXPECT_TRUE(got == down) << "the client got other bytes than the origin sent";
  // The tunnel's event counts what was delivered each way.
  auto evs = events(1);
  ASSERT_FALSE(evs.empty());
  EXPECT_EQ(evs.back().value("bytes_up", uint64_t{0}), kUp) << evs.back().dump();
  EXPECT_EQ(evs.back().value("bytes_down", uint64_t{0}), kDown) << evs.back().dump();
}

TEST_F(ProxyServerTest, ConnectToIpv6LiteralAuthority) {
  if (origin_.port6() == 0) GTEST_SKIP() << "no ::1 on this machine";
  start();
  std::string url = "http://[::1]:" + std::to_string(origin_.port6()) + "/hello";
  auto r = curl("-g -p " + url, file("out"));
  EXPECT_EQ(r.out, "200");
  EXPECT_EQ(slurp(file("out")), "hello from origin");
  auto plain = curl("-g " + url, file("out2"));
  EXPECT_EQ(plain.out, "200");
  auto actions = judge_.actions();
  ASSERT_EQ(actions.size(), 3u);  // CONNECT, the GET inside it, the plain GET
  EXPECT_EQ(actions[0].host, "::1");
  EXPECT_EQ(actions[0].method, "CONNECT");
  EXPECT_EQ(actions[1].host, "::1");
  EXPECT_EQ(actions[1].method, "GET");
  EXPECT_EQ(actions[2].host, "::1");
  EXPECT_EQ(actions[2].method, "GET");
}

TEST_F(ProxyServerTest, RawConnectCarriesBytesSentBehindTheHeader) {
  start();
  RawClient c(port_);
  std::string port = std::to_string(origin_.port());
  // The CONNECT and the first tunnelled request in one write.
  c.send("CONNECT 127.0.0.1:" + port + " HTTP/1.1\r\nHost: 127.0.0.1:" + port +
         "\r\n\r\nGET /hello HTTP/1.1\r\nHost: 127.0.0.1:" + port +
         "\r\nConnection: close\r\n\r\n");
  auto all = c.read_all();
  EXPECT_EQ(all.rfind("HTTP/1.1 200 Connection Established\r\n\r\nHTTP/1.1 200 OK", 0), 0u) << all;
  EXPECT_NE(all.find("hello from origin"), std::string::npos);
}

TEST_F(ProxyServerTest, PlainHttpInsideAConnectIsJudgedRequestByRequest) {
  judge_.decide = [](const Action& a) {
    bool deny = a.path.rfind("/admin/", 0) == 0;
    return Judgement{!deny, deny ? "rule 2 denies /admin/*" : "ok", "r", true};
  };
  start();
  RawClient c(port_);
  const std::string port = std::to_string(origin_.port());
  c.send("CONNECT 127.0.0.1:" + port + " HTTP/1.1\r\nHost: 127.0.0.1:" + port + "\r\n\r\n");
  auto est = c.read_response(true);
  ASSERT_TRUE(est);
  EXPECT_EQ(est->result_int(), 200);
  // Kept alive: every request on the tunnel is judged, the denied one never leaves.
  c.send("GET /hello HTTP/1.1\r\nHost: 127.0.0.1:" + port + "\r\n\r\n");
  auto ok = c.read_response();
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->body(), "hello from origin");
  c.send("GET /admin/x HTTP/1.1\r\nHost: 127.0.0.1:" + port + "\r\n\r\n");
  auto denied = c.read_response();
  ASSERT_TRUE(denied);
  EXPECT_EQ(denied->result_int(), 403);
  c.send("GET /hello HTTP/1.1\r\nHost: 127.0.0.1:" + port + "\r\n\r\n");
  auto again = c.read_response();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->body(), "hello from origin");
  // A Host that names another server, and an absolute-form target, are refused.
  c.send("GET /hello HTTP/1.1\r\nHost: other.example\r\n\r\n");
  auto other = c.read_response();
  ASSERT_TRUE(other);
  EXPECT_EQ(other->result_int(), 403);
  EXPECT_EQ(origin_.requests(), 2);
  auto actions = judge_.actions();
  ASSERT_EQ(actions.size(), 4u);
  EXPECT_EQ(actions[0].method, "CONNECT");
  EXPECT_EQ(actions[2].path, "/admin/x");
  EXPECT_EQ(actions[2].port, origin_.port());
}

TEST_F(ProxyServerTest, UnreadableTunnelBytesAreRefusedWhereARuleReadsInside) {
  judge_.decide = [](const Action&) {
    Judgement j{true, "ok", "r", true};
    j.inside_path = true;  // a path rule applies to the host:port
    return j;
  };
  start();
  for (std::string bytes : {"GET /admin/x\r\n\r\n", "GET\t/admin/x\tHTTP/1.1\r\n\r\n"}) {
    RawClient c(port_);
    const std::string port = std::to_string(origin_.port());
    c.send("CONNECT 127.0.0.1:" + port + " HTTP/1.1\r\n\r\n" + bytes);
    EXPECT_EQ(c.read_all(), "HTTP/1.1 200 Connection Established\r\n\r\n") << bytes;
  }
  EXPECT_EQ(origin_.requests(), 0);
  EXPECT_EQ(server_->counters().denied, 2u);
}

// Request smuggling through a body the origin ignores: with a path rule on the host, a GET
// whose body is a second request is refused before anything reaches the origin.
TEST_F(ProxyServerTest, ABodyOnGetCannotCarryAnUnjudgedRequestWhereAPathRuleApplies) {
  judge_.decide = [](const Action&) {
    Judgement j{true, "ok", "r", true};
    j.inside_path = true;
    return j;
  };
  start();
  const std::string port = std::to_string(origin_.port());
  const std::string smuggled = "GET /admin/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  for (std::string method : {"GET", "HEAD", "OPTIONS"}) {
    RawClient c(port_);
    c.send(method + " http://127.0.0.1:" + port + "/hello HTTP/1.1\r\nHost: 127.0.0.1:" + port +
           "\r\nContent-Length: " + std::to_string(smuggled.size()) + "\r\n\r\n" + smuggled);
    auto r = c.read_response(method == "HEAD");
    ASSERT_TRUE(r) << method;
    EXPECT_EQ(r->result_int(), 400) << method;
  }
  // Chunked counts as a body too.
  RawClient c(port_);
  c.send("GET http://127.0.0.1:" + port + "/hello HTTP/1.1\r\nHost: 127.0.0.1:" + port +
         "\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->result_int(), 400);
  EXPECT_EQ(origin_.requests(), 0);
}

// Where a path rule applies, a body goes out on an upstream connection that closes after it
// (bytes the origin leaves unread are never read as a request), in one framing, without the
// headers that make origins run another method or path.
TEST_F(ProxyServerTest, ABodyWhereAPathRuleAppliesGoesOutAloneAndWithoutOverrideHeaders) {
  judge_.decide = [](const Action&) {
    Judgement j{true, "ok", "r", true};
    j.inside_path = true;
    return j;
  };
  start();
  const std::string port = std::to_string(origin_.port());
  RawClient c(port_);
  for (int i = 0; i < 2; ++i) {
    c.send("POST http://127.0.0.1:" + port + "/headers HTTP/1.1\r\nHost: 127.0.0.1:" + port +
           "\r\nContent-Length: 5, 5\r\nX-HTTP-Method-Override: DELETE\r\n"
           "X-Original-URL: /admin/x\r\nX-Rewrite-URL: /admin/x\r\n\r\nhello");
    auto r = c.read_response();
    ASSERT_TRUE(r) << i;
    ASSERT_EQ(r->result_int(), 200) << r->body();
    auto got = nlohmann::json::parse(r->body());
    EXPECT_EQ(got["target"], "/headers");
    const auto& h = got["headers"];
    EXPECT_FALSE(h.contains("X-HTTP-Method-Override")) << h.dump();
    EXPECT_FALSE(h.contains("X-Original-URL")) << h.dump();
    EXPECT_FALSE(h.contains("X-Rewrite-URL")) << h.dump();
    EXPECT_EQ(h.value("Content-Length", ""), "5") << h.dump();
    EXPECT_EQ(h.value("Connection", ""), "close") << h.dump();
  }
  EXPECT_EQ(origin_.connections(), 2);  // one upstream connection per request with a body
  // Without a path rule on the host the same request keeps its headers (nothing to re-route).
  judge_.decide = [](const Action&) { return Judgement{true, "ok", "r", true}; };
  c.send("POST http://127.0.0.1:" + port + "/headers HTTP/1.1\r\nHost: 127.0.0.1:" + port +
         "\r\nContent-Length: 5\r\nX-HTTP-Method-Override: DELETE\r\n\r\nhello");
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_TRUE(nlohmann::json::parse(r->body())["headers"].contains("X-HTTP-Method-Override"));
}

TEST_F(ProxyServerTest, LoopbackIsRefusedUnlessARuleNamesTheHost) {
  judge_.decide = [](const Action&) { return Judgement{true, "glob rule", "r", false}; };
  start();
  auto r = curl(origin_url("/hello"), file("body"));
  EXPECT_EQ(r.out, "403");
  auto body = nlohmann::json::parse(slurp(file("body")));
  EXPECT_EQ(body["error"], "Blocked by ACP");
  EXPECT_NE(body["reason"].get<std::string>().find("loopback"), std::string::npos);
  auto tunnel = curl("-p " + origin_url("/hello"));
  EXPECT_NE(tunnel.out.find("403"), std::string::npos) << tunnel.out;
  // localhost resolves only to loopback addresses: refused as well.
  auto named = curl("http://localhost:" + std::to_string(origin_.port()) + "/hello");
  EXPECT_EQ(named.out, "403");
  EXPECT_EQ(origin_.connections(), 0);
  EXPECT_EQ(server_->counters().denied, 3u);
}

TEST_F(ProxyServerTest, TheProxyNeverConnectsToItself) {
  start();
  auto r = curl("http://127.0.0.1:" + std::to_string(port_) + "/loop", file("body"));
  EXPECT_EQ(r.out, "403");
  EXPECT_NE(slurp(file("body")).find("own address"), std::string::npos);
}

// The cgroup v2 directory this process (and the curl it starts) is in; empty without one.
std::string own_cgroup_dir() {
  auto root = cgroup2_mount_point();
  if (!root) return {};
  std::ifstream f("/proc/self/cgroup");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("0::", 0) == 0) return *root + line.substr(3);
  return {};
}

TEST_F(ProxyServerTest, ClientOutsideTheSessionCgroupIsRefusedBeforeItsRequestIsRead) {
  // A directory curl's socket is not in stands for another session's cgroup.
  client_cgroup_ = dir_;
  start();
  auto r = curl(origin_url("/hello"), file("body"));
  EXPECT_EQ(r.out, "403");
  auto body = nlohmann::json::parse(slurp(file("body")));
  EXPECT_EQ(body["error"], "Blocked by ACP");
  EXPECT_NE(body["reason"].get<std::string>().find("refused: client not in this session"),
            std::string::npos)
      << body.dump();
  auto tunnel = curl("-p " + origin_url("/hello"));
  EXPECT_NE(tunnel.out.find("403"), std::string::npos) << tunnel.out;
  EXPECT_TRUE(judge_.actions().empty());  // nothing was parsed, nothing judged
  EXPECT_EQ(origin_.connections(), 0);
  EXPECT_EQ(server_->counters().foreign, 2u);
  events(2);
  std::lock_guard lk(mu_);
  ASSERT_EQ(audits_.size(), 2u);
  EXPECT_EQ(audits_[0]["kind"], "client");
  EXPECT_EQ(audits_[0]["allowed"], false);
  EXPECT_NE(audits_[0]["reason"].get<std::string>().find("client not in this session"),
            std::string::npos);
  EXPECT_TRUE(audits_[0].contains("client_cgroup_id"));
}

TEST_F(ProxyServerTest, ClientInTheSessionCgroupIsServed) {
  client_cgroup_ = own_cgroup_dir();
  if (client_cgroup_.empty()) GTEST_SKIP() << "no cgroup v2 here";
  start();
  auto r = curl(origin_url("/hello"), file("out"));
  EXPECT_EQ(r.out, "200");
  EXPECT_EQ(slurp(file("out")), "hello from origin");
  EXPECT_EQ(server_->counters().foreign, 0u);
}

TEST_F(ProxyServerTest, AcpsOwnListenersAreNeverAnUpstreamWhateverThePolicy) {
  // A listener registered as ACP's own (as the web page registers itself), on 0.0.0.0 so
  // that every local address reaches it. The judge allows everything, naming the host.
  net::io_context other_io;
  tcp::acceptor page(other_io);
  page.open(tcp::v4());
  page.bind(tcp::endpoint(net::ip::address_v4::any(), 0));
  auto reg = register_own_endpoint(page.native_handle(), "web page (test)", dir_ + "/endpoints");
  ASSERT_TRUE(reg) << reg.error().message();
  page.listen();
  const std::string port = std::to_string(page.local_endpoint().port());
  start();
  for (const std::string host :
       {"127.0.0.1", "127.0.0.53", "0.0.0.0", "localhost", "2130706433", "[::ffff:127.0.0.1]"}) {
    SCOPED_TRACE(host);
    auto r = curl("http://" + host + ":" + port + "/", file("body"));
    EXPECT_NE(r.out, "200");
    // localhost also resolves to ::1, where nothing listens (502); the canonicaliser may refuse
    // a spelling outright (400); every other spelling is this refusal.
    if (r.out == "403") {
      EXPECT_NE(slurp(file("body")).find("ACP's own web page (test)"), std::string::npos)
          << slurp(file("body"));
    }
    auto tunnel = curl("-p http://" + host + ":" + port + "/");
    EXPECT_EQ(tunnel.out.find("200"), std::string::npos) << tunnel.out;
  }
  // The page never saw a connection.
  page.non_blocking(true);
  boost::system::error_code ec;
  page.accept(ec);
  EXPECT_EQ(ec, net::error::would_block);
}

TEST_F(ProxyServerTest, OriginFormRequestsGetAnExplanation) {
  start();
  auto r = run_command("curl -sS --max-time 30 -o " + file("body") + " -w '%{http_code}' " +
                       proxy() + "/hello 2>&1");
  EXPECT_EQ(r.out, "400");
  auto body = nlohmann::json::parse(slurp(file("body")));
  EXPECT_EQ(body["error"], "Not a proxy request");
  EXPECT_NE(body["reason"].get<std::string>().find("HTTP_PROXY"), std::string::npos);
  EXPECT_TRUE(judge_.actions().empty());
}

TEST_F(ProxyServerTest, OversizedHeaderIs431) {
  ProxyLimits lim;
  lim.max_header_bytes = 8 * 1024;
  start(lim);
  RawClient c(port_);
  c.send("GET " + origin_url("/hello") +
         " HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(16 * 1024, 'a') + "\r\n\r\n");
  auto res = c.read_response();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 431);
  EXPECT_EQ(nlohmann::json::parse(res->body())["error"], "Request header too large");
  EXPECT_TRUE(judge_.actions().empty());
}

// Connection::refuse() answers and records in one step: for every kind of refusal (before a
// head parses, before the judge, the judge's, the destination check, the upstream), the event
// carries exactly the status and reason the client got, and the refusal has its event.
TEST_F(ProxyServerTest, EveryRefusalIsRecordedWithTheStatusAndReasonItSent) {
  ProxyLimits lim;
  lim.max_header_bytes = 8 * 1024;
  // A loopback port with nothing listening: bound, then closed.
  uint16_t closed_port = 0;
  {
    net::io_context io;
    tcp::acceptor a(io, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
    closed_port = a.local_endpoint().port();
  }
  judge_.decide = [](const Action& a) {
    if (a.host == "denied.example") return Judgement{false, "denied by test", "r-deny", false};
    // Allowed, but by a rule that does not name the host: loopback stays out of reach.
    if (a.path == "/unnamed") return Judgement{true, "allowed by test", "r-unnamed", false};
    return Judgement{true, "allowed by test", "r-named", true};
  };
  start(lim);
  const std::string closed_url = "http://127.0.0.1:" + std::to_string(closed_port) + "/";
  const std::vector<std::pair<std::string, unsigned>> requests = {
      {"GET /x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
      {"GET " + origin_url("/") + " HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(16 * 1024, 'a') +
           "\r\n\r\n",
       431},
      {"POST " + origin_url("/") +
           " HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
       400},
      {"GET http://denied.example/ HTTP/1.1\r\nHost: denied.example\r\n\r\n", 403},
      {"GET " + origin_url("/unnamed") + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 403},
      {"GET " + closed_url + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 502},
      {"CONNECT denied.example:443 HTTP/1.1\r\nHost: denied.example:443\r\n\r\n", 403},
  };
  std::vector<std::pair<unsigned, std::string>> sent;  // status, reason
  for (const auto& [request, status] : requests) {
    RawClient c(port_);
    c.send(request);
    auto res = c.read_response();
    ASSERT_TRUE(res) << request.substr(0, 60);
    EXPECT_EQ(res->result_int(), status) << request.substr(0, 60);
    sent.emplace_back(res->result_int(), nlohmann::json::parse(res->body())["reason"]);
  }
  auto ev = events(sent.size());
  ASSERT_EQ(ev.size(), sent.size());
  for (const auto& refusal : sent) {
    // Named copies: clang 14 cannot capture a structured binding in a lambda.
    const unsigned status = refusal.first;
    const std::string& reason = refusal.second;
    auto it = std::find_if(ev.begin(), ev.end(), [&](const nlohmann::json& e) {
      return e.value("reason", std::string()) == reason;
    });
    ASSERT_NE(it, ev.end()) << "no event for the refusal " << status << " " << reason;
    EXPECT_EQ((*it)["status"], status) << reason;
  }
  auto c = server_->counters();
  EXPECT_EQ(c.denied, 3u);
  EXPECT_EQ(c.errors, 4u);
}

TEST_F(ProxyServerTest, OversizedBodyIs413) {
  ProxyLimits lim;
  lim.max_body_bytes = 1000;
  start(lim);
  {
    RawClient c(port_);
    c.send("POST " + origin_url("/sink") + " HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" +
           std::string(5000, 'x'));
    auto res = c.read_response();
    ASSERT_TRUE(res);
    EXPECT_EQ(res->result_int(), 413);
  }
  {  // chunked: discovered while streaming, before the origin has answered
    RawClient c(port_);
    std::string chunk(900, 'y');
    c.send("POST " + origin_url("/sink") +
           " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n384\r\n" + chunk +
           "\r\n384\r\n" + chunk + "\r\n0\r\n\r\n");
    auto res = c.read_response();
    ASSERT_TRUE(res);
    EXPECT_EQ(res->result_int(), 413);
  }
  {  // within the limit
    auto r = curl("--data-binary 'small body' " + origin_url("/sink"), file("ok"));
    EXPECT_EQ(r.out, "200");
    EXPECT_EQ(nlohmann::json::parse(slurp(file("ok")))["bytes"], 10);
  }
}

TEST_F(ProxyServerTest, AmbiguousFramingIsRefusedAsSmuggling) {
  start();
  const std::string url = origin_url("/sink");
  const std::vector<std::string> hostile = {
      // Content-Length and Transfer-Encoding, both orders.
      "POST " + url +
          " HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
          "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      "POST " + url +
          " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
          "Content-Length: 5\r\n\r\n0\r\n\r\n",
      // Two differing Content-Lengths, and two identical ones.
      "POST " + url + " HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
      "POST " + url + " HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
      "POST " + url + " HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\nhello",
      // obs-fold
      "GET " + url + " HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
      "POST " + url + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
      // A Transfer-Encoding that does not end in chunked.
      "POST " + url + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
      "POST " + url + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
      // Two Host headers.
      "GET " + url + " HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
  };
  for (const auto& req : hostile) {
    RawClient c(port_);
    c.send(req);
    auto res = c.read_response();
    ASSERT_TRUE(res) << req;
    EXPECT_EQ(res->result_int(), 400) << req;
  }
  EXPECT_EQ(origin_.requests(), 0);
  EXPECT_TRUE(judge_.actions().empty());
}

TEST_F(ProxyServerTest, MalformedInputIs400AndTheProxyKeepsServing) {
  start();
  const std::vector<std::string> garbage = {
      "\x16\x03\x01\x02\x01\x01\x03\x01\xfc\x03\x03\r\n\r\n",  // TLS to a plain proxy
      "GET\r\n\r\n",
      "GET http://x/ HTTP/9.9\r\n\r\n",
      "G\x01T http://x/ HTTP/1.1\r\n\r\n",
      "GET http://x/ HTTP/1.1\nHost: x\n\n",  // bare LF
      "CONNECT nohost HTTP/1.1\r\n\r\n",
      "CONNECT [::1 HTTP/1.1\r\n\r\n",
      "GET https://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
      "GET http://us:er@x/ HTTP/1.1\r\nHost: x\r\n\r\n",
      "POST http://x/ HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
  };
  for (const auto& g : garbage) {
    RawClient c(port_);
    c.send(g);
    auto res = c.read_response();
    ASSERT_TRUE(res) << g;
    EXPECT_EQ(res->result_int(), 400) << g;
  }
  auto r = curl(origin_url("/hello"));
  EXPECT_EQ(r.out, "200");
}

TEST_F(ProxyServerTest, ConnectionsBeyondTheLimitGet503) {
  ProxyLimits lim;
  lim.max_connections = 2;
  start(lim);
  RawClient a(port_), b(port_);
  // A full exchange on each proves the proxy holds both connections.
  for (auto* c : {&a, &b}) {
    c->send("GET " + origin_url("/hello") + " HTTP/1.1\r\nHost: x\r\n\r\n");
    auto res = c->read_response();
    ASSERT_TRUE(res);
    EXPECT_EQ(res->result_int(), 200);
  }
  RawClient third(port_);
  third.send("GET " + origin_url("/hello") + " HTTP/1.1\r\nHost: x\r\n\r\n");
  auto res = third.read_response();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 503);
  EXPECT_EQ(nlohmann::json::parse(res->body())["error"], "Too many connections");
  EXPECT_EQ(judge_.actions().size(), 2u);
}

TEST_F(ProxyServerTest, UpstreamConnectRefusedIs502WithTheReason) {
  start();
  uint16_t closed_port;
  {
    net::io_context io;
    tcp::acceptor a(io, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
    closed_port = a.local_endpoint().port();
  }
  auto r = curl("http://127.0.0.1:" + std::to_string(closed_port) + "/", file("body"));
  EXPECT_EQ(r.out, "502");
  auto body = nlohmann::json::parse(slurp(file("body")));
  EXPECT_EQ(body["error"], "Upstream connect failed");
  EXPECT_NE(body["reason"].get<std::string>().find("refused"), std::string::npos);
  auto tunnel = curl("-p http://127.0.0.1:" + std::to_string(closed_port) + "/");
  EXPECT_NE(tunnel.out.find("502"), std::string::npos) << tunnel.out;
}

TEST_F(ProxyServerTest, UnresolvableHostIs502) {
  start();
  auto r = curl("http://no-such-host.invalid/", file("body"));
  EXPECT_EQ(r.out, "502");
  EXPECT_EQ(nlohmann::json::parse(slurp(file("body")))["error"], "Cannot resolve host");
}

TEST_F(ProxyServerTest, ASlowJudgementDoesNotHoldUpOtherConnections) {
  judge_.hold_host = "localhost";  // held until release(); host_named lets it reach loopback
  start();
  RawClient slow(port_);
  slow.send("GET http://localhost:" + std::to_string(origin_.port()) +
            "/hello HTTP/1.1\r\nHost: localhost\r\n\r\n");
  ASSERT_TRUE(judge_.wait_for_actions(1));
  // While that one waits for a human, another connection is served.
  auto r = curl(origin_url("/hello"), file("out"));
  EXPECT_EQ(r.out, "200");
  EXPECT_EQ(origin_.requests(), 1);
  judge_.release();
  auto res = slow.read_response();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 200);
  EXPECT_EQ(res->body(), "hello from origin");
}

TEST_F(ProxyServerTest, JudgeTimeoutDenies) {
  judge_.hold_host = "127.0.0.1";
  ProxyLimits lim;
  lim.judge_timeout = std::chrono::seconds(1);
  start(lim);
  auto r = curl(origin_url("/hello"), file("body"));
  EXPECT_EQ(r.out, "403");
  EXPECT_NE(slurp(file("body")).find("judge_timeout"), std::string::npos);
  EXPECT_EQ(origin_.requests(), 0);
}

TEST_F(ProxyServerTest, PythonUrllibThroughTheProxy) {
  start();
  auto r = run_command(
      "python3 -c \"import urllib.request as u, sys; "
      "o = u.build_opener(u.ProxyHandler({'http': '" +
      proxy() + "'})); r = o.open('" + origin_url("/hello") +
      "', timeout=60); sys.stdout.write(str(r.status) + ' ' + r.read().decode()); "
      "d = o.open(u.Request('" +
      origin_url("/sink") +
      "', data=b'x' * 100000), timeout=60); sys.stdout.write(' ' + d.read().decode())\" 2>&1");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(r.out.substr(0, 21), "200 hello from origin") << r.out;
  EXPECT_NE(r.out.find("\"bytes\":100000"), std::string::npos) << r.out;
  ASSERT_EQ(judge_.actions().size(), 2u);
  EXPECT_EQ(judge_.actions()[1].method, "POST");
}

TEST_F(ProxyServerTest, HeadAnd204AndHttp10Clients) {
  start();
  {
    RawClient c(port_);
    c.send("HEAD " + origin_url("/big/1000") + " HTTP/1.1\r\nHost: x\r\n\r\n");
    auto res = c.read_response(/*head=*/true);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->result_int(), 200);
    EXPECT_EQ((*res)[http::field::content_length], "1000");
    c.send("GET " + origin_url("/hello") + " HTTP/1.1\r\nHost: x\r\n\r\n");
    auto after = c.read_response();
    ASSERT_TRUE(after);
    EXPECT_EQ(after->body(), "hello from origin");
  }
  {  // An HTTP/1.0 client gets a chunked origin response unchunked, then the close.
    RawClient c(port_);
    c.send("GET " + origin_url("/chunked/5000") + " HTTP/1.0\r\n\r\n");
    auto all = c.read_all();
    EXPECT_EQ(all.rfind("HTTP/1.0 200", 0), 0u) << all.substr(0, 200);
    auto body = all.substr(all.find("\r\n\r\n") + 4);
    EXPECT_EQ(body.size(), 5000u);
    EXPECT_EQ(all.find("chunked"), std::string::npos);
  }
  {  // Expect: 100-continue is answered by the proxy.
    RawClient c(port_);
    c.send("POST " + origin_url("/sink") +
           " HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
    char buf[64] = {};
    ssize_t n = ::recv(c.socket().native_handle(), buf, 25, MSG_WAITALL);
    ASSERT_EQ(n, 25);
    EXPECT_EQ(std::string(buf, 25), "HTTP/1.1 100 Continue\r\n\r\n");
    c.send("abc");
    auto res = c.read_response();
    ASSERT_TRUE(res);
    EXPECT_EQ(nlohmann::json::parse(res->body())["bytes"], 3);
  }
}

TEST_F(ProxyServerTest, StopClosesTunnels) {
  start();
  RawClient c(port_);
  std::string port = std::to_string(origin_.port());
  c.send("CONNECT 127.0.0.1:" + port + " HTTP/1.1\r\n\r\n");
  std::string got;
  char buf[256];
  while (got.find("\r\n\r\n") == std::string::npos) {
    ssize_t n = ::recv(c.socket().native_handle(), buf, sizeof(buf), 0);
    ASSERT_GT(n, 0);
    got.append(buf, static_cast<size_t>(n));
  }
  EXPECT_EQ(got, "HTTP/1.1 200 Connection Established\r\n\r\n");
  net::post(io_, [this] { server_->stop(); });
  EXPECT_EQ(c.read_all(), "");  // EOF: the tunnel is gone
}

// An origin that accepts and holds tunnels' upstream connections, reading what comes, until
// the proxy closes them (what the idle and stop tests below need of an origin).
class HoldingOrigin {
 public:
  HoldingOrigin() : acceptor_(io_, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0)) {
    thread_ = std::thread([this] {
      for (;;) {
        tcp::socket s(io_);
        boost::system::error_code ec;
        acceptor_.accept(s, ec);
        if (ec) return;
        readers_.emplace_back([this, s = std::move(s)]() mutable {
          char buf[4096];
          boost::system::error_code ec;
          for (;;) {
            const size_t n = s.read_some(net::buffer(buf), ec);
            if (ec) break;
            got_ += n;
          }
        });
      }
    });
  }
  ~HoldingOrigin() {
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR);
    thread_.join();
    for (auto& t : readers_) t.join();
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  size_t got() const { return got_; }

 private:
  net::io_context io_;
  tcp::acceptor acceptor_;
  std::thread thread_;
  std::vector<std::thread> readers_;  // joined once the proxy closed their connections
  std::atomic<size_t> got_{0};
};

// Reads the 200 of a CONNECT to `port` through `c`.
void open_tunnel(RawClient& c, uint16_t port) {
  c.send("CONNECT 127.0.0.1:" + std::to_string(port) + " HTTP/1.1\r\n\r\n");
  auto& s = c.socket();
  std::string got;
  char ch;
  while (got.find("\r\n\r\n") == std::string::npos && ::recv(s.native_handle(), &ch, 1, 0) == 1)
    got += ch;
  ASSERT_EQ(got, "HTTP/1.1 200 Connection Established\r\n\r\n");
}

// True when the proxy closed `c` (EOF) before RawClient's 30 s receive timeout.
bool closed_by_proxy(RawClient& c) {
  char buf[256];
  for (;;) {
    const ssize_t n = ::recv(c.socket().native_handle(), buf, sizeof(buf), 0);
    if (n == 0) return true;
    if (n < 0) return errno == ECONNRESET;
  }
}

// An idle tunnel is closed after idle_timeout, whether nobody ever spoke on it (it waits parked
// for a first speaker) or it carried bytes and then went quiet (it is relayed); the event says
// why it ended.
TEST_F(ProxyServerTest, IdleTunnelsAreClosedAfterIdleTimeoutSilentOrUsed) {
  HoldingOrigin origin;
  ProxyLimits limits;
  limits.idle_timeout = std::chrono::seconds(1);
  start(limits);
  RawClient silent(port_), used(port_);
  open_tunnel(silent, origin.port());
  open_tunnel(used, origin.port());
  used.send(std::string("\x01\x02", 2));  // neither HTTP nor TLS: a raw tunnel
  EXPECT_TRUE(closed_by_proxy(silent));
  EXPECT_TRUE(closed_by_proxy(used));
  EXPECT_EQ(origin.got(), 2u);
  auto ev = events(2);
  bool idled_out_used = false;
  for (const auto& e : ev)
    if (e.value("bytes_up", 0) == 2) idled_out_used = e.value("closed_by", "") == "idle_timeout";
  EXPECT_TRUE(idled_out_used) << nlohmann::json(ev).dump();
}

// stop() closes tunnels in every state: parked before anyone spoke (StopClosesTunnels above),
// relayed after bytes went through.
TEST_F(ProxyServerTest, StopClosesARelayedTunnel) {
  HoldingOrigin origin;
  start();
  RawClient c(port_);
  open_tunnel(c, origin.port());
  c.send(std::string("\x01\x02", 2));
  for (int i = 0; i < 500 && origin.got() < 2; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_EQ(origin.got(), 2u);
  net::post(io_, [this] { server_->stop(); });
  EXPECT_TRUE(closed_by_proxy(c));
}

TEST(ProxyServerStart, PortInUseIsEaddrinuse) {
  net::io_context io;
  ScriptedJudge judge(io);
  ProxyConfig cfg;
  cfg.listen = {tcp::endpoint(net::ip::make_address("127.0.0.1"), 0)};
  ProxyServer first(io, cfg, judge);
  ASSERT_TRUE(first.start().ok());
  cfg.listen = first.local_endpoints();
  ProxyServer second(io, cfg, judge);
  auto st = second.start();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().err, EADDRINUSE);
  EXPECT_NE(st.error().message().find("127.0.0.1"), std::string::npos);
}

}  // namespace
