// The real BPF wall on the real kernel: load, attach to a scratch cgroup, and let forked
// children inside the cgroup try to get out. Every denied attempt has a control that succeeds
// outside the cgroup, so an EPERM can only come from the wall.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "acp/cgroup/mounts.hpp"
#include "acp/kernel/bpffs.hpp"
#include "acp/kernel/endpoint.hpp"
#include "acp/kernel/event_reader.hpp"
#include "acp/kernel/pinned_session.hpp"
#include "acp/kernel/probe.hpp"
#include "acp/kernel/session_maps.hpp"
#include "acp/kernel/sock_programs.hpp"
#include "acp/util/unique_fd.hpp"

namespace {

using acp::UniqueFd;
using acp::kernel::Endpoint;
using acp::kernel::EventReader;
using acp::kernel::PinnedSession;
using acp::kernel::SockPrograms;

constexpr const char* kChildComm = "acpt-child";

// A scratch cgroup under the cgroup2 mount: acp-test-<pid>-<n>. The destructor kills whatever
// is left inside and removes it.
class TestCgroup {
 public:
  explicit TestCgroup(const std::string& root) {
    static std::atomic<int> seq{0};
    path_ = root + "/acp-test-" + std::to_string(getpid()) + "-" + std::to_string(seq++);
    if (::mkdir(path_.c_str(), 0755) != 0) {
      error_ = "mkdir " + path_ + ": " + std::strerror(errno);
      path_.clear();
      return;
    }
    fd_ = UniqueFd(::open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  }
  ~TestCgroup() {
    fd_.reset();
    if (path_.empty()) return;
    if (FILE* f = std::fopen((path_ + "/cgroup.kill").c_str(), "w")) {
      std::fputs("1", f);
      std::fclose(f);
    }
    // The kernel may call a cgroup busy for a moment after its last process is reaped.
    for (int i = 0; i < 400; i++) {
      if (::rmdir(path_.c_str()) == 0 || errno != EBUSY) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  TestCgroup(const TestCgroup&) = delete;
  TestCgroup& operator=(const TestCgroup&) = delete;

  bool ok() const { return fd_.valid(); }
  const std::string& error() const { return error_; }
  const std::string& path() const { return path_; }
  int fd() const { return fd_.get(); }

 private:
  std::string path_, error_;
  UniqueFd fd_;
};

// Takes a pinned wall down if the test did not (a failed assertion returns early).
struct PinGuard {
  std::string dir;
  ~PinGuard() {
    if (!dir.empty()) (void)acp::kernel::detach_and_unpin(dir);
  }
};

struct Listener {
  UniqueFd fd;
  uint16_t port = 0;
};

Listener listen_on(int family, int type, const char* addr) {
  Listener l;
  l.fd = UniqueFd(::socket(family, type | SOCK_CLOEXEC, 0));
  sockaddr_storage ss{};
  socklen_t len;
  if (family == AF_INET) {
    auto* s = reinterpret_cast<sockaddr_in*>(&ss);
    s->sin_family = AF_INET;
    inet_pton(AF_INET, addr, &s->sin_addr);
    len = sizeof(*s);
  } else {
    auto* s = reinterpret_cast<sockaddr_in6*>(&ss);
    s->sin6_family = AF_INET6;
    inet_pton(AF_INET6, addr, &s->sin6_addr);
    len = sizeof(*s);
  }
  if (::bind(l.fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) return {};
  if (type == SOCK_STREAM && ::listen(l.fd.get(), 64) != 0) return {};
  len = sizeof(ss);
  ::getsockname(l.fd.get(), reinterpret_cast<sockaddr*>(&ss), &len);
  l.port = ntohs(family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                   : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return l;
}

// Fills a sockaddr for "127.0.0.1", "::1" or "::ffff:127.0.0.1".
socklen_t make_addr(int family, const char* addr, uint16_t port, sockaddr_storage* ss) {
  *ss = {};
  if (family == AF_INET) {
    auto* s = reinterpret_cast<sockaddr_in*>(ss);
    s->sin_family = AF_INET;
    s->sin_port = htons(port);
    inet_pton(AF_INET, addr, &s->sin_addr);
    return sizeof(*s);
  }
  auto* s = reinterpret_cast<sockaddr_in6*>(ss);
  s->sin6_family = AF_INET6;
  s->sin6_port = htons(port);
  inet_pton(AF_INET6, addr, &s->sin6_addr);
  return sizeof(*s);
}

// The attempts a child makes: each returns 0 on success or the errno.
int tcp_connect(int family, const char* addr, uint16_t port) {
  int fd = ::socket(family, SOCK_STREAM, 0);
  if (fd < 0) return errno;
  sockaddr_storage ss;
  socklen_t len = make_addr(family, addr, port, &ss);
  int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) == 0 ? 0 : errno;
  ::close(fd);
  return rc;
}

int udp_sendto(int family, const char* addr, uint16_t port) {
  int fd = ::socket(family, SOCK_DGRAM, 0);
  if (fd < 0) return errno;
  sockaddr_storage ss;
  socklen_t len = make_addr(family, addr, port, &ss);
  int rc = ::sendto(fd, "x", 1, 0, reinterpret_cast<sockaddr*>(&ss), len) == 1 ? 0 : errno;
  ::close(fd);
  return rc;
}

int raw_socket() {
  int fd = ::socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
  if (fd < 0) return errno;
  ::close(fd);
  return 0;
}

struct Attempt {
  int result = -1;  // 0, an errno, or -1 when the child did not report
  pid_t pid = -1;
};

// Forks a child named kChildComm that first moves itself into `cgroup` (unless empty), then
// makes one attempt and reports its errno through a pipe. The child is always reaped.
Attempt attempt_in(const std::string& cgroup, const std::function<int()>& attempt) {
  Attempt a;
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return a;
  UniqueFd rd(p[0]), wr(p[1]);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::alarm(10);  // never hang the suite
    ::prctl(PR_SET_NAME, kChildComm);
    if (!cgroup.empty()) {
      int fd = ::open((cgroup + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0 || ::write(fd, "0", 1) != 1) _exit(100);
      ::close(fd);
    }
    int r = attempt();
    (void)!::write(wr.get(), &r, sizeof(r));
    _exit(0);
  }
  if (pid < 0) return a;
  a.pid = pid;
  wr.reset();
  int r;
  if (::read(rd.get(), &r, sizeof(r)) == sizeof(r)) a.result = r;
  int status;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return a;
}

Endpoint ep(const char* text) {
  auto r = acp::kernel::parse_endpoint(text);
  EXPECT_TRUE(r.ok()) << text;
  return r.ok() ? *r : Endpoint{};
}

bool is_loopback4(const acp_event& e) {
  static const uint8_t want[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
  return std::memcmp(e.addr, want, 16) == 0;
}

class KernelPrograms : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!acp::kernel::bpf_backend_supported(&why)) GTEST_SKIP() << "bpf backend: " << why;
    auto root = acp::cgroup2_mount_point();
    ASSERT_TRUE(root.ok()) << root.error().message();
    root_ = *root;
    cg_.emplace(root_);
    ASSERT_TRUE(cg_->ok()) << cg_->error();

    tcp4_allowed_ = listen_on(AF_INET, SOCK_STREAM, "127.0.0.1");
    tcp4_other_ = listen_on(AF_INET, SOCK_STREAM, "127.0.0.1");
    tcp6_allowed_ = listen_on(AF_INET6, SOCK_STREAM, "::1");
    tcp6_other_ = listen_on(AF_INET6, SOCK_STREAM, "::1");
    udp4_allowed_ = listen_on(AF_INET, SOCK_DGRAM, "127.0.0.1");
    udp4_other_ = listen_on(AF_INET, SOCK_DGRAM, "127.0.0.1");
    for (auto* l :
         {&tcp4_allowed_, &tcp4_other_, &tcp6_allowed_, &tcp6_other_, &udp4_allowed_, &udp4_other_})
      ASSERT_NE(l->port, 0) << "loopback listener";

    session_id_ = 0xac90000000000000ull | static_cast<uint64_t>(getpid());
    auto progs = SockPrograms::load({ACP_MODE_ENFORCE, session_id_});
    ASSERT_TRUE(progs.ok()) << progs.error().message();
    progs_.emplace(std::move(*progs));
    for (const Endpoint& e : allowed()) ASSERT_TRUE(progs_->allow(e).ok());
    auto st = progs_->attach(cg_->fd());
    ASSERT_TRUE(st.ok()) << st.error().message();
    ASSERT_TRUE(progs_->attached());
  }

  std::vector<Endpoint> allowed() const {
    auto port = [](uint16_t p) { return std::to_string(p); };
    return {ep(("127.0.0.1:" + port(tcp4_allowed_.port)).c_str()),
            ep(("[::1]:" + port(tcp6_allowed_.port)).c_str()),
            ep(("127.0.0.1:" + port(udp4_allowed_.port) + "/udp").c_str())};
  }

  // Events drained from `fd` (the live or the pinned events map).
  std::vector<acp_event> drain(int fd) {
    std::vector<acp_event> got;
    auto reader = EventReader::create(fd, [&got](const acp_event& e) { got.push_back(e); });
    EXPECT_TRUE(reader.ok()) << reader.error().message();
    if (!reader.ok()) return got;
    auto n = reader->consume();
    EXPECT_TRUE(n.ok());
    return got;
  }

  Attempt inside(const std::function<int()>& f) { return attempt_in(cg_->path(), f); }
  static Attempt outside(const std::function<int()>& f) { return attempt_in("", f); }

  std::string root_;
  std::optional<TestCgroup> cg_;
  Listener tcp4_allowed_, tcp4_other_, tcp6_allowed_, tcp6_other_, udp4_allowed_, udp4_other_;
  uint64_t session_id_ = 0;
  std::optional<SockPrograms> progs_;  // destroyed before cg_ (declared after it)
};

TEST_F(KernelPrograms, OnlyAllowedEndpointsPassEveryFamilyAndProtocol) {
  auto reader_events = std::vector<acp_event>{};
  auto reader = EventReader::create(progs_->events_fd(),
                                    [&](const acp_event& e) { reader_events.push_back(e); });
  ASSERT_TRUE(reader.ok()) << reader.error().message();

  const uint16_t a4 = tcp4_allowed_.port, o4 = tcp4_other_.port, a6 = tcp6_allowed_.port,
                 o6 = tcp6_other_.port, au = udp4_allowed_.port, ou = udp4_other_.port;
  // Allowed: TCP to 127.0.0.1, to [::1], to ::ffff:127.0.0.1 (the same key), UDP allowed.
  EXPECT_EQ(inside([&] { return tcp_connect(AF_INET, "127.0.0.1", a4); }).result, 0);
  EXPECT_EQ(inside([&] { return tcp_connect(AF_INET6, "::1", a6); }).result, 0);
  EXPECT_EQ(inside([&] { return tcp_connect(AF_INET6, "::ffff:127.0.0.1", a4); }).result, 0);
  EXPECT_EQ(inside([&] { return udp_sendto(AF_INET, "127.0.0.1", au); }).result, 0);
  // The allowed TCP port does not open UDP to it, nor the v4 one the v6 loopback.
  EXPECT_EQ(inside([&] { return udp_sendto(AF_INET, "127.0.0.1", a4); }).result, EPERM);

  struct Denied {
    const char* what;
    std::function<int()> attempt;
  };
  const Denied denied[] = {
      {"tcp 127.0.0.1 other port", [&] { return tcp_connect(AF_INET, "127.0.0.1", o4); }},
      {"tcp [::1] other port", [&] { return tcp_connect(AF_INET6, "::1", o6); }},
      {"tcp ::ffff:127.0.0.1 other port",
       [&] { return tcp_connect(AF_INET6, "::ffff:127.0.0.1", o4); }},
      {"udp sendto other port", [&] { return udp_sendto(AF_INET, "127.0.0.1", ou); }},
      {"raw icmp socket", [] { return raw_socket(); }},
  };
  std::vector<pid_t> denied_pids;
  for (const auto& d : denied) {
    EXPECT_EQ(outside(d.attempt).result, 0) << "control outside the cgroup: " << d.what;
    Attempt in = inside(d.attempt);
    EXPECT_EQ(in.result, EPERM) << "inside the cgroup: " << d.what;
    denied_pids.push_back(in.pid);
  }

  // The udp-on-tcp-port attempt plus the five above: six events, in order, all ours.
  ASSERT_TRUE(reader->consume().ok());
  ASSERT_EQ(reader_events.size(), 6u);
  for (const auto& e : reader_events) {
    EXPECT_EQ(std::string(e.comm), kChildComm);
    EXPECT_EQ(e.verdict, ACP_VERDICT_DENY);
    EXPECT_EQ(e.session_id, session_id_);
    EXPECT_EQ(e.uid, getuid());
    EXPECT_EQ(e.pid, e.tid);
  }
  const acp_event* ev = &reader_events[1];  // tcp 127.0.0.1 other port
  EXPECT_EQ(ev->pid, static_cast<uint32_t>(denied_pids[0]));
  EXPECT_EQ(ev->hook, ACP_HOOK_CONNECT4);
  EXPECT_EQ(ev->port, o4);
  EXPECT_TRUE(is_loopback4(*ev));
  EXPECT_EQ(ev->family, AF_INET);
  EXPECT_EQ(ev->sock_type, SOCK_STREAM);
  EXPECT_EQ(ev->protocol, ACP_PROTO_TCP);
  EXPECT_EQ(acp::kernel::describe_event(*ev),
            "denied connect4 pid " + std::to_string(denied_pids[0]) + " (acpt-child) uid " +
                std::to_string(getuid()) + " -> " + "127.0.0.1:" + std::to_string(o4) + "/tcp");
  ev = &reader_events[2];  // [::1]
  EXPECT_EQ(ev->pid, static_cast<uint32_t>(denied_pids[1]));
  EXPECT_EQ(ev->hook, ACP_HOOK_CONNECT6);
  EXPECT_EQ(ev->port, o6);
  EXPECT_EQ(ev->family, AF_INET6);
  EXPECT_EQ(ev->addr[15], 1);
  ev = &reader_events[3];  // mapped: judged as the IPv4 address
  EXPECT_EQ(ev->pid, static_cast<uint32_t>(denied_pids[2]));
  EXPECT_EQ(ev->hook, ACP_HOOK_CONNECT6);
  EXPECT_TRUE(is_loopback4(*ev));
  EXPECT_EQ(ev->port, o4);
  ev = &reader_events[4];
  EXPECT_EQ(ev->pid, static_cast<uint32_t>(denied_pids[3]));
  EXPECT_EQ(ev->hook, ACP_HOOK_SENDMSG4);
  EXPECT_EQ(ev->port, ou);
  EXPECT_EQ(ev->protocol, ACP_PROTO_UDP);
  ev = &reader_events[5];
  EXPECT_EQ(ev->pid, static_cast<uint32_t>(denied_pids[4]));
  EXPECT_EQ(ev->hook, ACP_HOOK_SOCK_CREATE);
  EXPECT_EQ(ev->family, AF_INET);
  EXPECT_EQ(ev->sock_type, SOCK_RAW);
  EXPECT_EQ(ev->protocol, IPPROTO_ICMP);

  // Counters: exactly what the children did (the controls ran outside the cgroup).
  auto c = acp::kernel::read_counters(progs_->map_fd("counters"));
  ASSERT_TRUE(c.ok()) << c.error().message();
  EXPECT_EQ(c->allowed[ACP_FAM_INET][ACP_PRO_TCP], 2u);  // 127.0.0.1 and the mapped form
  EXPECT_EQ(c->allowed[ACP_FAM_INET6][ACP_PRO_TCP], 1u);
  EXPECT_EQ(c->allowed[ACP_FAM_INET][ACP_PRO_UDP], 1u);
  EXPECT_EQ(c->denied[ACP_FAM_INET][ACP_PRO_TCP], 2u);  // other port, mapped other port
  EXPECT_EQ(c->denied[ACP_FAM_INET6][ACP_PRO_TCP], 1u);
  EXPECT_EQ(c->denied[ACP_FAM_INET][ACP_PRO_UDP], 2u);
  EXPECT_EQ(c->denied[ACP_FAM_INET][ACP_PRO_OTHER], 1u);  // raw socket
  EXPECT_EQ(c->total_denied(), 6u);
  EXPECT_EQ(c->total_allowed(), 4u);

  auto lost = acp::kernel::read_lost_events(progs_->map_fd("lost_events"));
  ASSERT_TRUE(lost.ok());
  EXPECT_EQ(*lost, 0u);
}

TEST_F(KernelPrograms, DisallowClosesTheDoorAtOnce) {
  const uint16_t a4 = tcp4_allowed_.port;
  EXPECT_EQ(inside([&] { return tcp_connect(AF_INET, "127.0.0.1", a4); }).result, 0);
  ASSERT_TRUE(progs_->disallow(allowed()[0]).ok());
  EXPECT_EQ(inside([&] { return tcp_connect(AF_INET, "127.0.0.1", a4); }).result, EPERM);
  EXPECT_TRUE(progs_->disallow(allowed()[0]).ok()) << "removing twice is fine";
  auto left = acp::kernel::read_allow_entries(progs_->map_fd("allow_map"));
  ASSERT_TRUE(left.ok());
  EXPECT_EQ(left->size(), 2u);
}

TEST_F(KernelPrograms, AuditModeLetsThroughAndReports) {
  const uint16_t o4 = tcp4_other_.port;
  ASSERT_TRUE(progs_->set_mode(ACP_MODE_AUDIT).ok());
  Attempt a = inside([&] { return tcp_connect(AF_INET, "127.0.0.1", o4); });
  EXPECT_EQ(a.result, 0);
  EXPECT_EQ(inside([] { return raw_socket(); }).result, 0);

  auto events = drain(progs_->events_fd());
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].verdict, ACP_VERDICT_AUDIT_DENY);
  EXPECT_EQ(events[0].pid, static_cast<uint32_t>(a.pid));
  EXPECT_EQ(events[0].port, o4);
  EXPECT_EQ(events[1].verdict, ACP_VERDICT_AUDIT_DENY);
  EXPECT_EQ(events[1].hook, ACP_HOOK_SOCK_CREATE);
  EXPECT_EQ(acp::kernel::describe_event(events[0]).rfind("audit: would deny connect4 pid ", 0), 0u);
  auto c = acp::kernel::read_counters(progs_->map_fd("counters"));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->denied[ACP_FAM_INET][ACP_PRO_TCP], 1u) << "audited denials are counted as denials";

  // Back to enforce: the next attempt is refused, no restart needed.
  ASSERT_TRUE(progs_->set_mode(ACP_MODE_ENFORCE).ok());
  EXPECT_EQ(inside([&] { return tcp_connect(AF_INET, "127.0.0.1", o4); }).result, EPERM);
  EXPECT_FALSE(progs_->set_mode(7).ok()) << "a mode the programs do not know is refused";
}

TEST_F(KernelPrograms, PinnedWallOutlivesItsOwnerUntilDetached) {
  const uint16_t a4 = tcp4_allowed_.port, o4 = tcp4_other_.port;
  PinGuard guard{std::string(acp::kernel::kBpffsMountPoint) + "/acp-test-" +
                 std::to_string(getpid())};
  ASSERT_TRUE(acp::kernel::ensure_bpffs().ok());
  auto st = progs_->pin(guard.dir);
  ASSERT_TRUE(st.ok()) << st.error().message();
  // Pinning twice into the same dir fails and leaves the first pins intact.
  EXPECT_FALSE(progs_->pin(guard.dir).ok());

  progs_.reset();  // the owner is gone, as if acp had crashed

  // Fail-closed: the wall holds, the allow map with it.
  Attempt denied = inside([&] { return tcp_connect(AF_INET, "127.0.0.1", o4); });
  EXPECT_EQ(denied.result, EPERM);
  EXPECT_EQ(inside([&] { return tcp_connect(AF_INET, "127.0.0.1", a4); }).result, 0);

  auto s = PinnedSession::open(guard.dir);
  ASSERT_TRUE(s.ok()) << s.error().message();
  auto entries = s->allow_entries();
  ASSERT_TRUE(entries.ok());
  auto want = allowed();
  std::sort(want.begin(), want.end(), [](const Endpoint& a, const Endpoint& b) {
    return std::tie(a.addr, a.port, a.proto) < std::tie(b.addr, b.port, b.proto);
  });
  EXPECT_EQ(*entries, want);

  auto links = s->links();
  ASSERT_TRUE(links.ok()) << links.error().message();
  // The local-IPC links (Linux 6.7+ with BTF) come on top of the IP wall's six.
  std::vector<acp::kernel::LinkInfo> unix_links;
  for (auto it = links->begin(); it != links->end();)
    if (it->pin_name == "link_connect_unix" || it->pin_name == "link_sendmsg_unix") {
      unix_links.push_back(*it);
      it = links->erase(it);
    } else {
      ++it;
    }
  ASSERT_TRUE(unix_links.empty() || unix_links.size() == 2u) << unix_links.size();
  for (const auto& l : unix_links)
    EXPECT_EQ(l.attach_type,
              l.pin_name == "link_connect_unix" ? "cgroup_unix_connect" : "cgroup_unix_sendmsg");
  ASSERT_EQ(links->size(), 6u);
  struct stat cg_st {};
  ASSERT_EQ(::stat(cg_->path().c_str(), &cg_st), 0);
  std::set<std::string> types, pins, names;
  for (const auto& l : *links) {
    types.insert(l.attach_type);
    pins.insert(l.pin_name);
    names.insert(l.prog_name);
    EXPECT_NE(l.link_id, 0u);
    EXPECT_NE(l.prog_id, 0u);
    EXPECT_EQ(l.cgroup_id, cg_st.st_ino) << l.pin_name;
  }
  EXPECT_EQ(types, (std::set<std::string>{"cgroup_inet4_connect", "cgroup_inet6_connect",
                                          "cgroup_udp4_sendmsg", "cgroup_udp6_sendmsg",
                                          "cgroup_inet_sock_create", "cgroup_inet_egress"}));
  EXPECT_EQ(pins, (std::set<std::string>{"link_connect4", "link_connect6", "link_sendmsg4",
                                         "link_sendmsg6", "link_sock_create", "link_egress"}));
  EXPECT_EQ(names, (std::set<std::string>{"acp_connect4", "acp_connect6", "acp_sendmsg4",
                                          "acp_sendmsg6", "acp_sock_create", "acp_egress"}));

  auto cfg = s->config();
  ASSERT_TRUE(cfg.ok());
  EXPECT_EQ(cfg->mode, static_cast<uint32_t>(ACP_MODE_ENFORCE));
  EXPECT_EQ(cfg->session_id, session_id_);
  auto c = s->counters();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->denied[ACP_FAM_INET][ACP_PRO_TCP], 1u);
  EXPECT_EQ(c->allowed[ACP_FAM_INET][ACP_PRO_TCP], 1u);
  auto recent = s->recent_events();
  ASSERT_TRUE(recent.ok());
  ASSERT_EQ(recent->size(), 1u);
  EXPECT_EQ(recent->front().pid, static_cast<uint32_t>(denied.pid));
  EXPECT_EQ(recent->front().port, o4);
  auto lost = s->lost_events();
  ASSERT_TRUE(lost.ok());
  EXPECT_EQ(*lost, 0u);
  // The ring buffer outlived its owner too: a new reader on the pinned map gets the event.
  auto live = drain(s->map_fd("events"));
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].pid, static_cast<uint32_t>(denied.pid));

  // The mode can be switched from the pins alone.
  ASSERT_TRUE(s->set_mode(ACP_MODE_AUDIT).ok());
  EXPECT_EQ(inside([&] { return tcp_connect(AF_INET, "127.0.0.1", o4); }).result, 0);
  ASSERT_TRUE(s->set_mode(ACP_MODE_ENFORCE).ok());
  EXPECT_EQ(inside([&] { return tcp_connect(AF_INET, "127.0.0.1", o4); }).result, EPERM);

  // Tear down while PinnedSession still holds map fds: the links go regardless.
  auto down = acp::kernel::detach_and_unpin(guard.dir);
  ASSERT_TRUE(down.ok()) << down.error().message();
  EXPECT_EQ(inside([&] { return tcp_connect(AF_INET, "127.0.0.1", o4); }).result, 0);
  EXPECT_EQ(inside([] { return raw_socket(); }).result, 0);
  EXPECT_FALSE(std::filesystem::exists(guard.dir));
  EXPECT_TRUE(acp::kernel::detach_and_unpin(guard.dir).ok()) << "idempotent";
  EXPECT_FALSE(PinnedSession::open(guard.dir).ok());
}

TEST_F(KernelPrograms, UnpinnedWallComesDownWithItsOwner) {
  const uint16_t o4 = tcp4_other_.port;
  EXPECT_EQ(inside([&] { return tcp_connect(AF_INET, "127.0.0.1", o4); }).result, EPERM);
  progs_.reset();
  EXPECT_EQ(inside([&] { return tcp_connect(AF_INET, "127.0.0.1", o4); }).result, 0);
}

TEST_F(KernelPrograms, TwoSessionsDoNotDisturbEachOther) {
  TestCgroup other(root_);
  ASSERT_TRUE(other.ok()) << other.error();
  auto progs_b = SockPrograms::load({ACP_MODE_ENFORCE, session_id_ + 1});
  ASSERT_TRUE(progs_b.ok()) << progs_b.error().message();
  const uint16_t a4 = tcp4_allowed_.port, o4 = tcp4_other_.port;
  ASSERT_TRUE(progs_b->allow(ep(("127.0.0.1:" + std::to_string(o4)).c_str())).ok());
  ASSERT_TRUE(progs_b->attach(other.fd()).ok());

  // Session A: a4 only. Session B: o4 only.
  EXPECT_EQ(inside([&] { return tcp_connect(AF_INET, "127.0.0.1", a4); }).result, 0);
  EXPECT_EQ(inside([&] { return tcp_connect(AF_INET, "127.0.0.1", o4); }).result, EPERM);
  auto in_b = [&](const std::function<int()>& f) { return attempt_in(other.path(), f).result; };
  EXPECT_EQ(in_b([&] { return tcp_connect(AF_INET, "127.0.0.1", o4); }), 0);
  EXPECT_EQ(in_b([&] { return tcp_connect(AF_INET, "127.0.0.1", a4); }), EPERM);

  auto ca = acp::kernel::read_counters(progs_->map_fd("counters"));
  auto cb = acp::kernel::read_counters(progs_b->map_fd("counters"));
  ASSERT_TRUE(ca.ok() && cb.ok());
  EXPECT_EQ(ca->total_denied(), 1u);
  EXPECT_EQ(ca->total_allowed(), 1u);
  EXPECT_EQ(cb->total_denied(), 1u);
  EXPECT_EQ(cb->total_allowed(), 1u);
  auto eb = drain(progs_b->events_fd());
  ASSERT_EQ(eb.size(), 1u);
  EXPECT_EQ(eb[0].session_id, session_id_ + 1);
  EXPECT_EQ(eb[0].port, a4);
}

TEST_F(KernelPrograms, EventReaderWakesItsEpollFdAndSurvivesAMove) {
  std::vector<acp_event> got;
  auto created =
      EventReader::create(progs_->events_fd(), [&got](const acp_event& e) { got.push_back(e); });
  ASSERT_TRUE(created.ok()) << created.error().message();
  EventReader reader = std::move(*created);  // libbpf holds a pointer to the callback state
  pollfd pfd{reader.epoll_fd(), POLLIN, 0};
  ASSERT_GE(pfd.fd, 0);
  EXPECT_EQ(::poll(&pfd, 1, 0), 0) << "nothing to read yet";

  const uint16_t o6 = tcp6_other_.port;
  EXPECT_EQ(inside([&] { return tcp_connect(AF_INET6, "::1", o6); }).result, EPERM);
  // The event was submitted before connect() returned: the fd is readable now, no waiting.
  EXPECT_EQ(::poll(&pfd, 1, 0), 1);
  auto n = reader.poll(0);
  ASSERT_TRUE(n.ok()) << n.error().message();
  EXPECT_EQ(*n, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].port, o6);
  EXPECT_EQ(reader.malformed(), 0u);
  auto again = reader.consume();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, 0);
}

TEST_F(KernelPrograms, PinnedWallOfARemovedCgroupStillTearsDown) {
  // `acp gc` after the session cgroup is gone: the links are defunct but pinned.
  PinGuard guard{std::string(acp::kernel::kBpffsMountPoint) + "/acp-test-" +
                 std::to_string(getpid()) + "-gone"};
  ASSERT_TRUE(progs_->pin(guard.dir).ok());
  progs_.reset();
  cg_.reset();  // kills and removes the cgroup
  auto s = PinnedSession::open(guard.dir);
  ASSERT_TRUE(s.ok()) << s.error().message();
  auto links = s->links();
  ASSERT_TRUE(links.ok()) << links.error().message();
  EXPECT_TRUE(links->size() == 6u || links->size() == 8u) << links->size();  // + unix, 6.7+
  auto down = acp::kernel::detach_and_unpin(guard.dir);
  ASSERT_TRUE(down.ok()) << down.error().message();
  EXPECT_FALSE(std::filesystem::exists(guard.dir));
}

// The probe itself: everything required is there on the test machines, and it cleans up.
TEST(KernelProbe, FindsTheBackendAndLeavesNothingBehind) {
  if (geteuid() != 0) GTEST_SKIP() << "the probe's decisive checks need root";
  auto features = acp::kernel::probe_kernel_features();
  std::set<std::string> names;
  for (const auto& f : features) {
    names.insert(f.name);
    if (f.required) {
      EXPECT_TRUE(f.ok) << f.name << ": " << f.detail;
    }
    EXPECT_FALSE(f.detail.empty()) << f.name;
    EXPECT_FALSE(f.remedy.empty() && !f.ok) << f.name;
  }
  for (const char* n :
       {"privileges", "cgroup2", "bpffs", "attach cgroup programs", "clone3 into cgroup",
        "cgroup.kill", "local IPC wall (cgroup/connect_unix)"})
    EXPECT_TRUE(names.count(n)) << n;
  auto root = acp::cgroup2_mount_point();
  ASSERT_TRUE(root.ok());
  std::string prefix = "acp-probe-" + std::to_string(getpid()) + "-";
  for (const auto& e : std::filesystem::directory_iterator(*root))
    EXPECT_NE(e.path().filename().string().rfind(prefix, 0), 0u) << "left behind: " << e.path();
}

TEST(KernelProbe, DoctorSaysAvailable) {
  std::string why;
  if (!acp::kernel::bpf_backend_supported(&why)) GTEST_SKIP() << "bpf backend: " << why;
  FILE* p = ::popen(ACP_BINARY " doctor 2>&1", "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[512];
  while (size_t n = std::fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  int status = ::pclose(p);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << out;
  EXPECT_NE(out.find("\u2714 cgroup2"), std::string::npos) << out;
  EXPECT_NE(out.find("bpf backend: available"), std::string::npos) << out;
}

}  // namespace

// The daemon's warm set (SockPrograms::preload): the next load() with the same door takes it,
// with the new session's mode and id in its config and nothing of anyone in its maps; a load()
// with the other door does not take it.
TEST(KernelPreload, APreloadedSetIsTakenWithTheNewSessionsConfigAndNothingElse) {
  std::string why;
  if (!acp::kernel::bpf_backend_supported(&why)) GTEST_SKIP() << "bpf backend: " << why;
  using acp::kernel::SockPrograms;
  ASSERT_TRUE(SockPrograms::preload({.mode = ACP_MODE_ENFORCE, .session_id = 1}).ok());
  EXPECT_EQ(SockPrograms::preloaded_door_on(), std::optional<bool>(false));
  auto door = SockPrograms::load(
      {.mode = ACP_MODE_ENFORCE, .session_id = 7, .door_port4 = 4711, .door_port6 = 4712});
  ASSERT_TRUE(door.ok()) << door.error().message();
  EXPECT_TRUE(door->door_on());  // not the preloaded (door off) set: that one is still there
  EXPECT_EQ(SockPrograms::preloaded_door_on(), std::optional<bool>(false));
  auto taken = SockPrograms::load({.mode = ACP_MODE_AUDIT, .session_id = 42});
  ASSERT_TRUE(taken.ok()) << taken.error().message();
  EXPECT_EQ(SockPrograms::preloaded_door_on(), std::nullopt);  // taken
  EXPECT_FALSE(taken->door_on());
  auto cfg = acp::kernel::read_config(taken->map_fd("config_map"));
  ASSERT_TRUE(cfg.ok());
  EXPECT_EQ(cfg->mode, static_cast<uint32_t>(ACP_MODE_AUDIT));
  EXPECT_EQ(cfg->session_id, 42u);
  EXPECT_EQ(cfg->door_port4, 0);
  auto allow = acp::kernel::read_allow_entries(taken->map_fd("allow_map"));
  ASSERT_TRUE(allow.ok());
  EXPECT_TRUE(allow->empty());
  // The pool is empty again: the next load is a fresh one, and works.
  auto fresh = SockPrograms::load({.mode = ACP_MODE_ENFORCE, .session_id = 43});
  ASSERT_TRUE(fresh.ok()) << fresh.error().message();
  EXPECT_NE(fresh->map_fd("config_map"), taken->map_fd("config_map"));
  auto fcfg = acp::kernel::read_config(fresh->map_fd("config_map"));
  ASSERT_TRUE(fcfg.ok());
  EXPECT_EQ(fcfg->session_id, 43u);
}
