// connect() latency inside the confined cgroup vs outside it, and what the BPF programs cost
// per run (bpf_stats). Needs root (cgroups, BPF). See bench/README.md.
//
// The same process pattern on both sides: a forked worker moves itself into a cgroup (the
// walled one, with the real acp_sock programs attached and the loopback listener allowed, or a
// bare one), pins itself to one CPU, and times each call with CLOCK_MONOTONIC. Rounds
// alternate inside/outside so that drift on the machine hits both alike. Reported per test:
// p50, p99 and mean in microseconds, and the inside/outside ratios (target: p50 <= 1.03,
// p99 <= 1.05).
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "acp/cgroup/cgroup.hpp"
#include "acp/cgroup/mounts.hpp"
#include "acp/kernel/endpoint.hpp"
#include "acp/kernel/sock_programs.hpp"
#include "acp/util/unique_fd.hpp"

namespace {

using acp::UniqueFd;

enum class Test { kTcpConnect, kUdpConnect, kUdpSendto, kTcpSocket };
const char* test_name(Test t) {
  switch (t) {
    case Test::kTcpConnect:
      return "tcp connect()";
    case Test::kUdpConnect:
      return "udp connect()";
    case Test::kUdpSendto:
      return "udp sendto()";
    case Test::kTcpSocket:
      return "tcp socket()";
  }
  return "?";
}
constexpr Test kTests[] = {Test::kTcpConnect, Test::kUdpConnect, Test::kUdpSendto,
                           Test::kTcpSocket};

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "connect_latency_bench: %s\n", what.c_str());
  std::exit(1);
}

// The loopback servers: a TCP listener whose connections are accepted and closed at once, and
// a UDP socket that is drained, both on one thread.
class Sink {
 public:
  Sink() : wake_(eventfd(0, EFD_CLOEXEC)) {
    tcp_ = bind_loopback(SOCK_STREAM, &tcp_port_);
    udp_ = bind_loopback(SOCK_DGRAM, &udp_port_);
    int big = 8 << 20;
    setsockopt(udp_.get(), SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    thread_ = std::thread([this] { loop(); });
  }
  ~Sink() {
    uint64_t one = 1;
    (void)!write(wake_.get(), &one, sizeof(one));
    thread_.join();
  }
  uint16_t tcp_port() const { return tcp_port_; }
  uint16_t udp_port() const { return udp_port_; }

 private:
  static UniqueFd bind_loopback(int type, uint16_t* port) {
    UniqueFd fd(socket(AF_INET, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (bind(fd.get(), reinterpret_cast<sockaddr*>(&a), len) != 0) die("bind loopback");
    if (type == SOCK_STREAM && listen(fd.get(), 4096) != 0) die("listen");
    getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len);
    *port = ntohs(a.sin_port);
    return fd;
  }
  void loop() {
    char buf[2048];
    for (;;) {
      pollfd p[3] = {{wake_.get(), POLLIN, 0}, {tcp_.get(), POLLIN, 0}, {udp_.get(), POLLIN, 0}};
      if (poll(p, 3, -1) < 0) continue;
      if (p[0].revents) return;
      if (p[1].revents)
        while (true) {
          int c = accept4(tcp_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) break;
          close(c);
        }
      if (p[2].revents)
        while (recv(udp_.get(), buf, sizeof(buf), MSG_DONTWAIT) > 0) {
        }
    }
  }
  UniqueFd wake_, tcp_, udp_;
  uint16_t tcp_port_ = 0, udp_port_ = 0;
  std::thread thread_;
};

// One worker run: fork, join `procs`, pin to `cpu`, time `n` calls after `n / 10` warm-up
// calls. Returns the samples in nanoseconds.
std::vector<uint32_t> run_worker(const std::string& procs, Test test, const sockaddr_in& tcp,
                                 const sockaddr_in& udp, int n, int cpu) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) die("pipe");
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    close(p[0]);
    int fd = open(procs.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "0", 1) != 1) _exit(10);
    close(fd);
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof(set), &set);
    std::vector<uint32_t> samples(static_cast<size_t>(n));
    const int warm = n / 10;
    const linger rst{1, 0};  // close with RST: no TIME_WAIT pile-up over 100k connects
    int usock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    for (int i = -warm; i < n; i++) {
      uint64_t t0 = 0, t1 = 0;
      switch (test) {
        case Test::kTcpConnect: {
          int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
          setsockopt(s, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
          t0 = now_ns();
          int rc = connect(s, reinterpret_cast<const sockaddr*>(&tcp), sizeof(tcp));
          t1 = now_ns();
          if (rc != 0) _exit(11);
          close(s);
          break;
        }
        case Test::kUdpConnect: {
          int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
          t0 = now_ns();
          int rc = connect(s, reinterpret_cast<const sockaddr*>(&udp), sizeof(udp));
          t1 = now_ns();
          if (rc != 0) _exit(12);
          close(s);
          break;
        }
        case Test::kUdpSendto: {
          t0 = now_ns();
          ssize_t rc =
              sendto(usock, "x", 1, 0, reinterpret_cast<const sockaddr*>(&udp), sizeof(udp));
          t1 = now_ns();
          if (rc != 1) _exit(13);
          break;
        }
        case Test::kTcpSocket: {
          t0 = now_ns();
          int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
          t1 = now_ns();
          if (s < 0) _exit(14);
          close(s);
          break;
        }
      }
      if (i >= 0) samples[static_cast<size_t>(i)] = static_cast<uint32_t>(t1 - t0);
    }
    const char* b = reinterpret_cast<const char*>(samples.data());
    size_t left = samples.size() * sizeof(uint32_t);
    while (left > 0) {
      ssize_t w = write(p[1], b, left);
      if (w <= 0) _exit(15);
      b += w;
      left -= static_cast<size_t>(w);
    }
    _exit(0);
  }
  close(p[1]);
  std::vector<uint32_t> samples(static_cast<size_t>(n));
  char* b = reinterpret_cast<char*>(samples.data());
  size_t got = 0, want = samples.size() * sizeof(uint32_t);
  while (got < want) {
    ssize_t r = read(p[0], b + got, want - got);
    if (r <= 0) break;
    got += static_cast<size_t>(r);
  }
  close(p[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  if (got != want || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
    die(std::string("worker failed for ") + test_name(test) + " (exit " +
        std::to_string(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st)) + ")");
  return samples;
}

struct Stats {
  double p50 = 0, p99 = 0, mean = 0;
};
Stats stats(std::vector<uint32_t> v) {
  std::sort(v.begin(), v.end());
  Stats s;
  s.p50 = v[v.size() / 2] / 1000.0;
  s.p99 = v[v.size() * 99 / 100] / 1000.0;
  double sum = 0;
  for (uint32_t x : v) sum += x;
  s.mean = sum / static_cast<double>(v.size()) / 1000.0;
  return s;
}

// Program ids attached to the cgroup for one attach type.
std::vector<uint32_t> attached_progs(int cg_fd, bpf_attach_type type) {
  uint32_t ids[16], cnt = 16, flags = 0;
  if (bpf_prog_query(cg_fd, type, 0, &flags, ids, &cnt) != 0) return {};
  return std::vector<uint32_t>(ids, ids + cnt);
}

struct ProgRun {
  std::string name;
  uint64_t cnt = 0, ns = 0;
};
std::map<uint32_t, ProgRun> prog_runs(const std::vector<uint32_t>& ids) {
  std::map<uint32_t, ProgRun> out;
  for (uint32_t id : ids) {
    UniqueFd fd(bpf_prog_get_fd_by_id(id));
    if (!fd.valid()) continue;
    bpf_prog_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0) continue;
    out[id] = {info.name, info.run_cnt, info.run_time_ns};
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int iterations = 20000, rounds = 5;
  bool door = false;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--door")
      door = true;
    else if (a.rfind("--iterations=", 0) == 0)
      iterations = std::atoi(a.c_str() + 13);
    else if (a.rfind("--rounds=", 0) == 0)
      rounds = std::atoi(a.c_str() + 9);
    else {
      std::fprintf(stderr, "usage: %s [--iterations=N] [--rounds=R] [--door]\n", argv[0]);
      return 2;
    }
  }
  setvbuf(stdout, nullptr, _IOLBF, 0);
  if (iterations < 100 || rounds < 1) die("--iterations must be >= 100 and --rounds >= 1");
  if (geteuid() != 0)
    die("needs root (it makes cgroups and loads BPF programs): sudo " + std::string(argv[0]));

  auto root = acp::cgroup2_mount_point();
  if (!root) die(root.error().message());
  const std::string tag = std::to_string(getpid());
  auto walled = acp::Cgroup::create(*root + "/acp-bench-" + tag + "-wall");
  if (!walled) die(walled.error().message());
  auto bare = acp::Cgroup::create(*root + "/acp-bench-" + tag + "-bare");
  if (!bare) die(bare.error().message());

  Sink sink;
  // --door: the programs of a --door=both session (acp_door_connect4/6, acp_door_sendmsg4/6,
  // recvmsg4/6, getpeername4/6, sockops), the door and its DNS pointed at the sink's ports.
  // Every timed call goes to an allowed endpoint: this is what the door costs the calls it
  // does not lead in.
  acp::kernel::SockConfig sc{ACP_MODE_ENFORCE, 0xbe9c0000ull};
  if (door) {
    sc.door_port4 = sc.door_port6 = sink.tcp_port();
    sc.dns_port4 = sc.dns_port6 = sink.udp_port();
  }
  auto loaded = acp::kernel::SockPrograms::load(sc);
  if (!loaded) die(loaded.error().message());
  std::optional<acp::kernel::SockPrograms> progs(std::move(*loaded));
  for (auto text : {"127.0.0.1:" + std::to_string(sink.tcp_port()),
                    "127.0.0.1:" + std::to_string(sink.udp_port()) + "/udp"}) {
    auto ep = acp::kernel::parse_endpoint(text);
    if (!ep || !progs->allow(*ep)) die("allow " + text);
  }
  if (auto st = progs->attach(walled->fd()); !st) die(st.error().message());

  sockaddr_in tcp{}, udp{};
  tcp.sin_family = udp.sin_family = AF_INET;
  tcp.sin_addr.s_addr = udp.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  tcp.sin_port = htons(sink.tcp_port());
  udp.sin_port = htons(sink.udp_port());
  const int cpu = sysconf(_SC_NPROCESSORS_ONLN) > 1 ? 1 : 0;

  std::printf("connect() latency, %d rounds x %d calls per side, worker pinned to CPU %d%s\n",
              rounds, iterations, cpu, door ? ", the door's programs (--door)" : "");
  std::printf("%-14s %10s %10s %10s   %10s %10s %10s   %7s %7s\n", "", "in p50", "in p99",
              "in mean", "out p50", "out p99", "out mean", "p50 x", "p99 x");
  const std::string in_procs = walled->path() + "/cgroup.procs";
  const std::string out_procs = bare->path() + "/cgroup.procs";
  for (Test t : kTests) {
    std::vector<uint32_t> in, out;
    for (int r = 0; r < rounds; r++) {
      // Alternate which side goes first.
      for (int k = 0; k < 2; k++) {
        bool inside = (r + k) % 2 == 0;
        auto s = run_worker(inside ? in_procs : out_procs, t, tcp, udp, iterations, cpu);
        (inside ? in : out).insert((inside ? in : out).end(), s.begin(), s.end());
      }
    }
    Stats si = stats(in), so = stats(out);
    std::printf("%-14s %8.2fus %8.2fus %8.2fus   %8.2fus %8.2fus %8.2fus   %6.3fx %6.3fx\n",
                test_name(t), si.p50, si.p99, si.mean, so.p50, so.p99, so.mean, si.p50 / so.p50,
                si.p99 / so.p99);
  }

  // BPF program run time, from the kernel's own accounting (bpf_stats), in a separate pass:
  // enabling the stats adds two clock reads per program run.
  int stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
  if (stats_fd < 0) {
    std::printf("bpf_stats: not available (%s)\n", std::strerror(errno));
  } else {
    UniqueFd keep(stats_fd);
    std::vector<uint32_t> ids;
    for (auto type :
         {BPF_CGROUP_INET4_CONNECT, BPF_CGROUP_UDP4_SENDMSG, BPF_CGROUP_INET_SOCK_CREATE,
          BPF_CGROUP_INET_EGRESS, BPF_CGROUP_SOCK_OPS, BPF_CGROUP_UDP4_RECVMSG}) {
      auto got = attached_progs(walled->fd(), type);
      ids.insert(ids.end(), got.begin(), got.end());
    }
    auto before = prog_runs(ids);
    for (Test t : kTests) (void)run_worker(in_procs, t, tcp, udp, iterations, cpu);
    auto after = prog_runs(ids);
    std::printf("BPF program run time (bpf_stats, %d calls of each test inside):\n", iterations);
    for (const auto& [id, a] : after) {
      const ProgRun& b = before[id];
      uint64_t cnt = a.cnt - b.cnt, ns = a.ns - b.ns;
      std::printf("  %-16s runs %8llu  avg %6.1f ns\n", a.name.c_str(),
                  static_cast<unsigned long long>(cnt),
                  cnt ? static_cast<double>(ns) / static_cast<double>(cnt) : 0.0);
    }
  }

  progs.reset();  // never pinned: destroying it detaches the programs
  (void)walled->kill_all(std::chrono::seconds(5));
  (void)bare->kill_all(std::chrono::seconds(5));
  if (auto st = walled->remove(); !st) die(st.error().message());
  if (auto st = bare->remove(); !st) die(st.error().message());
  return 0;
}
