// Tunnel setup through the real `acp run` (bpf wall, allow policy, the audit log on, one
// fdatasync'ed decision per tunnel) against the same client talking to the echo server
// directly, in one run, reported as ratios. Each tunnel: connect, (CONNECT, 200,) 64 bytes
// out, 64 bytes echoed back, close; `--clients` threads at once. Needs root (acp run).
// Usage:
//   acp_run_setup_bench [--acp=PATH] [--tunnels=N] [--clients=N] [--rounds=N] [--audit-dir=DIR]
// The agent side is this binary again: `acp_run_setup_bench --client=PORT,N,C[,direct]`
// prints "<tunnels/s> <p50 us> <p99 us> <failures>".
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kEcho = 64;

int listen_loopback(uint16_t& port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(fd, 1024) != 0 || ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    std::perror("acp_run_setup_bench: echo listener on 127.0.0.1");
    std::exit(1);
  }
  port = ntohs(a.sin_port);
  return fd;
}

int connect_loopback(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
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

// One tunnel; returns whether the echo came back.
bool one_tunnel(uint16_t echo_port, uint16_t proxy_port) {
  int fd = connect_loopback(proxy_port ? proxy_port : echo_port);
  if (fd < 0) return false;
  bool ok = true;
  if (proxy_port) {
    std::string req = "CONNECT 127.0.0.1:" + std::to_string(echo_port) +
                      " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(echo_port) + "\r\n\r\n";
    std::string head;
    char c;
    ok = ::write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size());
    while (ok && head.find("\r\n\r\n") == std::string::npos && head.size() < 4096)
      ok = ::read(fd, &c, 1) == 1 && (head.push_back(c), true);
    ok = ok && head.rfind("HTTP/1.1 200", 0) == 0;
  }
  // Binary bytes: the proxy sees at once that they are neither HTTP nor TLS (a run of token
  // characters could still become a request line, and it would wait for more).
  char out[kEcho], in[kEcho];
  std::memset(out, 0, sizeof out);
  ok = ok && ::write(fd, out, sizeof out) == static_cast<ssize_t>(sizeof out) &&
       read_exactly(fd, in, sizeof in);
  ::close(fd);
  return ok;
}

double pct(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

// The agent side: `clients` threads share `tunnels` tunnels.
int run_client(uint16_t echo_port, int tunnels, int clients, bool direct) {
  uint16_t proxy_port = direct ? 0 : proxy_port_from_env();
  if (!direct && proxy_port == 0) {
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
        if (!one_tunnel(echo_port, proxy_port)) ++failures;
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

}  // namespace

int main(int argc, char** argv) {
  if (std::string c = arg(argc, argv, "--client", ""); !c.empty()) {
    int port = 0, n = 0, clients = 0;
    char mode[16] = "";
    std::sscanf(c.c_str(), "%d,%d,%d,%15s", &port, &n, &clients, mode);
    return run_client(static_cast<uint16_t>(port), n, clients, std::strcmp(mode, "direct") == 0);
  }
  std::string acp = arg(argc, argv, "--acp", ACP_BINARY);
  int tunnels = std::atoi(arg(argc, argv, "--tunnels", "2000").c_str());
  int clients = std::atoi(arg(argc, argv, "--clients", "4").c_str());
  int rounds = std::atoi(arg(argc, argv, "--rounds", "3").c_str());
  if (::geteuid() != 0) {
    std::fprintf(stderr, "acp_run_setup_bench: run as root (acp run builds a BPF wall)\n");
    return 1;
  }
  ::signal(SIGPIPE, SIG_IGN);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);

  char tmpl[] = "/tmp/acp-run-bench.XXXXXX";
  std::string dir = ::mkdtemp(tmpl);
  ::chmod(dir.c_str(), 0755);
  // The agent runs as nobody: it gets its own copy of this binary in the 0755 temp dir.
  std::string self = dir + "/agent";
  std::filesystem::copy_file("/proc/self/exe", self);
  ::chmod(self.c_str(), 0755);
  uint16_t echo_port = 0;
  int listen_fd = listen_loopback(echo_port);
  std::vector<std::thread> echo;
  for (int i = 0; i < clients + 2; ++i) echo.emplace_back(serve_echo, listen_fd);
  std::ofstream(dir + "/policy.yml")
      << "default: deny\nrules:\n  - match: { kind: http, host: \"127.0.0.1\", port: " << echo_port
      << " }\n    action: allow\n";
  std::ofstream(dir + "/config.yml") << "channels:\n  web:\n    enabled: false\n";
  // --audit-dir on a tmpfs (where fdatasync costs nothing) shows what the sync costs.
  std::string audit = arg(argc, argv, "--audit-dir", dir) + "/audit.jsonl";
  std::string spec =
      std::to_string(echo_port) + "," + std::to_string(tunnels) + "," + std::to_string(clients);

  std::printf("%d tunnels, %d clients at once, 64 B echoed each; audit log on %s\n", tunnels,
              clients, dir.c_str());
  std::printf("%-6s %14s %14s %12s %12s %10s\n", "round", "direct conn/s", "acp run conn/s",
              "ACP/direct", "p50 us d/acp", "failures");
  for (int r = 1; r <= rounds; ++r) {
    Figures direct = run_and_read({self, "--client=" + spec + ",direct"});
    Figures acp_run = run_and_read({acp, "run", "--user=nobody", "--policy=" + dir + "/policy.yml",
                                    "--config=" + dir + "/config.yml", "--audit-log=" + audit, "--",
                                    self, "--client=" + spec + ",proxy"});
    std::printf("%-6d %14.0f %14.0f %11.2fx %5.0f/%-6.0f %4d/%d\n", r, direct.rate, acp_run.rate,
                direct.rate > 0 ? acp_run.rate / direct.rate : 0, direct.p50, acp_run.p50,
                direct.failures, acp_run.failures);
  }
  std::printf("audit log: %zu lines (one per tunnel); check with `acp audit verify`\n",
              count_lines(audit));
  int rc = std::system((acp + " audit verify " + audit + " >/dev/null").c_str());
  std::printf("acp audit verify: %s\n", rc == 0 ? "ok" : "BROKEN");

  ::shutdown(listen_fd, SHUT_RDWR);
  for (auto& t : echo) t.join();
  ::close(listen_fd);
  std::filesystem::remove_all(dir);
  std::filesystem::remove(audit);
  return 0;
}
