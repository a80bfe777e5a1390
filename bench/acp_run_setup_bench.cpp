// Tunnel setup and bulk throughput through the real `acp run` (bpf wall, allow policy, the
// audit log on, one fdatasync'ed decision per tunnel) against the same client talking to the
// origin directly and through the peers haproxy (TCP relay), tinyproxy and squid (CONNECT), in
// one run, reported as ratios. Two ways through acp: an explicit CONNECT to
// the proxy (HTTPS_PROXY), and the transparent door (the agent connects to the origin's
// address, the wall leads it to the proxy). The origin is a test host in a network namespace
// the bench makes (a veth pair, 198.51.100.0/30): the door leads nothing to loopback.
// Each tunnel: connect, (CONNECT, 200,) 64 bytes out, 64 bytes echoed back, close;
// `--clients` threads at once. Bulk: one connection reads `--mib` MiB from the origin.
// The peers run as private instances (temp configs, free loopback ports, the same origin),
// stopped at the end; a peer whose binary is missing is skipped with a message.
// Needs root (acp run, the namespace). Usage:
//   acp_run_setup_bench [--acp=PATH] [--tunnels=N] [--clients=N] [--rounds=N] [--mib=N]
//                       [--audit-dir=DIR]
// The agent side is this binary again: `acp_run_setup_bench --client=ADDR,PORT,N,C,MODE[,PROXY]`
// (MODE direct|proxy|door; PROXY: the CONNECT proxy's 127.0.0.1 port, else HTTP_PROXY's)
// prints "<tunnels/s> <p50 us> <p99 us> <failures>"; `--bulk=ADDR,PORT,MIB,MODE[,PROXY]`
// prints "<MB/s> 0 0 <failures>". The peers' clients are the same, run outside acp.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kEcho = 64;

int listen_on(const char* addr, uint16_t& port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  ::inet_pton(AF_INET, addr, &a.sin_addr);
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(fd, 1024) != 0 || ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    std::perror("acp_run_setup_bench: origin listener");
    std::exit(1);
  }
  port = ntohs(a.sin_port);
  return fd;
}

int connect_to(const std::string& addr, uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  ::inet_pton(AF_INET, addr.c_str(), &a.sin_addr);
  a.sin_port = htons(port);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool read_exactly(int fd, char* buf, size_t n) {
  for (size_t got = 0; got < n;) {
    ssize_t r = ::read(fd, buf + got, n - got);
    if (r <= 0) return false;
    got += static_cast<size_t>(r);
  }
  return true;
}

// Bulk source threads: each connection that sends its one-byte request gets `bytes` bytes, then
// the close (the client speaks first, as a download's request does: the door then judges at
// once instead of waiting for a server-speaks-first protocol).
void serve_bulk(int listen_fd, uint64_t bytes) {
  std::vector<char> buf(256 * 1024, '\x01');  // no HTTP, no TLS: a raw tunnel
  for (;;) {
    int c = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) return;
    char request;
    for (uint64_t left = ::read(c, &request, 1) == 1 ? bytes : 0; left > 0;) {
      ssize_t n = ::write(c, buf.data(), std::min<uint64_t>(left, buf.size()));
      if (n <= 0) break;
      left -= static_cast<uint64_t>(n);
    }
    ::close(c);
  }
}

// Echo server threads: each takes one connection at a time, echoes until EOF.
void serve_echo(int listen_fd) {
  for (;;) {
    int c = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) return;  // the listener was shut down
    char buf[4096];
    for (ssize_t n; (n = ::read(c, buf, sizeof buf)) > 0;)
      if (::write(c, buf, static_cast<size_t>(n)) != n) break;
    ::close(c);
  }
}

// The proxy port from HTTP_PROXY ("http://127.0.0.1:PORT"), as acp run sets it.
uint16_t proxy_port_from_env() {
  const char* p = std::getenv("HTTP_PROXY");
  const char* colon = p ? std::strrchr(p, ':') : nullptr;
  return colon ? static_cast<uint16_t>(std::atoi(colon + 1)) : 0;
}

enum class Way { Direct, Proxy, Door };

Way way_of(const char* mode) {
  if (std::strcmp(mode, "direct") == 0) return Way::Direct;
  return std::strcmp(mode, "door") == 0 ? Way::Door : Way::Proxy;
}

// A connection to addr:port: directly (the door, when acp leads it in), or through a CONNECT
// to the proxy. -1 when it failed.
int open_path(const std::string& addr, uint16_t port, Way way, uint16_t proxy_port) {
  if (way != Way::Proxy) return connect_to(addr, port);
  int fd = connect_to("127.0.0.1", proxy_port);
  if (fd < 0) return -1;
  std::string t = addr + ":" + std::to_string(port);
  std::string req = "CONNECT " + t + " HTTP/1.1\r\nHost: " + t + "\r\n\r\n";
  std::string head;
  char c;
  bool ok = ::write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size());
  while (ok && head.find("\r\n\r\n") == std::string::npos && head.size() < 4096)
    ok = ::read(fd, &c, 1) == 1 && (head.push_back(c), true);
  // "HTTP/1.0 200" from tinyproxy, "HTTP/1.1 200" from acp and squid.
  if (ok && head.rfind("HTTP/1.", 0) == 0 && head.compare(8, 5, " 200 ") == 0) return fd;
  ::close(fd);
  return -1;
}

// One tunnel; returns whether the echo came back.
bool one_tunnel(const std::string& addr, uint16_t port, Way way, uint16_t proxy_port) {
  int fd = open_path(addr, port, way, proxy_port);
  if (fd < 0) return false;
  // Binary bytes: the proxy sees at once that they are neither HTTP nor TLS (a run of token
  // characters could still become a request line, and it would wait for more).
  char out[kEcho], in[kEcho];
  std::memset(out, 0, sizeof out);
  bool ok = ::write(fd, out, sizeof out) == static_cast<ssize_t>(sizeof out) &&
            read_exactly(fd, in, sizeof in);
  ::close(fd);
  return ok;
}

double pct(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

// The agent side: `clients` threads share `tunnels` tunnels. proxy_port 0: HTTP_PROXY's.
int run_client(const std::string& addr, uint16_t port, int tunnels, int clients, Way way,
               uint16_t proxy_port) {
  if (way == Way::Proxy && proxy_port == 0) proxy_port = proxy_port_from_env();
  if (way == Way::Proxy && proxy_port == 0) {
    std::fprintf(stderr, "acp_run_setup_bench: no HTTP_PROXY in the agent's environment\n");
    return 2;
  }
  std::atomic<int> next{0}, failures{0};
  std::vector<std::vector<double>> lat(static_cast<size_t>(clients));
  auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c)
    threads.emplace_back([&, c] {
      while (next.fetch_add(1) < tunnels) {
        auto s = Clock::now();
        if (!one_tunnel(addr, port, way, proxy_port)) ++failures;
        lat[static_cast<size_t>(c)].push_back(
            std::chrono::duration<double, std::micro>(Clock::now() - s).count());
      }
    });
  for (auto& t : threads) t.join();
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::vector<double> all;
  for (auto& l : lat) all.insert(all.end(), l.begin(), l.end());
  std::printf("%.0f %.0f %.0f %d\n", tunnels / secs, pct(all, 0.5), pct(all, 0.99),
              failures.load());
  return failures.load() ? 1 : 0;
}

// The agent side of the bulk row: one connection reads `mib` MiB to the end.
int run_bulk(const std::string& addr, uint16_t port, uint64_t mib, Way way, uint16_t proxy_port) {
  auto t0 = Clock::now();
  if (way == Way::Proxy && proxy_port == 0) proxy_port = proxy_port_from_env();
  int fd = open_path(addr, port, way, proxy_port);
  uint64_t got = 0;
  std::vector<char> buf(256 * 1024);
  if (fd >= 0 && ::write(fd, "\x01", 1) != 1) {  // the request: neither HTTP nor TLS
    ::close(fd);
    fd = -1;
  }
  for (ssize_t n; fd >= 0 && (n = ::read(fd, buf.data(), buf.size())) > 0;)
    got += static_cast<uint64_t>(n);
  if (fd >= 0) ::close(fd);
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  const bool ok = got == (mib << 20);
  std::printf("%.0f 0 0 %d\n", ok ? static_cast<double>(got) / 1e6 / secs : 0, ok ? 0 : 1);
  return ok ? 0 : 1;
}

struct Figures {
  double rate = 0, p50 = 0, p99 = 0;
  int failures = -1;
};

// Runs argv, returns the client's figures from its stdout (failures -1 when it printed none).
Figures run_and_read(const std::vector<std::string>& argv) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return {};
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(out[1]);
  std::string text;
  char buf[512];
  for (ssize_t n; (n = ::read(out[0], buf, sizeof buf)) > 0;)
    text.append(buf, static_cast<size_t>(n));
  ::close(out[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  Figures f;
  // acp run may print its own lines first; the client's figures are the last line.
  auto last = text.find_last_of('\n', text.size() > 1 ? text.size() - 2 : 0);
  std::string line = last == std::string::npos ? text : text.substr(last + 1);
  if (std::sscanf(line.c_str(), "%lf %lf %lf %d", &f.rate, &f.p50, &f.p99, &f.failures) != 4)
    std::fprintf(stderr, "acp_run_setup_bench: no figures from %s (exit %d): %s\n", argv[0].c_str(),
                 status, text.c_str());
  return f;
}

size_t count_lines(const std::string& path) {
  std::ifstream in(path);
  size_t n = 0;
  for (std::string l; std::getline(in, l);) ++n;
  return n;
}

std::string arg(int argc, char** argv, const std::string& name, const std::string& def) {
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]).rfind(name + "=", 0) == 0) return argv[i] + name.size() + 1;
  return def;
}

// The origin's host: a network namespace behind a veth pair, removed at the end (and flagged by
// scripts/check-leftovers.sh, `acpt*`, when the bench was killed half-way).
constexpr const char* kHostSide = "198.51.100.1";
constexpr const char* kOrigin = "198.51.100.2";

struct TestHost {
  std::string ns = "acptb" + std::to_string(::getpid());
  bool up = false;
  TestHost() {
    const std::string h = ns + "h", n = ns + "n";
    up = std::system(("ip netns add " + ns + " && ip link add " + h + " type veth peer name " + n +
                      " && ip link set " + n + " netns " + ns + " && ip addr add " + kHostSide +
                      "/30 dev " + h + " && ip link set " + h + " up && ip -n " + ns +
                      " addr add " + kOrigin + "/30 dev " + n + " && ip -n " + ns + " link set " +
                      n + " up && ip -n " + ns + " link set lo up")
                         .c_str()) == 0;
  }
  ~TestHost() {
    std::system(
        ("ip link del " + ns + "h 2>/dev/null; ip netns del " + ns + " 2>/dev/null").c_str());
  }
};

// The origin process, inside the namespace: echo and bulk listeners on the origin's address.
// One echo port per way through (direct, acp CONNECT, acp door, each peer): every tunnel leaves
// a TIME_WAIT on this host for (198.51.100.1:ephemeral, origin:port), whoever dials the origin
// (the client, acp, a peer), and with one port for all the ways 3 rounds of 6 x 2000 tunnels
// within TIME_WAIT's 60 s used up the 28k ephemeral ports: later rounds crawled in connect()
// and failed, all ways alike. One port each gives every way its own 4-tuple space.
constexpr int kEchoPorts = 6;
struct Origin {
  pid_t pid = -1;
  uint16_t echo_port[kEchoPorts] = {}, bulk_port = 0;
};

Origin start_origin(const TestHost& host, int threads, uint64_t bulk_bytes) {
  int ports[2];
  Origin o;
  if (::pipe2(ports, O_CLOEXEC) != 0) return o;
  o.pid = ::fork();
  if (o.pid == 0) {
    int nsfd = ::open(("/run/netns/" + host.ns).c_str(), O_RDONLY | O_CLOEXEC);
    if (nsfd < 0 || ::setns(nsfd, CLONE_NEWNET) != 0) ::_exit(3);
    uint16_t p[kEchoPorts + 1] = {};
    int echo_fd[kEchoPorts];
    for (int i = 0; i < kEchoPorts; ++i) echo_fd[i] = listen_on(kOrigin, p[i]);
    int bulk_fd = listen_on(kOrigin, p[kEchoPorts]);
    if (::write(ports[1], p, sizeof p) != sizeof p) ::_exit(4);
    std::vector<std::thread> t;
    for (int fd : echo_fd)
      for (int i = 0; i < threads; ++i) t.emplace_back(serve_echo, fd);
    t.emplace_back(serve_bulk, bulk_fd, bulk_bytes);
    for (auto& th : t) th.join();
    ::_exit(0);
  }
  ::close(ports[1]);
  uint16_t p[kEchoPorts + 1] = {};
  if (::read(ports[0], p, sizeof p) == sizeof p) {
    std::copy(p, p + kEchoPorts, o.echo_port);
    o.bulk_port = p[kEchoPorts];
  }
  ::close(ports[0]);
  return o;
}

// A loopback TCP port free at the time of the call.
uint16_t free_port() {
  uint16_t port = 0;
  ::close(listen_on("127.0.0.1", port));
  return port;
}

bool answers(uint16_t port) {
  for (int i = 0; i < 200; ++i) {
    int fd = connect_to("127.0.0.1", port);
    if (fd >= 0) {
      ::close(fd);
      return true;
    }
    ::usleep(25000);
  }
  return false;
}

bool have(const std::string& tool) {
  return std::system(("command -v " + tool + " >/dev/null 2>&1").c_str()) == 0;
}

// A peer run as a private instance from a temp config (as proxy_throughput_bench runs them):
// its system service stays stopped; this one is killed (SIGTERM, then reaped) on destruction.
// `ports`: its listeners on 127.0.0.1 (a CONNECT proxy: one; haproxy: echo and bulk relays).
class Peer {
 public:
  Peer(std::string name, std::vector<std::string> argv, const std::string& config_path,
       const std::string& config, std::vector<uint16_t> ports)
      : name_(std::move(name)), ports_(std::move(ports)) {
    std::ofstream(config_path) << config;
    pid_ = ::fork();
    if (pid_ == 0) {
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      int null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
      ::dup2(null, 1);
      ::dup2(null, 2);
      ::execvp(args[0], args.data());
      ::_exit(127);
    }
    ok_ = pid_ > 0;
    for (uint16_t p : ports_) ok_ = ok_ && answers(p);
  }
  ~Peer() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
  }
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;
  const std::string& name() const { return name_; }
  bool ok() const { return ok_; }
  uint16_t port(size_t i = 0) const { return ports_[i]; }

 private:
  std::string name_;
  std::vector<uint16_t> ports_;
  pid_t pid_ = -1;
  bool ok_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  char addr[64] = "", mode[16] = "";
  int port = 0, n = 0, clients = 0, proxy = 0;
  if (std::string c = arg(argc, argv, "--client", ""); !c.empty()) {
    std::sscanf(c.c_str(), "%63[^,],%d,%d,%d,%15[^,],%d", addr, &port, &n, &clients, mode, &proxy);
    return run_client(addr, static_cast<uint16_t>(port), n, clients, way_of(mode),
                      static_cast<uint16_t>(proxy));
  }
  if (std::string b = arg(argc, argv, "--bulk", ""); !b.empty()) {
    std::sscanf(b.c_str(), "%63[^,],%d,%d,%15[^,],%d", addr, &port, &n, mode, &proxy);
    return run_bulk(addr, static_cast<uint16_t>(port), static_cast<uint64_t>(n), way_of(mode),
                    static_cast<uint16_t>(proxy));
  }
  std::string acp = arg(argc, argv, "--acp", ACP_BINARY);
  int tunnels = std::atoi(arg(argc, argv, "--tunnels", "2000").c_str());
  clients = std::atoi(arg(argc, argv, "--clients", "4").c_str());
  int rounds = std::atoi(arg(argc, argv, "--rounds", "3").c_str());
  const uint64_t mib = std::strtoull(arg(argc, argv, "--mib", "1024").c_str(), nullptr, 10);
  if (::geteuid() != 0) {
    std::fprintf(stderr, "acp_run_setup_bench: run as root (acp run builds a BPF wall)\n");
    return 1;
  }
  ::signal(SIGPIPE, SIG_IGN);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);

  TestHost host;
  if (!host.up) {
    std::fprintf(stderr, "acp_run_setup_bench: could not make the origin's namespace %s\n",
                 host.ns.c_str());
    return 1;
  }
  Origin origin = start_origin(host, clients + 2, mib << 20);
  if (origin.bulk_port == 0) {
    std::fprintf(stderr, "acp_run_setup_bench: the origin did not start in %s\n", host.ns.c_str());
    return 1;
  }
  char tmpl[] = "/tmp/acp-run-bench.XXXXXX";
  std::string dir = ::mkdtemp(tmpl);
  ::chmod(dir.c_str(), 0755);
  // The agent runs as nobody: it gets its own copy of this binary in the 0755 temp dir.
  std::string self = dir + "/agent";
  std::filesystem::copy_file("/proc/self/exe", self);
  ::chmod(self.c_str(), 0755);
  std::ofstream(dir + "/policy.yml") << "default: deny\nrules:\n  - match: { kind: http, host: \""
                                     << kOrigin << "\" }\n    action: allow\n";
  std::ofstream(dir + "/config.yml") << "channels:\n  web:\n    enabled: false\n";
  // --audit-dir on a tmpfs (where fdatasync costs nothing) shows what the sync costs.
  std::string audit = arg(argc, argv, "--audit-dir", dir) + "/audit.jsonl";
  const std::string origin_addr = kOrigin;
  // Echo ports 0, 1, 2: direct, acp CONNECT, acp door; 3, 4, 5: haproxy, tinyproxy, squid.
  auto spec = [&](const char* way) {
    const int i = std::strcmp(way, "direct") == 0 ? 0 : std::strcmp(way, "proxy") == 0 ? 1 : 2;
    return "--client=" + origin_addr + "," + std::to_string(origin.echo_port[i]) + "," +
           std::to_string(tunnels) + "," + std::to_string(clients) + "," + way;
  };
  auto bulk = [&](const char* way) {
    return "--bulk=" + origin_addr + "," + std::to_string(origin.bulk_port) + "," +
           std::to_string(mib) + "," + way;
  };
  // The agent under acp run: --door=both, so one session serves both ways in.
  auto under_acp = [&](std::string client_arg) {
    return std::vector<std::string>{acp,
                                    "run",
                                    "--user=nobody",
                                    "--door=both",
                                    "--policy=" + dir + "/policy.yml",
                                    "--config=" + dir + "/config.yml",
                                    "--audit-log=" + audit,
                                    "--",
                                    self,
                                    std::move(client_arg)};
  };

  // The peers, on this host's loopback, relaying to the same origin in the namespace: haproxy
  // as a single-threaded TCP relay (one listener per origin port: the client connects to the
  // relay as it would to the origin), tinyproxy and squid as CONNECT proxies (squid with no
  // cache and no logs, one worker; no ConnectPort/SSL_ports rule: CONNECT to any port).
  auto to_echo = [&](int i) { return origin_addr + ":" + std::to_string(origin.echo_port[i]); };
  const std::string to_bulk = origin_addr + ":" + std::to_string(origin.bulk_port);
  std::unique_ptr<Peer> haproxy, tinyproxy, squid;
  if (have("haproxy")) {
    const uint16_t e = free_port(), b = free_port();
    haproxy = std::make_unique<Peer>(
        "haproxy tcp", std::vector<std::string>{"haproxy", "-db", "-f", dir + "/haproxy.cfg"},
        dir + "/haproxy.cfg",
        "global\n  nbthread 1\n  maxconn 9000\ndefaults\n  mode tcp\n  maxconn 9000\n"
        "  timeout connect 5s\n  timeout client 600s\n  timeout server 600s\n"
        "listen echo\n  bind 127.0.0.1:" +
            std::to_string(e) + "\n  server s1 " + to_echo(3) + "\nlisten bulk\n  bind 127.0.0.1:" +
            std::to_string(b) + "\n  server s1 " + to_bulk + "\n",
        std::vector<uint16_t>{e, b});
  }
  if (have("tinyproxy")) {
    const uint16_t p = free_port();
    tinyproxy = std::make_unique<Peer>(
        "tinyproxy", std::vector<std::string>{"tinyproxy", "-d", "-c", dir + "/tinyproxy.conf"},
        dir + "/tinyproxy.conf",
        "User nobody\nGroup nogroup\nPort " + std::to_string(p) +
            "\nListen 127.0.0.1\nTimeout 600\nMaxClients 4000\nAllow 127.0.0.1\n"
            "LogLevel Critical\n",
        std::vector<uint16_t>{p});
  }
  if (have("squid")) {
    const uint16_t p = free_port();
    squid = std::make_unique<Peer>(
        "squid", std::vector<std::string>{"squid", "-N", "-f", dir + "/squid.conf"},
        dir + "/squid.conf",
        "http_port 127.0.0.1:" + std::to_string(p) +
            "\nworkers 1\ncache deny all\ncache_mem 0 MB\nvisible_hostname acp-bench\n"
            "acl bench_local src 127.0.0.1/32\nhttp_access allow bench_local\n"
            "http_access deny all\naccess_log none\ncache_log /dev/null\npid_filename none\n"
            "shutdown_lifetime 0 seconds\nmax_filedescriptors 65536\nread_timeout 10 minutes\n",
        std::vector<uint16_t>{p});
  }
  const char* const peer_tools[] = {"haproxy", "tinyproxy", "squid"};
  Peer* const peers[] = {haproxy.get(), tinyproxy.get(), squid.get()};
  for (size_t i = 0; i < 3; ++i) {
    if (!peers[i])
      std::printf("%s: not installed (apt-get install %s): its rows are skipped\n", peer_tools[i],
                  peer_tools[i]);
    else if (!peers[i]->ok())
      std::printf("%s: did not start listening on 127.0.0.1:%u: its rows are skipped\n",
                  peers[i]->name().c_str(), peers[i]->port());
  }
  // The same client outside acp, through a peer: haproxy's relay is dialled like the origin;
  // tinyproxy and squid get a CONNECT to the origin.
  auto peer_spec = [&](const Peer& p) {
    if (&p == haproxy.get())
      return "--client=127.0.0.1," + std::to_string(p.port(0)) + "," + std::to_string(tunnels) +
             "," + std::to_string(clients) + ",direct";
    return "--client=" + origin_addr + "," +
           std::to_string(origin.echo_port[&p == tinyproxy.get() ? 4 : 5]) + "," +
           std::to_string(tunnels) + "," + std::to_string(clients) + ",proxy," +
           std::to_string(p.port());
  };
  auto peer_bulk = [&](const Peer& p) {
    if (&p == haproxy.get())
      return "--bulk=127.0.0.1," + std::to_string(p.port(1)) + "," + std::to_string(mib) +
             ",direct";
    return "--bulk=" + origin_addr + "," + std::to_string(origin.bulk_port) + "," +
           std::to_string(mib) + ",proxy," + std::to_string(p.port());
  };

  std::printf(
      "origin %s (namespace %s); %d tunnels, %d clients at once, 64 B echoed each; "
      "bulk %llu MiB; audit log on %s\n",
      kOrigin, host.ns.c_str(), tunnels, clients, static_cast<unsigned long long>(mib),
      audit.c_str());
  // Per round, one row per way through; ACP's two ways as ratios against each row (conn/s and
  // bulk MB/s: acp/row, above 1 when acp is faster).
  struct Row {
    std::string name;
    Figures setup, bulk;
  };
  auto ratio = [](double acp_value, double row_value) {
    char b[16];
    std::snprintf(b, sizeof b, "%.2fx", row_value > 0 ? acp_value / row_value : 0.0);
    return std::string(b);
  };
  for (int r = 1; r <= rounds; ++r) {
    std::vector<Row> rows;
    rows.push_back({"direct", run_and_read({self, spec("direct")}), {}});
    rows.push_back({"acp CONNECT", run_and_read(under_acp(spec("proxy"))), {}});
    rows.push_back({"acp door", run_and_read(under_acp(spec("door"))), {}});
    for (Peer* p : peers)
      if (p && p->ok()) rows.push_back({p->name(), run_and_read({self, peer_spec(*p)}), {}});
    rows[0].bulk = run_and_read({self, bulk("direct")});
    rows[1].bulk = run_and_read(under_acp(bulk("proxy")));
    rows[2].bulk = run_and_read(under_acp(bulk("door")));
    for (size_t i = 3, k = 0; k < 3; ++k)
      if (peers[k] && peers[k]->ok()) rows[i++].bulk = run_and_read({self, peer_bulk(*peers[k])});
    std::printf("round %d\n", r);
    std::printf("  %-12s %8s %8s %8s %9s %6s  %-23s %s\n", "way", "conn/s", "p50 us", "p99 us",
                "bulk MB/s", "fails", "conn/s acp CONNECT/door", "bulk acp CONNECT/door");
    for (const auto& row : rows) {
      std::printf("  %-12s %8.0f %8.0f %8.0f %9.0f %3d/%-2d", row.name.c_str(), row.setup.rate,
                  row.setup.p50, row.setup.p99, row.bulk.rate, row.setup.failures,
                  row.bulk.failures);
      if (row.name.rfind("acp ", 0) != 0)  // acp's own rows: no ratio against themselves
        std::printf("  %-23s %s / %s",
                    (ratio(rows[1].setup.rate, row.setup.rate) + " / " +
                     ratio(rows[2].setup.rate, row.setup.rate))
                        .c_str(),
                    ratio(rows[1].bulk.rate, row.bulk.rate).c_str(),
                    ratio(rows[2].bulk.rate, row.bulk.rate).c_str());
      std::printf("\n");
    }
  }
  std::printf("audit log: %zu lines (one per tunnel and bulk run); check with `acp audit verify`\n",
              count_lines(audit));
  int rc = std::system((acp + " audit verify " + audit + " >/dev/null").c_str());
  std::printf("acp audit verify: %s\n", rc == 0 ? "ok" : "BROKEN");

  haproxy.reset();
  tinyproxy.reset();
  squid.reset();
  ::kill(origin.pid, SIGKILL);
  ::waitpid(origin.pid, nullptr, 0);
  std::filesystem::remove_all(dir);
  std::filesystem::remove(audit);
  return 0;
}
