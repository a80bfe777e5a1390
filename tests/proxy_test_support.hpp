// Test doubles and real peers for the proxy tests: a scripted RequestJudge (the seam), a real
// HTTP origin on loopback (Beast, its own thread), and helpers for raw sockets and processes.
#pragma once

#include <utility>  // before boost/asio/awaitable.hpp (Boost 1.74)

#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <limits>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "acp/proxy/request_judge.hpp"

namespace acp::proxy::testing {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

// Records every Action and answers with `decide` (default: allow, host named). An Action
// whose host is `hold_host` waits until release() is called.
class ScriptedJudge : public RequestJudge {
 public:
  explicit ScriptedJudge(net::io_context& io) : io_(io) {}

  std::function<Judgement(const Action&)> decide = [](const Action&) {
    return Judgement{true, "allowed by test", "req-" + std::to_string(0), true};
  };
  std::string hold_host;

  net::awaitable<Judgement> judge(Action action) override {
    Action copy = action;
    {
      std::lock_guard lk(mu_);
      actions_.push_back(copy);
      ids_++;
    }
    cv_.notify_all();
    if (!hold_host.empty() && action.host == hold_host) {
      net::steady_timer t(io_, std::chrono::hours(1));
      held_.push_back(&t);
      boost::system::error_code ec;
      co_await t.async_wait(net::redirect_error(net::use_awaitable, ec));
      held_.remove(&t);
    }
    auto j = decide(copy);
    if (j.request_id == "req-0") j.request_id = "req-" + std::to_string(ids_.load());
    co_return j;
  }

  // Thread-safe: lets every held judgement go.
  void release() {
    net::post(io_, [this] {
      for (auto* t : held_) t->cancel();
    });
  }
  std::vector<Action> actions() const {
    std::lock_guard lk(mu_);
    return actions_;
  }
  // Waits (for synchronisation, not as an assertion on time) until n actions were seen.
  bool wait_for_actions(size_t n) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, std::chrono::seconds(30), [&] { return actions_.size() >= n; });
  }

 private:
  net::io_context& io_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Action> actions_;
  std::atomic<int> ids_{0};
  std::list<net::steady_timer*> held_;
};

// A real HTTP/1.1 origin on loopback with its own io_context thread. Routes:
//   /hello           200 "hello from origin"
//   /headers         200 JSON {"target":..., "headers":{name: value}} of the request it got
//   /big/N           N bytes ('a'..'z' repeating), Content-Length, streamed
//   /chunked/N       N bytes, chunked
//   /eof/N           N bytes, no length, closes the connection
//   /sink (any body) 200 JSON {"bytes": n, "sum": s}: the body streamed, never stored
class Origin {
 public:
  explicit Origin(bool also_v6 = false) {
    listen(tcp::endpoint(net::ip::make_address("127.0.0.1"), 0), port_);
    if (also_v6) {
      boost::system::error_code ec;
      tcp::acceptor a(io_);
      a.open(tcp::v6(), ec);
      if (!ec) a.set_option(net::ip::v6_only(true), ec);
      if (!ec) a.bind(tcp::endpoint(net::ip::make_address("::1"), 0), ec);
      if (!ec) a.listen(64, ec);
      if (!ec) {
        port6_ = a.local_endpoint().port();
        acceptors_.push_back(std::move(a));
        net::co_spawn(io_, accept(acceptors_.size() - 1), net::detached);
      }
    }
    thread_ = std::thread([this] { io_.run(); });
  }
  ~Origin() {
    net::post(io_, [this] {
      for (auto& a : acceptors_) a.close();
      io_.stop();
    });
    thread_.join();
  }
  uint16_t port() const { return port_; }
  uint16_t port6() const { return port6_; }  // 0: no ::1 here
  int connections() const { return connections_.load(); }
  int requests() const { return requests_.load(); }

 private:
  void listen(tcp::endpoint ep, uint16_t& port) {
    tcp::acceptor a(io_, ep);
    port = a.local_endpoint().port();
    acceptors_.push_back(std::move(a));
    net::co_spawn(io_, accept(acceptors_.size() - 1), net::detached);
  }
  net::awaitable<void> accept(size_t i) {
    for (;;) {
      boost::system::error_code ec;
      auto s = co_await acceptors_[i].async_accept(net::redirect_error(net::use_awaitable, ec));
      if (ec) co_return;
      connections_++;
      net::co_spawn(io_, serve(std::move(s)), net::detached);
    }
  }
  static std::string pattern(size_t off, size_t n) {
    std::string s(n, 'a');
    for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (off + i) % 26);
    return s;
  }
  net::awaitable<void> serve(tcp::socket s) {
    beast::tcp_stream stream(std::move(s));
    beast::flat_buffer buf;
    boost::system::error_code ec;
    auto tok = net::redirect_error(net::use_awaitable, ec);
    for (;;) {
      http::request_parser<http::buffer_body> p;
      p.body_limit(std::numeric_limits<std::uint64_t>::max());
      co_await http::async_read_header(stream, buf, p, tok);
      if (ec) co_return;
      requests_++;
      std::string target(p.get().target());
      // Stream the body (if any) counting bytes.
      uint64_t bytes = 0, sum = 0;
      std::vector<char> chunk(64 * 1024);
      while (!p.is_done()) {
        p.get().body().data = chunk.data();
        p.get().body().size = chunk.size();
        co_await http::async_read(stream, buf, p, tok);
        if (ec == http::error::need_buffer) ec = {};
        if (ec) co_return;
        size_t got = chunk.size() - p.get().body().size;
        for (size_t i = 0; i < got; ++i) sum += static_cast<unsigned char>(chunk[i]);
        bytes += got;
      }
      bool keep = p.get().keep_alive();
      if (target.rfind("/big/", 0) == 0 || target.rfind("/chunked/", 0) == 0 ||
          target.rfind("/eof/", 0) == 0) {
        size_t n = std::stoull(target.substr(target.rfind('/') + 1));
        http::response<http::buffer_body> res{http::status::ok, 11};
        res.set(http::field::content_type, "application/octet-stream");
        bool eof = target.rfind("/eof/", 0) == 0;
        if (target.rfind("/chunked/", 0) == 0) {
          res.chunked(true);
        } else if (!eof) {
          res.content_length(n);
        }
        if (eof) {
          keep = false;
          res.set(http::field::connection, "close");
        }
        http::response_serializer<http::buffer_body> sr{res};
        co_await http::async_write_header(stream, sr, tok);
        if (ec) co_return;
        if (p.get().method() == http::verb::head) continue;
        for (size_t off = 0; off < n || !sr.is_done();) {
          std::string piece = pattern(off, std::min<size_t>(64 * 1024, n - off));
          off += piece.size();
          res.body().data = piece.empty() ? nullptr : piece.data();
          res.body().size = piece.size();
          res.body().more = off < n;
          co_await http::async_write(stream, sr, tok);
          if (ec == http::error::need_buffer) ec = {};
          if (ec) co_return;
          if (piece.empty()) break;
        }
        if (eof) {
          stream.socket().shutdown(tcp::socket::shutdown_send, ec);
          co_return;
        }
      } else {
        http::response<http::string_body> res{http::status::ok, 11};
        if (target.rfind("/hello", 0) == 0) {
          res.body() = "hello from origin";
        } else if (target.rfind("/headers", 0) == 0) {
          nlohmann::json h = nlohmann::json::object();
          for (const auto& f : p.get()) h[std::string(f.name_string())] = std::string(f.value());
          res.body() = nlohmann::json{{"target", target}, {"headers", h}}.dump();
        } else if (target == "/sink") {
          res.body() = nlohmann::json{{"bytes", bytes}, {"sum", sum}}.dump();
        } else {
          res.result(http::status::not_found);
          res.body() = "no route " + target;
        }
        res.keep_alive(keep);
        res.prepare_payload();
        co_await http::async_write(stream, res, tok);
        if (ec) co_return;
      }
      if (!keep) co_return;
    }
  }

  net::io_context io_;
  std::vector<tcp::acceptor> acceptors_;
  uint16_t port_ = 0, port6_ = 0;
  std::atomic<int> connections_{0}, requests_{0};
  std::thread thread_;
};

// Output and exit status of a shell command.
struct CommandResult {
  int status = -1;
  std::string out;
};
inline CommandResult run_command(const std::string& cmd) {
  CommandResult r;
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) return r;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) r.out.append(buf, n);
  int st = pclose(f);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

// A blocking client socket with a safety receive timeout (so a broken proxy fails the test
// instead of hanging it).
class RawClient {
 public:
  explicit RawClient(uint16_t port, const char* addr = "127.0.0.1") : sock_(io_) {
    sock_.connect(tcp::endpoint(net::ip::make_address(addr), port));
    timeval tv{30, 0};
    ::setsockopt(sock_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  void send(const std::string& s) { net::write(sock_, net::buffer(s)); }
  // Reads one response (header + body by Content-Length / chunked / EOF).
  std::optional<http::response<http::string_body>> read_response(bool head = false) {
    http::response_parser<http::string_body> p;
    p.body_limit(std::numeric_limits<std::uint64_t>::max());
    p.skip(head);
    boost::system::error_code ec;
    http::read(sock_, buf_, p, ec);
    if (ec) return std::nullopt;
    return p.release();
  }
  // Everything until the peer closes.
  std::string read_all() {
    std::string out(static_cast<const char*>(buf_.data().data()), buf_.size());
    buf_.consume(buf_.size());
    char tmp[4096];
    for (;;) {
      ssize_t n = ::recv(sock_.native_handle(), tmp, sizeof(tmp), 0);
      if (n <= 0) break;
      out.append(tmp, static_cast<size_t>(n));
    }
    return out;
  }
  tcp::socket& socket() { return sock_; }

 private:
  net::io_context io_;
  tcp::socket sock_;
  beast::flat_buffer buf_;
};

}  // namespace acp::proxy::testing
