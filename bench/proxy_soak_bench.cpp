// Soak: many concurrent CONNECT tunnels, then a slowloris, against acp::proxy::ProxyServer (the
// code `acp run` serves) in its own process. Reports the proxy process's VmRSS and open fds at
// baseline, at peak and after each phase, whether they came back, and whether a normal request
// is still answered while the slowloris runs. Not a test: no assertions, not run by CI.
//
//   proxy_soak_bench [--tunnels=10000] [--slowloris=3000] [--header-timeout=30]
//                    [--trickle-ms=1000] [--rounds=2]
//
// The tunnel phase runs --rounds times; after each, the proxy prints its heap (mallinfo2: in
// use, free but kept by glibc, mmapped), so memory kept for reuse is told from a leak.
// Processes: the proxy (fork, AllowAll judge, max_connections 30000, header_timeout as given,
// everything else the default ProxyLimits), a sink that accepts and holds the tunnels' upstream
// connections (fork), and this process as the client. Each raises its soft RLIMIT_NOFILE to the
// hard limit; a tunnel costs the proxy two fds, so --tunnels is capped at (hard - 64) / 2.
#include <utility>  // before boost/asio/awaitable.hpp (Boost 1.74)

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
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

rlim_t raise_nofile() {
  rlimit r{};
  getrlimit(RLIMIT_NOFILE, &r);
  r.rlim_cur = r.rlim_max;
  setrlimit(RLIMIT_NOFILE, &r);
  getrlimit(RLIMIT_NOFILE, &r);
  return r.rlim_cur;
}

long rss_kb(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  return -1;
}

int fd_count(pid_t pid) {
  std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = opendir(dir.c_str());
  if (!d) return -1;
  int n = 0;
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

struct Sample {
  long rss = 0;
  int fds = 0;
};
Sample sample(pid_t pid) {
  return {rss_kb(pid), fd_count(pid)};
}

int listen_loopback(uint16_t* port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(fd, 4096) != 0) {
    std::perror("bind/listen");
    std::exit(1);
  }
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

int connect_loopback(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Reads until "\r\n\r\n" (or timeout); returns what came.
std::string read_head(int fd, int timeout_ms) {
  std::string got;
  char buf[1024];
  auto end = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (got.find("\r\n\r\n") == std::string::npos && Clock::now() < end) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

// The sink: accepts and holds upstream connections until its pipe closes. Its own process, so
// that the proxy's 2 fds per tunnel and the client's 1 are not in the same fd table.
[[noreturn]] void sink_child(int listen_fd, int stop_fd) {
  raise_nofile();
  // Non-blocking from the start: a blocking accept4() below would sit on the listener after the
  // last tunnel came in and never get round to closing the connections the proxy finished.
  fcntl(listen_fd, F_SETFL, fcntl(listen_fd, F_GETFL) | O_NONBLOCK);
  std::vector<int> held;
  pollfd p[2] = {{listen_fd, POLLIN, 0}, {stop_fd, POLLIN, 0}};
  for (;;) {
    if (poll(p, 2, 1000) < 0) continue;
    if (p[1].revents) _exit(0);
    if (p[0].revents & POLLIN) {
      int c;
      while ((c = accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
        held.push_back(c);
    }
    // Closed by the proxy (the client hung up and the proxy passed the FIN on): close our end
    // too, as a real upstream would, so the proxy can finish the tunnel. Checked whenever no
    // new connection came in during the last poll.
    if (!held.empty() && !(p[0].revents & POLLIN)) {
      std::vector<int> keep;
      for (int fd : held) {
        char b;
        ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN)) {
          close(fd);
        } else {
          keep.push_back(fd);
        }
      }
      held.swap(keep);
    }
  }
}

// A one-line HTTP origin: answers each connection "HTTP/1.1 200 OK" after its request head.
void origin_loop(int listen_fd, std::atomic<bool>& stop) {
  while (!stop) {
    pollfd p{listen_fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    int c = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    read_head(c, 2000);
    static const char kOk[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
    (void)send(c, kOk, sizeof(kOk) - 1, MSG_NOSIGNAL);
    close(c);
  }
}

[[noreturn]] void proxy_child(int out, int header_timeout_s) {
  raise_nofile();
  net::io_context io(1);
  AllowAll allow;
  acp::proxy::ProxyConfig cfg;
  cfg.listen = {tcp::endpoint(net::ip::address_v4::loopback(), 0)};
  cfg.session_id = "soak";
  cfg.limits.max_connections = 30000;
  cfg.limits.header_timeout = std::chrono::seconds(header_timeout_s);
  acp::proxy::ProxyServer server(io, cfg, allow);
  if (!server.start()) _exit(3);
  // SIGUSR1: what the heap holds, to tell memory in use from freed memory the allocator keeps.
  net::signal_set usr1(io, SIGUSR1);
  std::function<void()> arm = [&] {
    usr1.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      struct mallinfo2 mi = ::mallinfo2();
      std::printf("heap       in use %zu kB, free but kept %zu kB, mmapped %zu kB\n",
                  mi.uordblks / 1024, mi.fordblks / 1024, mi.hblkhd / 1024);
      std::fflush(stdout);
      arm();
    });
  };
  arm();
  uint16_t port = server.local_endpoints()[0].port();
  if (write(out, &port, sizeof(port)) != sizeof(port)) _exit(4);
  close(out);
  io.run();
  _exit(0);
}

// A normal request through the proxy: CONNECT to the origin, then GET. Returns the time to the
// origin's 200 in ms, or -1 when it did not come (within 10 s).
double probe(uint16_t proxy_port, uint16_t origin_port) {
  auto t0 = Clock::now();
  int fd = connect_loopback(proxy_port);
  if (fd < 0) return -1;
  std::string req = "CONNECT 127.0.0.1:" + std::to_string(origin_port) +
                    " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(origin_port) + "\r\n\r\n";
  (void)send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  std::string head = read_head(fd, 10000);
  if (head.find(" 200") == std::string::npos) {
    close(fd);
    return -1;
  }
  const char get[] = "GET / HTTP/1.1\r\nHost: origin\r\n\r\n";
  (void)send(fd, get, sizeof(get) - 1, MSG_NOSIGNAL);
  std::string reply = read_head(fd, 10000);
  close(fd);
  if (reply.rfind("HTTP/1.1 200", 0) != 0) return -1;
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Waits (at most `seconds`) for the proxy's fd count to come back to `base`.
Sample settle(pid_t pid, int base, int seconds) {
  Sample s = sample(pid);
  for (int i = 0; i < seconds * 10 && s.fds > base; i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    s = sample(pid);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  return sample(pid);
}

void print_phase(const char* name, Sample base, Sample peak, Sample after) {
  std::printf(
      "%-10s VmRSS kB: baseline %ld, peak %ld, after %ld (%+ld)  |  fds: baseline %d, "
      "peak %d, after %d  -> fds %s baseline, RSS %s\n",
      name, base.rss, peak.rss, after.rss, after.rss - base.rss, base.fds, peak.fds, after.fds,
      after.fds <= base.fds ? "back to" : "NOT back to",
      after.rss <= base.rss + base.rss / 10 ? "within 10% of baseline"
                                            : "above baseline (allocator keeps pages)");
}

}  // namespace

int main(int argc, char** argv) {
  int tunnels = 10000, slow = 3000, header_timeout = 30, trickle_ms = 1000, rounds = 2;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto val = [&](const char* k) { return std::atoi(a.c_str() + std::strlen(k)); };
    if (a.rfind("--tunnels=", 0) == 0) tunnels = val("--tunnels=");
    if (a.rfind("--slowloris=", 0) == 0) slow = val("--slowloris=");
    if (a.rfind("--header-timeout=", 0) == 0) header_timeout = val("--header-timeout=");
    if (a.rfind("--trickle-ms=", 0) == 0) trickle_ms = val("--trickle-ms=");
    if (a.rfind("--rounds=", 0) == 0) rounds = std::max(1, val("--rounds="));
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  signal(SIGPIPE, SIG_IGN);
  const rlim_t nofile = raise_nofile();
  const int cap = static_cast<int>((nofile - 64) / 2);
  if (tunnels > cap) {
    std::printf(
        "# --tunnels=%d capped at %d: RLIMIT_NOFILE hard limit %llu, and the proxy "
        "holds 2 fds per tunnel\n",
        tunnels, cap, static_cast<unsigned long long>(nofile));
    tunnels = cap;
  }
  if (slow > static_cast<int>(nofile) - 64) slow = static_cast<int>(nofile) - 64;

  int pfd[2];
  if (pipe2(pfd, O_CLOEXEC) != 0) return 1;
  pid_t proxy = fork();
  if (proxy == 0) {
    close(pfd[0]);
    proxy_child(pfd[1], header_timeout);
  }
  close(pfd[1]);
  uint16_t pport = 0;
  if (read(pfd[0], &pport, sizeof(pport)) != sizeof(pport)) {
    std::fprintf(stderr, "proxy did not start\n");
    return 1;
  }
  close(pfd[0]);

  uint16_t sink_port = 0, origin_port = 0;
  int sink_listen = listen_loopback(&sink_port);
  int stop_pipe[2];
  if (pipe2(stop_pipe, O_CLOEXEC) != 0) return 1;
  pid_t sink = fork();
  if (sink == 0) {
    close(stop_pipe[1]);
    sink_child(sink_listen, stop_pipe[0]);
  }
  close(stop_pipe[0]);
  close(sink_listen);
  int origin_listen = listen_loopback(&origin_port);
  std::atomic<bool> stop{false};
  std::thread origin([&] { origin_loop(origin_listen, stop); });

  std::printf("# proxy pid %d on 127.0.0.1:%u; RLIMIT_NOFILE %llu; header_timeout %d s\n", proxy,
              pport, static_cast<unsigned long long>(nofile), header_timeout);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  double warm = probe(pport, origin_port);
  std::printf("# warm-up request: %.2f ms\n", warm);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));

  // ---- Phase 1: N concurrent CONNECT tunnels, held open, then closed; twice, so that what
  // the proxy keeps after the first round shows whether it grows (a leak) or is reused. ----
  std::printf("# the proxy's heap at baseline:\n");
  kill(proxy, SIGUSR1);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (int round = 1; round <= rounds; round++) {
    Sample base = sample(proxy);
    auto t0 = Clock::now();
    std::vector<int> socks;
    socks.reserve(static_cast<size_t>(tunnels));
    const std::string req = "CONNECT 127.0.0.1:" + std::to_string(sink_port) +
                            " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(sink_port) +
                            "\r\n\r\n";
    // Open in waves of 500 (the listen backlog), each wave's CONNECTs sent before any is read.
    int established = 0, failed = 0;
    for (int done = 0; done < tunnels;) {
      int wave = std::min(500, tunnels - done);
      std::vector<int> w;
      for (int i = 0; i < wave; i++) {
        int fd = connect_loopback(pport);
        if (fd < 0) {
          failed++;
          continue;
        }
        (void)send(fd, req.data(), req.size(), MSG_NOSIGNAL);
        w.push_back(fd);
      }
      for (int fd : w) {
        std::string head = read_head(fd, 10000);
        if (head.find(" 200") != std::string::npos) {
          established++;
          socks.push_back(fd);
        } else {
          failed++;
          close(fd);
        }
      }
      done += wave;
    }
    double open_s = std::chrono::duration<double>(Clock::now() - t0).count();
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    Sample peak = sample(proxy);
    double during = probe(pport, origin_port);
    std::printf(
        "tunnels    %d established, %d failed, in %.1f s; a new request while they are "
        "held: %s (%.2f ms)\n",
        established, failed, open_s, during >= 0 ? "answered" : "NOT answered", during);
    for (int fd : socks) close(fd);
    socks.clear();
    Sample after = settle(proxy, base.fds, 30);
    print_phase(round == 1 ? "tunnels" : "tunnels#2", base, peak, after);
    kill(proxy, SIGUSR1);  // the proxy prints its heap
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }

  // ---- Phase 2: slowloris. Headers trickled byte by byte over many connections. ----
  Sample base2 = sample(proxy);
  std::vector<int> slowfds;
  for (int i = 0; i < slow; i++) {
    int fd = connect_loopback(pport);
    if (fd < 0) break;
    fcntl(fd, F_SETFL, O_NONBLOCK);
    slowfds.push_back(fd);
  }
  const std::string trickle = "CONNECT 127.0.0.1:" + std::to_string(sink_port) +
                              " HTTP/1.1\r\nHost: x\r\nX-Slow: " + std::string(4096, 'a');
  std::vector<size_t> sent(slowfds.size(), 0);
  std::vector<double> closed_at(slowfds.size(), -1);
  auto s0 = Clock::now();
  Sample peak2 = base2;
  std::vector<double> probes;
  size_t open_left = slowfds.size();
  const double give_up_s = header_timeout * 2 + 15;
  while (open_left > 0) {
    double now_s = std::chrono::duration<double>(Clock::now() - s0).count();
    if (now_s > give_up_s) break;
    for (size_t i = 0; i < slowfds.size(); i++) {
      if (closed_at[i] >= 0) continue;
      char b;
      ssize_t r = recv(slowfds[i], &b, 1, MSG_DONTWAIT);
      bool gone = r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
      if (!gone && sent[i] < trickle.size()) {
        ssize_t n = send(slowfds[i], &trickle[sent[i]], 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n == 1) sent[i]++;
        if (n < 0 && errno != EAGAIN) gone = true;
      }
      if (gone || r > 0) {  // r > 0: the proxy answered (a 408 or 400): it is done with it
        closed_at[i] = now_s;
        open_left--;
      }
    }
    Sample s = sample(proxy);
    peak2.rss = std::max(peak2.rss, s.rss);
    peak2.fds = std::max(peak2.fds, s.fds);
    // A normal request, every few rounds, while the slow ones hold their connections.
    if (probes.size() < 5 && now_s > probes.size() * (header_timeout / 6.0) + 1)
      probes.push_back(probe(pport, origin_port));
    std::this_thread::sleep_for(std::chrono::milliseconds(trickle_ms));
  }
  double first = 1e9, last = 0;
  size_t cut = 0;
  for (double c : closed_at)
    if (c >= 0) {
      cut++;
      first = std::min(first, c);
      last = std::max(last, c);
    }
  for (int fd : slowfds) close(fd);
  Sample after2 = settle(proxy, base2.fds, 30);
  std::printf(
      "slowloris  %zu connections, 1 byte each per %d ms; the proxy cut %zu of them, "
      "between %.1f s and %.1f s after the first byte (header_timeout %d s)\n",
      slowfds.size(), trickle_ms, cut, cut ? first : 0.0, last, header_timeout);
  std::printf("slowloris  normal requests during it:");
  for (double p : probes)
    std::printf(" %s", p >= 0 ? (std::to_string(p).substr(0, 6) + "ms").c_str() : "FAILED");
  std::printf("\n");
  print_phase("slowloris", base2, peak2, after2);

  stop = true;
  origin.join();
  close(origin_listen);
  close(stop_pipe[1]);
  waitpid(sink, nullptr, 0);
  kill(proxy, SIGTERM);
  waitpid(proxy, nullptr, 0);
  return 0;
}
