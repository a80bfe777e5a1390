// CONNECT tunnel bulk throughput, tunnel setup rate and p50/p99 latency, plain-HTTP keep-alive
// request rate, per-request decision overhead, user-space memory per idle tunnel and 10k idle
// tunnels held, through acp::proxy::ProxyServer (in its own process, pinned to one CPU),
// against the same traffic sent directly and (when installed: see bench/README.md)
// through haproxy's TCP relay, tinyproxy and squid, pinned to the same CPU, in one run on
// loopback. Usage:
//   proxy_throughput_bench [--mib=N] [--rounds=N] [--setups=N] [--requests=N] [--idle=N]
//                          [--idle-used] [--hold=N]
#include <utility>  // before boost/asio/awaitable.hpp (Boost 1.74)

#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio.hpp>

#include "acp/proxy/audit_log.hpp"
#include "acp/proxy/consent_gate.hpp"
#include "acp/proxy/consent_judge.hpp"
#include "acp/proxy/policy.hpp"
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

// The policy's decision and nothing else (no audit record): what a decided request costs
// over AllowAll.
struct PolicyOnly : acp::RequestJudge {
  explicit PolicyOnly(const acp::policy::Policy& p) : policy(p) {}
  net::awaitable<acp::Judgement> judge(acp::Action a) override {
    auto d = policy.decide(a);
    co_return acp::Judgement{d.verdict == acp::Verdict::Allow, "policy", "", true};
  }
  const acp::policy::Policy& policy;
};

constexpr const char* kBenchPolicy =
    "default: deny\nrules:\n  - match: { kind: http, host: \"127.0.0.1\" }\n    action: allow\n";

int g_proxy_cpu = 0, g_client_cpu = 1;

void pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof(set), &set);
}

// Raises RLIMIT_NOFILE to n, or as far as the hard limit allows without CAP_SYS_RESOURCE;
// returns the soft limit in force.
rlim_t raise_nofile(rlim_t n) {
  rlimit r{n, n};
  if (setrlimit(RLIMIT_NOFILE, &r) != 0 && getrlimit(RLIMIT_NOFILE, &r) == 0) {
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
  }
  getrlimit(RLIMIT_NOFILE, &r);
  return r.rlim_cur;
}

// VmRSS (status) and Pss (smaps_rollup) of a process, in kB.
std::pair<long, long> rss_pss_kb(pid_t pid) {
  long rss = -1, pss = -1;
  auto field = [](const std::string& path, const char* key) {
    std::ifstream f(path);
    std::string line;
    while (std::getline(f, line))
      if (line.rfind(key, 0) == 0) return std::atol(line.c_str() + std::string(key).size());
    return -1L;
  };
  rss = field("/proc/" + std::to_string(pid) + "/status", "VmRSS:");
  pss = field("/proc/" + std::to_string(pid) + "/smaps_rollup", "Pss:");
  return {rss, pss};
}

int fd_count(pid_t pid) {
  int n = 0;
  if (DIR* d = opendir(("/proc/" + std::to_string(pid) + "/fd").c_str())) {
    while (auto* e = readdir(d)) n += e->d_name[0] != '.';
    closedir(d);
  }
  return n;
}

const auto kLoopback = net::ip::make_address("127.0.0.1");

// Blocking servers, one thread per connection: the bulk source writes `bytes` and closes;
// the HTTP origin answers every request with a 2-byte body, keep-alive.
class Servers {
 public:
  explicit Servers(uint64_t bytes)
      : bytes_(bytes),
        bulk_(io_, tcp::endpoint(kLoopback, 0)),
        http_(io_, tcp::endpoint(kLoopback, 0)),
        idle_(io_, tcp::endpoint(kLoopback, 0)) {
    threads_.emplace_back([this] { accept(bulk_, true); });
    threads_.emplace_back([this] { accept(http_, false); });
    threads_.emplace_back([this] { accept_idle(); });
  }
  ~Servers() {
    ::shutdown(bulk_.native_handle(), SHUT_RDWR);
    ::shutdown(http_.native_handle(), SHUT_RDWR);
    ::shutdown(idle_.native_handle(), SHUT_RDWR);
    for (auto& t : threads_) t.join();
  }
  uint16_t bulk_port() const { return bulk_.local_endpoint().port(); }
  uint16_t http_port() const { return http_.local_endpoint().port(); }
  // An upstream that accepts and holds connections without a thread each (idle tunnels).
  uint16_t idle_port() const { return idle_.local_endpoint().port(); }
  size_t idle_held() {
    std::lock_guard lock(mu_);
    return held_.size();
  }
  void drop_idle() {
    std::lock_guard lock(mu_);
    held_.clear();
  }

 private:
  void accept_idle() {
    for (;;) {
      boost::system::error_code ec;
      tcp::socket s(io_);
      idle_.accept(s, ec);
      if (ec == net::error::no_descriptors) {  // should not happen: RLIMIT_NOFILE is raised
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        continue;
      }
      if (ec) return;
      std::lock_guard lock(mu_);
      held_.push_back(std::move(s));
    }
  }
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
  tcp::acceptor bulk_, http_, idle_;
  std::mutex mu_;
  std::vector<tcp::socket> held_;
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

// One request on a kept-alive connection: header then a 2-byte body. `rest`: bytes read past it.
void one_request(tcp::socket& s, const std::string& req, std::string& rest) {
  net::write(s, net::buffer(req));
  std::string head;
  if (auto end = rest.find("\r\n\r\n"); end != std::string::npos) {
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

double us_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

// Requests per second on one kept-alive connection; absolute-form when through a proxy.
// `lat`: when given, each request's round trip in microseconds.
double keepalive_rate(uint16_t port, const std::string& target, int n,
                      std::vector<double>* lat = nullptr) {
  net::io_context io;
  auto s = open(io, port, std::nullopt);
  const std::string req = "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  std::string rest;
  auto start = Clock::now();
  for (int i = 0; i < n; ++i) {
    auto t0 = Clock::now();
    one_request(s, req, rest);
    if (lat) lat->push_back(us_since(t0));
  }
  return n / std::chrono::duration<double>(Clock::now() - start).count();
}

// Per-request round trips (us) on one kept-alive connection per (port, target), taking turns
// request by request so that load on the machine falls on all of them alike.
std::vector<std::vector<double>> interleaved_latencies(
    const std::vector<std::pair<uint16_t, std::string>>& targets, int n) {
  net::io_context io;
  std::vector<tcp::socket> socks;
  std::vector<std::string> reqs, rests(targets.size());
  for (const auto& [port, target] : targets) {
    socks.push_back(open(io, port, std::nullopt));
    reqs.push_back("GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  }
  std::vector<std::vector<double>> out(targets.size());
  for (int i = 0; i < n; ++i)
    for (size_t k = 0; k < socks.size(); ++k) {
      auto t0 = Clock::now();
      one_request(socks[k], reqs[k], rests[k]);
      out[k].push_back(us_since(t0));
    }
  return out;
}

// Tunnel setup latencies in microseconds: connect, CONNECT, 200 received (then closed). Without
// connect_to (direct, haproxy's relay): connect, one Connection: close request, 200 received.
std::vector<double> setup_latencies(uint16_t port, std::optional<uint16_t> connect_to, int n) {
  net::io_context io;
  std::vector<double> out;
  for (int i = 0; i < n; ++i) {
    auto t0 = Clock::now();
    auto s = open(io, port, connect_to);
    if (!connect_to) {
      net::write(
          s, net::buffer(std::string("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")));
      std::string rest;
      if (read_head(s, rest).find(" 200") == std::string::npos) throw std::runtime_error("GET");
    }
    out.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  return out;
}

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
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
      pin_to(g_proxy_cpu);  // like `taskset -c`, inherited by every thread it starts
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
  pid_t pid() const { return pid_; }

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

// CPU time (user + system, all threads) the process has used so far, in seconds.
double cpu_seconds(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto close_paren = stat.rfind(')');
  if (close_paren == std::string::npos) return 0;
  std::istringstream rest(stat.substr(close_paren + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {  // fields 14 and 15: utime, stime
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// Runs `rounds` bulk reads through a relay process and returns the best MB/s, with the relay's
// CPU seconds per GiB moved (all rounds) in `cpu_per_gib`.
template <class F>
double bulk_with_cpu(int rounds, pid_t relay, uint64_t bytes, double& cpu_per_gib, F&& f) {
  const double before = cpu_seconds(relay);
  const double best = best_of(rounds, f);
  const double gib = static_cast<double>(bytes) * rounds / (1024.0 * 1024 * 1024);
  cpu_per_gib = (cpu_seconds(relay) - before) / gib;
  return best;
}

// The ACP proxy under test, in its own process pinned to the proxy CPU: three ProxyServers on
// one io_context thread, with AllowAll, PolicyOnly and the real ConsentJudge (policy + audit
// record written and fdatasync'ed, as `acp run` does). Writes their three ports to `out`.
[[noreturn]] void acp_child(int out, const std::string& audit_path) {
  pin_to(g_proxy_cpu);
  net::io_context io;
  auto policy = acp::policy::Policy::parse(kBenchPolicy, "bench.yml");
  auto audit = acp::audit::AuditLog::open(audit_path);
  if (!policy || !audit) _exit(2);
  AllowAll allow;
  PolicyOnly policy_only(*policy);
  acp::consent::ConsentGate gate(
      io, acp::consent::GateConfig{.session_id = "bench", .grants_path = ""});
  acp::consent::ConsentJudge consent([&](const acp::Action& a) { return policy->decide(a); }, gate,
                                     **audit, "bench");
  acp::proxy::ProxyConfig cfg;
  cfg.listen = {tcp::endpoint(kLoopback, 0)};
  cfg.session_id = "bench";
  cfg.limits.max_connections = 30000;  // default 4096: the 10k idle tunnel step needs more
  acp::proxy::ProxyServer a(io, cfg, allow), b(io, cfg, policy_only), c(io, cfg, consent);
  uint16_t ports[3];
  int k = 0;
  for (auto* server : {&a, &b, &c}) {
    if (!server->start()) _exit(3);
    ports[k++] = server->local_endpoints()[0].port();
  }
  if (write(out, ports, sizeof(ports)) != sizeof(ports)) _exit(4);
  close(out);
  io.run();
  _exit(0);
}

struct Held {
  size_t established = 0;
  long rss_before = 0, rss_after = 0, pss_before = 0, pss_after = 0;  // kB
  int fds_before = 0, fds_held = 0, fds_after = 0;
  double probe_us = -1;  // a new tunnel + a request through it while the others are held
};

// Opens n idle tunnels through `port` to the idle sink (CONNECT unless `relay`), measures the
// proxy process `pid`, probes it with a new request, closes everything and waits for its fds to
// go back to the baseline. `used`: each tunnel carries one byte from the client first, one that
// makes it a raw tunnel (a tunnel that has been used and then idles; the sink holds the byte
// unread), else nobody ever speaks.
Held hold_idle(Servers& servers, pid_t pid, uint16_t port, bool relay, int n,
               std::optional<uint16_t> probe_connect_to, bool used = false) {
  Held h;
  servers.drop_idle();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  h.fds_before = fd_count(pid);
  std::tie(h.rss_before, h.pss_before) = rss_pss_kb(pid);
  net::io_context io;
  std::vector<tcp::socket> socks;
  socks.reserve(n);
  for (int i = 0; i < n; ++i)
    socks.push_back(open(io, port, relay ? std::nullopt : std::optional(servers.idle_port())));
  for (int i = 0; i < 500 && servers.idle_held() < static_cast<size_t>(n); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  h.established = servers.idle_held();
  if (used)
    for (auto& s : socks) net::write(s, net::buffer("\x01", 1));  // no HTTP, no TLS: raw
  std::this_thread::sleep_for(std::chrono::milliseconds(used ? 1000 : 300));
  h.fds_held = fd_count(pid);
  std::tie(h.rss_after, h.pss_after) = rss_pss_kb(pid);
  if (probe_connect_to) {  // connect, CONNECT, 200, then a GET through the tunnel, its 200
    auto t0 = Clock::now();
    auto s = open(io, port, probe_connect_to);
    std::string rest;
    one_request(s, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", rest);
    h.probe_us = us_since(t0);
  }
  socks.clear();
  servers.drop_idle();
  for (int i = 0; i < 500 && fd_count(pid) > h.fds_before; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  h.fds_after = fd_count(pid);
  return h;
}

void print_held(const char* name, int n, const Held& h) {
  std::printf(
      "idle %-9s %6d tunnels: %zu established; VmRSS %ld -> %ld kB (%.0f B/tunnel), Pss %ld -> "
      "%ld kB (%.0f B/tunnel); fds %d -> %d -> %d",
      name, n, h.established, h.rss_before, h.rss_after, (h.rss_after - h.rss_before) * 1024.0 / n,
      h.pss_before, h.pss_after, (h.pss_after - h.pss_before) * 1024.0 / n, h.fds_before,
      h.fds_held, h.fds_after);
  if (h.probe_us >= 0) std::printf("; new tunnel meanwhile %.0f us", h.probe_us);
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t mib = 1024;
  int rounds = 3, setups = 2000, requests = 20000, idle = 1000, hold = 10000;
  bool idle_used = false;  // the idle step's tunnels carry a byte first (hold_idle's `used`)
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&](const char* k) { return std::stoll(a.substr(std::string(k).size())); };
    if (a.rfind("--mib=", 0) == 0) mib = val("--mib=");
    if (a.rfind("--rounds=", 0) == 0) rounds = static_cast<int>(val("--rounds="));
    if (a.rfind("--setups=", 0) == 0) setups = static_cast<int>(val("--setups="));
    if (a.rfind("--requests=", 0) == 0) requests = static_cast<int>(val("--requests="));
    if (a.rfind("--idle=", 0) == 0) idle = static_cast<int>(val("--idle="));
    if (a.rfind("--hold=", 0) == 0) hold = static_cast<int>(val("--hold="));
    if (a == "--idle-used") idle_used = true;
  }
  if (std::thread::hardware_concurrency() < 2) g_client_cpu = 0;
  // Inherited by the proxies started below. Each held tunnel costs two fds in the proxy (client
  // and upstream) and two here (client end and the idle sink's end).
  const rlim_t nofile = raise_nofile(std::max(65536, 2 * hold + 1024));
  const int hold_asked = hold;
  hold = std::min<int>(hold, static_cast<int>((nofile - 200) / 2));
  std::setvbuf(stdout, nullptr, _IOLBF, 0);

  char tmpl[] = "/tmp/acp-proxy-bench-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  // The ACP proxy process first: fork before this process starts threads.
  int pipefd[2];
  if (pipe(pipefd) != 0) return 1;
  pid_t acp_pid = fork();
  if (acp_pid == 0) {
    close(pipefd[0]);
    acp_child(pipefd[1], dir + "/audit.jsonl");
  }
  close(pipefd[1]);
  uint16_t ports[3] = {0, 0, 0};
  if (read(pipefd[0], ports, sizeof(ports)) != sizeof(ports)) {
    std::fprintf(stderr, "acp proxy process failed to start\n");
    return 1;
  }
  close(pipefd[0]);
  const uint16_t pport = ports[0], policy_port = ports[1], consent_port = ports[2];
  pin_to(g_client_cpu);  // the client, the sources and the origin: the other CPU

  const uint64_t bytes = mib << 20;
  Servers servers(bytes);
  std::optional<Peer> haproxy, tinyproxy, squid;
  uint16_t h_bulk = 0, h_http = 0, h_idle = 0;
  if (have("haproxy")) {
    h_bulk = free_port();
    h_http = free_port();
    h_idle = free_port();
    auto listen = [](const char* name, uint16_t from, uint16_t to) {
      return std::string("listen ") + name + "\n  bind 127.0.0.1:" + std::to_string(from) +
             "\n  server s1 127.0.0.1:" + std::to_string(to) + "\n";
    };
    haproxy.emplace("haproxy", std::vector<std::string>{"haproxy", "-db", "-f", dir + "/h.cfg"},
                    "global\n  nbthread 1\n  maxconn 9000\ndefaults\n  mode tcp\n"
                    "  maxconn 9000\n  timeout connect 5s\n  timeout client 600s\n"
                    "  timeout server 600s\n" +
                        listen("relay", h_bulk, servers.bulk_port()) +
                        listen("web", h_http, servers.http_port()) +
                        listen("idle", h_idle, servers.idle_port()),
                    dir + "/h.cfg", h_bulk);
  }
  if (have("tinyproxy")) {
    uint16_t p = free_port();
    tinyproxy.emplace("tinyproxy",
                      std::vector<std::string>{"tinyproxy", "-d", "-c", dir + "/t.conf"},
                      "Port " + std::to_string(p) +
                          "\nListen 127.0.0.1\nTimeout 600\nMaxClients 4000\nAllow 127.0.0.1\n"
                          "LogLevel Critical\n",
                      dir + "/t.conf", p);
  }
  if (have("squid")) {
    uint16_t p = free_port();
    squid.emplace("squid", std::vector<std::string>{"squid", "-N", "-f", dir + "/s.conf"},
                  "http_port 127.0.0.1:" + std::to_string(p) +
                      "\nworkers 1\ncache deny all\ncache_mem 0 MB\n"
                      "acl bench_local src 127.0.0.1/32\nhttp_access allow bench_local\n"
                      "http_access deny all\naccess_log none\ncache_log /dev/null\n"
                      "pid_filename none\nshutdown_lifetime 0 seconds\n"
                      "max_filedescriptors 65536\nclient_persistent_connections on\n"
                      "server_persistent_connections on\nread_timeout 10 minutes\n"
                      "client_lifetime 1 hour\n",
                  dir + "/s.conf", p);
  }
  auto up = [](std::optional<Peer>& p) { return p && p->ok(); };

  std::printf("# proxies pinned to CPU %d, client/sources on CPU %d; RLIMIT_NOFILE %llu\n",
              g_proxy_cpu, g_client_cpu, static_cast<unsigned long long>(nofile));
  if (hold < hold_asked)
    std::printf("# --hold=%d needs %d fds per process; the hard RLIMIT_NOFILE allows %d tunnels\n",
                hold_asked, 2 * hold_asked + 200, hold);
  std::printf("# %llu MiB per bulk run, best of %d; %d setups; %d keep-alive requests\n",
              static_cast<unsigned long long>(mib), rounds, setups, requests);
  const std::pair<const char*, std::optional<Peer>*> peers[] = {
      {"haproxy", &haproxy}, {"tinyproxy", &tinyproxy}, {"squid", &squid}};
  for (const auto& [name, p] : peers)
    if (!up(*p)) std::printf("# %s not running (apt-get install %s)\n", name, name);
  int rc = 0;
  try {  // a failed run still stops the peers below
    const uint16_t bulk = servers.bulk_port(), http = servers.http_port();
    const std::string abs = "http://127.0.0.1:" + std::to_string(http) + "/";

    // Bulk.
    // Beside MB/s, the relay's own CPU per GiB: the bench's client and source share one CPU,
    // which can cap every relay at the same rate while one relay spends less to get there.
    double direct = best_of(rounds, [&] { return bulk_mbps(bulk, std::nullopt, bytes); });
    double acp_cpu = 0;
    double acp = bulk_with_cpu(rounds, acp_pid, bytes, acp_cpu,
                               [&] { return bulk_mbps(pport, bulk, bytes); });
    std::printf("bulk direct        %10.1f MB/s\n", direct);
    std::printf("bulk acp CONNECT   %10.1f MB/s  (%.2fx direct; relay CPU %.3f s/GiB)\n", acp,
                acp / direct, acp_cpu);
    if (up(haproxy)) {
      double h_cpu = 0;
      double h = bulk_with_cpu(rounds, haproxy->pid(), bytes, h_cpu,
                               [&] { return bulk_mbps(h_bulk, std::nullopt, bytes); });
      std::printf(
          "bulk haproxy tcp   %10.1f MB/s  (acp/haproxy %.2fx; relay CPU %.3f s/GiB, acp/haproxy "
          "%.2fx)\n",
          h, acp / h, h_cpu, acp_cpu / h_cpu);
    }
    if (up(tinyproxy)) {
      double t = best_of(rounds, [&] { return bulk_mbps(tinyproxy->port(), bulk, bytes); });
      std::printf("bulk tinyproxy     %10.1f MB/s  (acp/tinyproxy %.2fx)\n", t, acp / t);
    }
    if (up(squid)) {
      double t = best_of(rounds, [&] { return bulk_mbps(squid->port(), bulk, bytes); });
      std::printf("bulk squid         %10.1f MB/s  (acp/squid %.2fx)\n", t, acp / t);
    }

    // Setup rate.
    double sd = setup_rate(http, std::nullopt, setups);
    double sa = setup_rate(pport, http, setups);
    std::printf("setup direct       %10.0f conn/s\n", sd);
    std::printf("setup acp CONNECT  %10.0f conn/s  (%.2fx direct)\n", sa, sa / sd);
    if (up(haproxy)) {
      double x = setup_rate(h_http, std::nullopt, setups);
      std::printf("setup haproxy tcp  %10.0f conn/s  (acp/haproxy %.2fx)\n", x, sa / x);
    }
    if (up(tinyproxy)) {
      double x = setup_rate(tinyproxy->port(), http, setups);
      std::printf("setup tinyproxy    %10.0f conn/s  (acp/tinyproxy %.2fx)\n", x, sa / x);
    }
    if (up(squid)) {
      double x = setup_rate(squid->port(), http, setups);
      std::printf("setup squid        %10.0f conn/s  (acp/squid %.2fx)\n", x, sa / x);
    }

    // Setup latency.
    auto lat_row = [](const char* name, const std::vector<double>& l) {
      std::printf("setup latency %-10s p50 %7.1f us  p99 %7.1f us\n", name, pct(l, 0.5),
                  pct(l, 0.99));
    };
    lat_row("direct", setup_latencies(http, std::nullopt, setups));
    lat_row("acp", setup_latencies(pport, http, setups));
    if (up(haproxy)) lat_row("haproxy", setup_latencies(h_http, std::nullopt, setups));
    if (up(tinyproxy)) lat_row("tinyproxy", setup_latencies(tinyproxy->port(), http, setups));
    if (up(squid)) lat_row("squid", setup_latencies(squid->port(), http, setups));

    // Keep-alive.
    std::vector<double> lc;
    double kd = keepalive_rate(http, "/", requests);
    double ka = keepalive_rate(pport, abs, requests);
    std::printf("keep-alive direct  %10.0f req/s\n", kd);
    std::printf("keep-alive acp     %10.0f req/s  (%.2fx direct)\n", ka, ka / kd);
    if (up(haproxy)) {
      double x = keepalive_rate(h_http, "/", requests);
      std::printf("keep-alive haproxy %10.0f req/s  (acp/haproxy %.2fx; tcp relay)\n", x, ka / x);
    }
    if (up(tinyproxy)) {
      try {
        double x = keepalive_rate(tinyproxy->port(), abs, requests);
        std::printf("keep-alive tinyproxy %8.0f req/s  (acp/tinyproxy %.2fx)\n", x, ka / x);
      } catch (const std::exception& e) {
        std::printf("keep-alive tinyproxy  n/a: %s (it closes the client connection)\n", e.what());
      }
    }
    if (up(squid)) {
      double x = keepalive_rate(squid->port(), abs, requests);
      std::printf("keep-alive squid   %10.0f req/s  (acp/squid %.2fx)\n", x, ka / x);
    }

    // Decision overhead: per-request round trips, one kept-alive connection each, interleaved.
    auto lat = interleaved_latencies({{http, "/"}, {pport, abs}, {policy_port, abs}}, requests);
    keepalive_rate(consent_port, abs, std::min(requests, 2000), &lc);
    double d50 = pct(lat[0], 0.5), a50 = pct(lat[1], 0.5), p50 = pct(lat[2], 0.5),
           c50 = pct(lc, 0.5);
    std::printf("request p50 direct                 %7.1f us\n", d50);
    std::printf("request p50 acp allow-all judge    %7.1f us  (+%.1f us over direct)\n", a50,
                a50 - d50);
    std::printf(
        "request p50 acp policy allow       %7.1f us  (+%.1f us over direct, %+.1f us "
        "over allow-all)\n",
        p50, p50 - d50, p50 - a50);
    std::printf(
        "request p50 acp policy + audit     %7.1f us  (+%.1f us over direct, %+.1f us "
        "over allow-all; p99 %.1f us)\n",
        c50, c50 - d50, c50 - a50, pct(lc, 0.99));

    // Memory per idle tunnel: nobody spoke yet, or (--idle-used) after one byte went through.
    // One kind per run: a second step would reuse the heap the first one freed.
    if (idle > 0)
      print_held(idle_used ? "acp used" : "acp", idle,
                 hold_idle(servers, acp_pid, pport, false, idle, std::nullopt, idle_used));
    if (idle > 0 && up(haproxy))
      print_held("haproxy", idle,
                 hold_idle(servers, haproxy->pid(), h_idle, true, idle, std::nullopt));
    if (idle > 0 && up(tinyproxy))
      print_held(
          "tinyproxy", idle,
          hold_idle(servers, tinyproxy->pid(), tinyproxy->port(), false, idle, std::nullopt));
    if (idle > 0 && up(squid))
      print_held("squid", idle,
                 hold_idle(servers, squid->pid(), squid->port(), false, idle, std::nullopt));

    // 10k held, with a new tunnel meanwhile.
    if (hold > 0) print_held("acp", hold, hold_idle(servers, acp_pid, pport, false, hold, http));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench failed: %s\n", e.what());
    rc = 1;
  }
  haproxy.reset();
  tinyproxy.reset();
  squid.reset();
  kill(acp_pid, SIGTERM);
  waitpid(acp_pid, nullptr, 0);
  for (const char* f : {"/h.cfg", "/t.conf", "/s.conf", "/audit.jsonl"})
    std::remove((dir + f).c_str());
  rmdir(dir.c_str());
  return rc;
}
