// Helpers for the consent channel tests: a real HTTP(S) server on loopback (Beast, blocking,
// a thread per connection) whose replies a test scripts, a blocking HTTP client, and a gate
// driven on the test thread.
#pragma once

#include <utility>  // before boost/asio (Boost 1.74)

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "acp/proxy/consent_gate.hpp"
#include "consent_test_support.hpp"

namespace acp::testing {

namespace bhttp = boost::beast::http;

struct HttpReply {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
};
using HttpRequestMsg = bhttp::request<bhttp::string_body>;

class TestHttpServer {
 public:
  using Handler = std::function<HttpReply(const HttpRequestMsg&)>;
  // TLS when cert/key files are given.
  explicit TestHttpServer(Handler h, const std::string& cert = "", const std::string& key = "")
      : handler_(std::move(h)), acceptor_(io_) {
    if (!cert.empty()) {
      tls_.emplace(boost::asio::ssl::context::tls_server);
      tls_->use_certificate_chain_file(cert);
      tls_->use_private_key_file(key, boost::asio::ssl::context::pem);
    }
    using boost::asio::ip::tcp;
    tcp::endpoint ep(boost::asio::ip::make_address("127.0.0.1"), 0);
    acceptor_.open(ep.protocol());
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this] { accept_loop(); });
  }
  ~TestHttpServer() { stop(); }
  void stop() {
    if (stopping_.exchange(true)) return;
    release_.notify_all();
    // Wakes the blocking accept().
    try {
      boost::asio::io_context io;
      boost::asio::ip::tcp::socket s(io);
      s.connect({boost::asio::ip::make_address("127.0.0.1"), port_});
    } catch (...) {
    }
    thread_.join();
    std::vector<std::thread> conns;
    {
      std::lock_guard lk(mu_);
      conns.swap(conns_);
    }
    for (auto& t : conns) t.join();
  }
  uint16_t port() const { return port_; }
  std::string url(const std::string& path = "/hook") const {
    return std::string(tls_ ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_) + path;
  }
  int requests() const { return requests_; }
  std::vector<HttpRequestMsg> received() {
    std::lock_guard lk(mu_);
    return received_;
  }
  // For handlers that hang until the server stops (slow replies): waits at most `d`.
  void wait_until_stopped(std::chrono::milliseconds d) {
    std::unique_lock lk(mu_);
    release_.wait_for(lk, d, [this] { return stopping_.load(); });
  }
  bool stopping() const { return stopping_; }

 private:
  void accept_loop() {
    for (;;) {
      boost::asio::ip::tcp::socket s(io_);
      boost::system::error_code ec;
      acceptor_.accept(s, ec);
      if (stopping_) return;
      if (ec) continue;
      std::lock_guard lk(mu_);
      conns_.emplace_back([this, s = std::move(s)]() mutable { serve(std::move(s)); });
    }
  }
  template <class Stream>
  void exchange(Stream& st) {
    boost::beast::flat_buffer buf;
    HttpRequestMsg req;
    boost::system::error_code ec;
    bhttp::read(st, buf, req, ec);
    if (ec) return;
    ++requests_;
    {
      std::lock_guard lk(mu_);
      received_.push_back(req);
    }
    HttpReply r = handler_(req);
    bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(r.status), 11};
    if (!r.content_type.empty()) res.set(bhttp::field::content_type, r.content_type);
    res.set(bhttp::field::connection, "close");
    res.body() = r.body;
    res.prepare_payload();
    bhttp::write(st, res, ec);
  }
  void serve(boost::asio::ip::tcp::socket s) {
    boost::system::error_code ec;
    if (tls_) {
      boost::beast::ssl_stream<boost::asio::ip::tcp::socket&> st(s, *tls_);
      st.handshake(boost::asio::ssl::stream_base::server, ec);
      if (ec) return;
      exchange(st);
      st.shutdown(ec);
    } else {
      exchange(s);
    }
    s.shutdown(boost::asio::ip::tcp::socket::shutdown_both, ec);
  }

  Handler handler_;
  boost::asio::io_context io_;
  std::optional<boost::asio::ssl::context> tls_;
  boost::asio::ip::tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable release_;
  std::vector<std::thread> conns_;
  std::vector<HttpRequestMsg> received_;
  std::atomic<int> requests_{0};
  std::atomic<bool> stopping_{false};
};

// A blocking plain-HTTP POST (the webhook's callback side). Returns {status, body}.
inline std::pair<unsigned, std::string> http_post(
    uint16_t port, const std::string& target, const std::string& body,
    const std::vector<std::pair<std::string, std::string>>& hdrs) {
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket s(io);
  s.connect({boost::asio::ip::make_address("127.0.0.1"), port});
  HttpRequestMsg req{bhttp::verb::post, target, 11};
  req.set(bhttp::field::host, "127.0.0.1");
  req.set(bhttp::field::content_type, "application/json");
  for (auto& [k, v] : hdrs) req.set(k, v);
  req.body() = body;
  req.prepare_payload();
  bhttp::write(s, req);
  boost::beast::flat_buffer buf;
  bhttp::response<bhttp::string_body> res;
  bhttp::read(s, buf, res);
  return {res.result_int(), res.body()};
}

// Runs `io` on this thread until `done()` or a bound (60 s) passes; false on the bound.
inline bool run_until(boost::asio::io_context& io, const std::function<bool()>& done) {
  auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  io.restart();
  while (!done()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    io.run_for(std::chrono::milliseconds(20));
    io.restart();
  }
  return true;
}

// Starts an ask on the gate (as the proxy would) with an `ask` rule of `timeout`.
inline std::shared_ptr<std::optional<consent::ConsentOutcome>> start_ask(
    boost::asio::io_context& io, consent::ConsentGate& gate, const std::string& host,
    std::chrono::seconds timeout = std::chrono::seconds(60)) {
  auto out = std::make_shared<std::optional<consent::ConsentOutcome>>();
  Action a;
  a.host = host;
  a.port = 443;
  a.method = "CONNECT";
  a.session = gate.session_id();
  PolicyDecision d;
  d.verdict = Verdict::Ask;
  d.rule_text = "{kind: http, host: \"*\"}";
  d.timeout = timeout;
  boost::asio::co_spawn(
      io, [&gate, a, d, out]() -> boost::asio::awaitable<void> { *out = co_await gate.ask(a, d); },
      boost::asio::detached);
  return out;
}

// A gate driven on the test thread, with one channel of type ChannelT observing it. The channel
// is detached and stopped before the gate goes. A fixture whose channel talks to a server the
// fixture owns calls stop_channel() first in its own destructor, so the server outlives the
// channel's last request.
template <class ChannelT>
struct ChannelFixture {
  TempDir dir;
  boost::asio::io_context io;
  std::unique_ptr<consent::ConsentGate> gate;
  std::unique_ptr<ChannelT> channel;

  ChannelFixture() {
    consent::GateConfig cfg;
    cfg.session_id = "sess1";
    cfg.grants_path = dir / "grants.json";
    gate = std::make_unique<consent::ConsentGate>(io, cfg);
  }
  ~ChannelFixture() { stop_channel(); }

  // Builds the channel from its settings and starts it; observes the gate only if it started.
  template <class Settings>
  acp::Status attach(Settings s) {
    channel = std::make_unique<ChannelT>(io, *gate, std::move(s));
    auto st = channel->start();
    if (st) gate->add_observer(channel.get());
    return st;
  }
  void stop_channel() {
    if (!channel) return;
    gate->remove_observer(channel.get());
    channel->stop();
    channel.reset();
  }
};

// Writes ca.pem (a test CA) and server.pem/server.key (a certificate for 127.0.0.1 signed by it)
// into `dir`. Throws when openssl fails.
inline void write_test_tls_files(const std::string& dir) {
  const std::string cmd =
      "cd " + dir +
      " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
      " -keyout ca.key -out ca.pem -days 2 -subj /CN=acp-test-ca 2>/dev/null"
      " && openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
      " -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null"
      " && printf 'subjectAltName=IP:127.0.0.1\\n' > ext.cnf"
      " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial"
      " -out server.pem -days 2 -extfile ext.cnf 2>/dev/null";
  if (std::system(cmd.c_str()) != 0) throw std::runtime_error("openssl failed: " + cmd);
}

}  // namespace acp::testing
