// CONNECT tunnel bulk throughput, tunnel setup rate and plain-HTTP keep-alive request rate
// through acp::proxy::ProxyServer, against the same traffic sent directly and (when
// installed: see bench/README-proxy.md) through haproxy's TCP relay and tinyproxy, in one
// run on loopback. Reported as ratios. Usage:
//   proxy_throughput_bench [--mib=N] [--rounds=N] [--setups=N] [--requests=N]
#include <utility>  // before boost/asio/awaitable.hpp (Boost 1.74)

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio.hpp>

#include "acp/proxy/proxy_server.hpp"

namespace net = boost::asio;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

struct AllowAll : acp::RequestJudge {
  net::awaitable<acp::Judgement> judge(acp::Action) override {
    co_return acp::Judgement{true, "bench", "", true};
  }
};

const auto kLoopback = net::ip::make_address("127.0.0.1");

// Blocking servers, one thread per connection: the bulk source writes `bytes` and closes;
// the HTTP origin answers every request with a 2-byte body, keep-alive.
class Servers {
 public:
  explicit Servers(uint64_t bytes)
      : bytes_(bytes),
        bulk_(io_, tcp::endpoint(kLoopback, 0)),
        http_(io_, tcp::endpoint(kLoopback, 0)) {
    threads_.emplace_back([this] { accept(bulk_, true); });
    threads_.emplace_back([this] { accept(http_, false); });
  }
  ~Servers() {
    ::shutdown(bulk_.native_handle(), SHUT_RDWR);
    ::shutdown(http_.native_handle(), SHUT_RDWR);
    for (auto& t : threads_) t.join();
  }
  uint16_t bulk_port() const { return bulk_.local_endpoint().port(); }
  uint16_t http_port() const { return http_.local_endpoint().port(); }

 private:
  void accept(tcp::acceptor& a, bool bulk) {
    for (;;) {
      boost::system::error_code ec;
      tcp::socket s(io_);
      a.accept(s, ec);
      if (ec) return;
      std::thread([this, bulk, s = std::move(s)]() mutable {
        bulk ? serve_bulk(s) : serve_http(s);
      }).detach();
    }
  }
  void serve_bulk(tcp::socket& s) {
    std::vector<char> buf(256 * 1024, 'x');
    boost::system::error_code ec;
    for (uint64_t left = bytes_; left > 0 && !ec;) {
      size_t n = std::min<uint64_t>(left, buf.size());
      net::write(s, net::buffer(buf.data(), n), ec);
      left -= n;
    }
    s.shutdown(tcp::socket::shutdown_send, ec);
    char c;
    s.read_some(net::buffer(&c, 1), ec);  // until the peer closes
  }
  static void serve_http(tcp::socket& s) {
    s.set_option(tcp::no_delay(true));
    std::string in;
    char buf[8192];
    static const std::string kResponse = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    for (;;) {
      boost::system::error_code ec;
      size_t n = s.read_some(net::buffer(buf), ec);
      if (ec) return;
      in.append(buf, n);
      for (size_t end; (end = in.find("\r\n\r\n")) != std::string::npos;) {
        bool close = in.find("Connection: close") < end;
        in.erase(0, end + 4);
        net::write(s, net::buffer(kResponse), ec);
        if (ec || close) return;
      }
    }
  }
  uint64_t bytes_;
  net::io_context io_;
  tcp::acceptor bulk_, http_;
  std::vector<std::thread> threads_;
};

// Reads up to and including the end of a header; returns the header.
std::string read_head(tcp::socket& s, std::string& rest) {
  char buf[4096];
  std::string in;
  for (;;) {
    size_t n = s.read_some(net::buffer(buf));
    in.append(buf, n);
    if (auto end = in.find("\r\n\r\n"); end != std::string::npos) {
      rest = in.substr(end + 4);
      return in.substr(0, end + 4);
    }
  }
}

// `early`: bytes that arrived right behind the CONNECT reply.
tcp::socket open(net::io_context& io, uint16_t port, std::optional<uint16_t> connect_to,
                 size_t* early = nullptr) {
  tcp::socket s(io);
  s.connect(tcp::endpoint(kLoopback, port));
  s.set_option(tcp::no_delay(true));
  if (connect_to) {
    std::string t = "127.0.0.1:" + std::to_string(*connect_to);
    net::write(s, net::buffer("CONNECT " + t + " HTTP/1.1\r\nHost: " + t + "\r\n\r\n"));
    std::string rest;
    auto head = read_head(s, rest);
    if (head.find(" 200") == std::string::npos) throw std::runtime_error("CONNECT: " + head);
    if (early) *early = rest.size();
  }
  return s;
}

// MB/s reading the bulk source to the end, through `port` (CONNECT when connect_to).
double bulk_mbps(uint16_t port, std::optional<uint16_t> connect_to, uint64_t bytes) {
  net::io_context io;
  auto start = Clock::now();
  size_t early = 0;
  auto s = open(io, port, connect_to, &early);
  std::vector<char> buf(256 * 1024);
  uint64_t got = early;
  boost::system::error_code ec;
  while (!ec) got += s.read_some(net::buffer(buf), ec);
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  if (got != bytes) throw std::runtime_error("short bulk read: " + std::to_string(got));
  return static_cast<double>(got) / 1e6 / secs;
}

// Connections per second: connect (+ CONNECT), one request with Connection: close, EOF.
double setup_rate(uint16_t port, std::optional<uint16_t> connect_to, int n) {
  net::io_context io;
  auto start = Clock::now();
  char buf[4096];
  for (int i = 0; i < n; ++i) {
    auto s = open(io, port, connect_to);
    net::write(s,
               net::buffer(std::string("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")));
    boost::system::error_code ec;
    while (!ec) s.read_some(net::buffer(buf), ec);
  }
  return n / std::chrono::duration<double>(Clock::now() - start).count();
}

// Requests per second on one kept-alive connection; absolute-form when through a proxy.
double keepalive_rate(uint16_t port, const std::string& target, int n) {
  net::io_context io;
  auto s = open(io, port, std::nullopt);
  const std::string req = "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  std::string rest;
  auto start = Clock::now();
  for (int i = 0; i < n; ++i) {
    net::write(s, net::buffer(req));
    // Response: header then a 2-byte body.
    std::string head;
    if (rest.find("\r\n\r\n") != std::string::npos) {
      auto end = rest.find("\r\n\r\n");
      head = rest.substr(0, end + 4);
      rest.erase(0, end + 4);
    } else {
      std::string more;
      head = rest + read_head(s, more);
      rest = more;
    }
    if (head.find(" 200") == std::string::npos) throw std::runtime_error("status: " + head);
    while (rest.size() < 2) {
      char b[64];
      size_t k = s.read_some(net::buffer(b));
      rest.append(b, k);
    }
    rest.erase(0, 2);
  }
  return n / std::chrono::duration<double>(Clock::now() - start).count();
}

uint16_t free_port() {
  net::io_context io;
  tcp::acceptor a(io, tcp::endpoint(kLoopback, 0));
  return a.local_endpoint().port();
}

bool wait_listening(uint16_t port) {
  for (int i = 0; i < 200; ++i) {
    net::io_context io;
    tcp::socket s(io);
    boost::system::error_code ec;
    s.connect(tcp::endpoint(kLoopback, port), ec);
    if (!ec) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  return false;
}

// A peer proxy run as a child process from a config file; killed on destruction.
class Peer {
 public:
  Peer(const std::string& name, std::vector<std::string> argv, const std::string& config,
       const std::string& path, uint16_t port)
      : name_(name), port_(port) {
    std::ofstream(path) << config;
    pid_ = fork();
    if (pid_ == 0) {
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      freopen("/dev/null", "w", stdout);
      freopen("/dev/null", "w", stderr);
      execvp(args[0], args.data());
      _exit(127);
    }
    ok_ = pid_ > 0 && wait_listening(port);
  }
  ~Peer() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
  }
  bool ok() const { return ok_; }
  uint16_t port() const { return port_; }

 private:
  std::string name_;
  uint16_t port_;
  pid_t pid_ = -1;
  bool ok_ = false;
};

bool have(const char* tool) {
  return std::system((std::string("command -v ") + tool + " >/dev/null 2>&1").c_str()) == 0;
}

double best_of(int rounds, const std::function<double()>& f) {
  double best = 0;
  for (int i = 0; i < rounds; ++i) best = std::max(best, f());
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t mib = 1024;
  int rounds = 3, setups = 2000, requests = 20000;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&](const char* k) { return std::stoll(a.substr(std::string(k).size())); };
    if (a.rfind("--mib=", 0) == 0) mib = val("--mib=");
    if (a.rfind("--rounds=", 0) == 0) rounds = static_cast<int>(val("--rounds="));
    if (a.rfind("--setups=", 0) == 0) setups = static_cast<int>(val("--setups="));
    if (a.rfind("--requests=", 0) == 0) requests = static_cast<int>(val("--requests="));
  }
  const uint64_t bytes = mib << 20;
  Servers servers(bytes);

  net::io_context io;
  AllowAll judge;
  acp::proxy::ProxyConfig cfg;
  cfg.listen = {tcp::endpoint(kLoopback, 0)};
  acp::proxy::ProxyServer proxy(io, cfg, judge);
  if (auto st = proxy.start(); !st) {
    std::fprintf(stderr, "proxy: %s\n", st.error().message().c_str());
    return 1;
  }
  const uint16_t pport = proxy.local_endpoints()[0].port();
  std::thread proxy_thread([&] { io.run(); });

  char tmpl[] = "/tmp/acp-proxy-bench-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::optional<Peer> haproxy, tinyproxy;
  if (have("haproxy")) {
    uint16_t p = free_port();
    haproxy.emplace("haproxy", std::vector<std::string>{"haproxy", "-db", "-f", dir + "/h.cfg"},
                    "global\n  nbthread 1\ndefaults\n  mode tcp\n  timeout connect 5s\n"
                    "  timeout client 60s\n  timeout server 60s\nlisten relay\n  bind 127.0.0.1:" +
                        std::to_string(p) +
                        "\n  server s1 127.0.0.1:" + std::to_string(servers.bulk_port()) + "\n",
                    dir + "/h.cfg", p);
  }
  if (have("tinyproxy")) {
    uint16_t p = free_port();
    tinyproxy.emplace("tinyproxy",
                      std::vector<std::string>{"tinyproxy", "-d", "-c", dir + "/t.conf"},
                      "Port " + std::to_string(p) +
                          "\nListen 127.0.0.1\nTimeout 60\nMaxClients 100\nAllow 127.0.0.1\n"
                          "LogLevel Critical\n",
                      dir + "/t.conf", p);
  }

  std::printf("# %llu MiB per bulk run, best of %d; %d setups; %d keep-alive requests\n",
              static_cast<unsigned long long>(mib), rounds, setups, requests);
  int rc = 0;
  try {  // a failed run still stops the peers below
    const uint16_t bulk = servers.bulk_port(), http = servers.http_port();
    double direct = best_of(rounds, [&] { return bulk_mbps(bulk, std::nullopt, bytes); });
    double acp = best_of(rounds, [&] { return bulk_mbps(pport, bulk, bytes); });
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    std::printf("bulk direct        %10.1f MB/s\n", direct);
    std::printf("bulk acp CONNECT   %10.1f MB/s  (%.2fx direct)\n", acp, acp / direct);
    if (haproxy && haproxy->ok()) {
      double h = best_of(rounds, [&] { return bulk_mbps(haproxy->port(), std::nullopt, bytes); });
      std::printf("bulk haproxy tcp   %10.1f MB/s  (acp/haproxy %.2fx)\n", h, acp / h);
    } else {
      std::printf("bulk haproxy tcp   not installed (apt-get install haproxy)\n");
    }
    if (tinyproxy && tinyproxy->ok()) {
      double t = best_of(rounds, [&] { return bulk_mbps(tinyproxy->port(), bulk, bytes); });
      std::printf("bulk tinyproxy     %10.1f MB/s  (acp/tinyproxy %.2fx)\n", t, acp / t);
    } else {
      std::printf("bulk tinyproxy     not installed (apt-get install tinyproxy)\n");
    }
    double sd = setup_rate(http, std::nullopt, setups);
    double sa = setup_rate(pport, http, setups);
    std::printf("setup direct       %10.0f conn/s\n", sd);
    std::printf("setup acp CONNECT  %10.0f conn/s  (%.2fx direct)\n", sa, sa / sd);
    double kd = keepalive_rate(http, "/", requests);
    double ka = keepalive_rate(pport, "http://127.0.0.1:" + std::to_string(http) + "/", requests);
    std::printf("keep-alive direct  %10.0f req/s\n", kd);
    std::printf("keep-alive acp     %10.0f req/s  (%.2fx direct)\n", ka, ka / kd);

  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench failed: %s\n", e.what());
    rc = 1;
  }
  haproxy.reset();
  tinyproxy.reset();
  std::remove((dir + "/h.cfg").c_str());
  std::remove((dir + "/t.conf").c_str());
  rmdir(dir.c_str());
  net::post(io, [&] {
    proxy.stop();
    io.stop();
  });
  proxy_thread.join();
  return rc;
}
