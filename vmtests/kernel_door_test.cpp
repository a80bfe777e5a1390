// The transparent door's kernel side on the real kernel (issue 16 point 1): the session's real
// BPF programs (SockPrograms, door on) in a scratch cgroup. A child in the cgroup connects to an
// address the allow map does not hold (the test host of a network namespace this test made);
// the connection lands on a listener standing in for the proxy's transparent port, which looks
// the original destination up through original_destination() and must get it exactly, while
// the child's getpeername() returns the original. With the door off: EPERM, as ever.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "acp/kernel/bpffs.hpp"
#include "acp/kernel/endpoint.hpp"
#include "acp/kernel/pinned_session.hpp"
#include "acp/kernel/probe.hpp"
#include "acp/kernel/session_maps.hpp"
#include "acp/kernel/sock_programs.hpp"
#include "acp/util/unique_fd.hpp"
#include "support/wall_fixture.hpp"

namespace {

using acp::UniqueFd;
using acp::kernel::Endpoint;
using acp::kernel::SockPrograms;
using acp::vmtest::BoundSocket;
using acp::vmtest::NetnsHost;
using acp::vmtest::ScratchCgroup;

constexpr uint16_t kOriginalPort = 7777;  // nothing listens there: only the door answers

// A sockaddr (AF_INET or AF_INET6) as an Endpoint, IPv4 in the mapped form.
Endpoint endpoint_of(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET) {
    const auto* s = reinterpret_cast<const sockaddr_in*>(&ss);
    return acp::kernel::endpoint_from_ip4(s->sin_addr.s_addr, ntohs(s->sin_port));
  }
  const auto* s = reinterpret_cast<const sockaddr_in6*>(&ss);
  std::array<uint8_t, 16> a{};
  std::memcpy(a.data(), &s->sin6_addr, 16);
  return acp::kernel::endpoint_from_ip6(a, ntohs(s->sin6_port));
}

socklen_t make_addr(int family, const std::string& addr, uint16_t port, sockaddr_storage* ss) {
  *ss = {};
  if (family == AF_INET) {
    auto* s = reinterpret_cast<sockaddr_in*>(ss);
    s->sin_family = AF_INET;
    s->sin_port = htons(port);
    inet_pton(AF_INET, addr.c_str(), &s->sin_addr);
    return sizeof(*s);
  }
  auto* s = reinterpret_cast<sockaddr_in6*>(ss);
  s->sin6_family = AF_INET6;
  s->sin6_port = htons(port);
  inet_pton(AF_INET6, addr.c_str(), &s->sin6_addr);
  return sizeof(*s);
}

// What the child reports: connect()'s errno (0: connected) and what getpeername() said.
struct ChildReport {
  int connect_errno = -1;
  int getpeername_errno = -1;
  sockaddr_storage peer{};
};

// A child in the cgroup that connects (TCP, or UDP with udp) to addr:port, reports, and keeps
// its socket open until the parent writes to `go`; then it aborts the connection (SO_LINGER 0:
// the kernel closes it at once, RST) and writes once more: from then on its socket is closed.
class Child {
 public:
  Child(const std::string& cgroup, int family, const std::string& addr, uint16_t port,
        int type = SOCK_STREAM) {
    int rep[2], go[2];
    if (::pipe2(rep, O_CLOEXEC) != 0 || ::pipe2(go, O_CLOEXEC) != 0) return;
    report_rd_ = UniqueFd(rep[0]);
    UniqueFd report_wr(rep[1]);
    UniqueFd go_rd(go[0]);
    go_wr_ = UniqueFd(go[1]);
    pid_ = ::fork();
    if (pid_ != 0) return;
    ::alarm(10);  // never hang the suite
    int cg = ::open((cgroup + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
    if (cg < 0 || ::write(cg, "0", 1) != 1) _exit(100);
    ChildReport r;
    int fd = ::socket(family, type, 0);
    sockaddr_storage ss;
    socklen_t len = make_addr(family, addr, port, &ss);
    r.connect_errno = ::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) == 0 ? 0 : errno;
    socklen_t plen = sizeof(r.peer);
    r.getpeername_errno =
        ::getpeername(fd, reinterpret_cast<sockaddr*>(&r.peer), &plen) == 0 ? 0 : errno;
    (void)!::write(report_wr.get(), &r, sizeof(r));
    char c;
    (void)!::read(go_rd.get(), &c, 1);
    linger lg{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    ::close(fd);
    (void)!::write(report_wr.get(), "c", 1);
    _exit(0);
  }
  ~Child() {
    go_wr_.reset();
    if (pid_ > 0) {
      int status;
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
    }
  }
  bool started() const { return pid_ > 0; }
  std::optional<ChildReport> report() {
    ChildReport r;
    if (::read(report_rd_.get(), &r, sizeof(r)) != sizeof(r)) return std::nullopt;
    return r;
  }
  // Tells the child to close its socket; returns once it has.
  bool close_socket() {
    char c = 'g';
    if (::write(go_wr_.get(), &c, 1) != 1) return false;
    return ::read(report_rd_.get(), &c, 1) == 1 && c == 'c';
  }

 private:
  pid_t pid_ = -1;
  UniqueFd report_rd_, go_wr_;
};

// Accepts one connection on fd within 5 s; invalid when none came.
UniqueFd accept_one(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, 5000) != 1) return UniqueFd();
  return UniqueFd(::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC));
}

bool nothing_to_accept(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 0;
}

Endpoint peer_of(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  EXPECT_EQ(::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len), 0);
  return endpoint_of(ss);
}

Endpoint ep(const std::string& text) {
  auto r = acp::kernel::parse_endpoint(text);
  EXPECT_TRUE(r.ok()) << text;
  return r.ok() ? *r : Endpoint{};
}

class KernelDoor : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!acp::kernel::bpf_backend_supported(&why)) GTEST_SKIP() << "bpf backend: " << why;
    auto host = NetnsHost::create();
    ASSERT_TRUE(host.ok()) << host.error().message();
    host_ = std::move(*host);
    auto door = acp::vmtest::bind_loopback_pair(SOCK_STREAM);
    ASSERT_TRUE(door.ok()) << door.error().message();
    door4_ = std::move(door->first);
    door6_ = std::move(door->second);
    auto proxy = acp::vmtest::bind_socket(SOCK_STREAM, "127.0.0.1");
    ASSERT_TRUE(proxy.ok()) << proxy.error().message();
    proxy_ = std::move(*proxy);
  }

  // A session wall on a fresh cgroup: the explicit proxy port allowed, the door on
  // (door_port = the stand-in's port) or off (0).
  void make_wall(uint16_t door_port) {
    auto cg = ScratchCgroup::create();
    ASSERT_TRUE(cg.ok()) << cg.error().message();
    cg_ = std::move(*cg);
    acp::kernel::SockConfig cfg;
    cfg.session_id = 0xd0040000ull | static_cast<uint64_t>(getpid());
    cfg.door_port4 = door_port;
    cfg.door_port6 = door_port;
    auto progs = SockPrograms::load(cfg);
    ASSERT_TRUE(progs.ok()) << progs.error().message();
    progs_.emplace(std::move(*progs));
    ASSERT_EQ(progs_->door_on(), door_port != 0);
    ASSERT_TRUE(progs_->allow(ep("127.0.0.1:" + std::to_string(proxy_.port))).ok());
    auto st = progs_->attach(cg_->fd());
    ASSERT_TRUE(st.ok()) << st.error().message();
  }

  // One led-in connection from family/addr: lands on `listener`, whose peer maps to want in
  // door_origin; the child's getpeername() says want_seen; after the child closed, the entry
  // is gone.
  void expect_led_in(int family, const std::string& addr, int listener, const Endpoint& want,
                     const std::string& want_seen) {
    SCOPED_TRACE(addr);
    Child child(cg_->path(), family, addr, kOriginalPort);
    ASSERT_TRUE(child.started());
    auto r = child.report();
    ASSERT_TRUE(r.has_value());
    ASSERT_EQ(r->connect_errno, 0) << std::strerror(r->connect_errno);
    UniqueFd conn = accept_one(listener);
    ASSERT_TRUE(conn.valid()) << "the door listener got no connection";
    Endpoint peer = peer_of(conn.get());
    auto orig = acp::kernel::original_destination(progs_->map_fd("door_origin"), peer);
    ASSERT_TRUE(orig.ok()) << orig.error().message();
    EXPECT_EQ(acp::kernel::to_string(*orig), acp::kernel::to_string(want));
    EXPECT_EQ(*orig, want);

    ASSERT_EQ(r->getpeername_errno, 0);
    ASSERT_EQ(r->peer.ss_family, family);
    Endpoint seen = endpoint_of(r->peer);
    EXPECT_EQ(seen, want) << acp::kernel::to_string(seen);
    char text[INET6_ADDRSTRLEN] = {};
    const void* a =
        family == AF_INET
            ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&r->peer)->sin_addr)
            : &reinterpret_cast<sockaddr_in6*>(&r->peer)->sin6_addr;
    inet_ntop(family, a, text, sizeof(text));
    EXPECT_EQ(std::string(text), want_seen) << "getpeername() in the agent: the address as dialled";

    ASSERT_TRUE(child.close_socket());
    auto after = acp::kernel::original_destination(progs_->map_fd("door_origin"), peer);
    ASSERT_FALSE(after.ok()) << "the entry outlived the client socket";
    EXPECT_EQ(after.error().err, ENOENT);
  }

  std::unique_ptr<NetnsHost> host_;
  BoundSocket door4_, door6_, proxy_;
  std::unique_ptr<ScratchCgroup> cg_;
  std::optional<SockPrograms> progs_;  // destroyed before cg_ (declared after it)
};

TEST_F(KernelDoor, RefusedTcpConnectIsLedInAndTheOriginalIsExact) {
  make_wall(door4_.port);
  if (HasFatalFailure()) return;
  const std::string v4 = host_->addr4(), v6 = host_->addr6();
  const std::string port = std::to_string(kOriginalPort);
  expect_led_in(AF_INET, v4, door4_.fd.get(), ep(v4 + ":" + port), v4);
  expect_led_in(AF_INET6, v6, door6_.fd.get(), ep("[" + v6 + "]:" + port), v6);
  // v4-mapped on an IPv6 socket: led to ::ffff:127.0.0.1, i.e. the IPv4 listener; the agent
  // sees the mapped address it dialled.
  expect_led_in(AF_INET6, "::ffff:" + v4, door4_.fd.get(), ep(v4 + ":" + port), "::ffff:" + v4);
  EXPECT_TRUE(nothing_to_accept(door4_.fd.get()));
  EXPECT_TRUE(nothing_to_accept(door6_.fd.get()));
}

TEST_F(KernelDoor, AllowedEndpointsUdpAndTheDoorOffAreAsBefore) {
  make_wall(door4_.port);
  if (HasFatalFailure()) return;
  // An allowed endpoint is reached where it is: no door, no record, getpeername() the truth.
  {
    Child child(cg_->path(), AF_INET, "127.0.0.1", proxy_.port);
    auto r = child.report();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->connect_errno, 0);
    UniqueFd conn = accept_one(proxy_.fd.get());
    ASSERT_TRUE(conn.valid());
    EXPECT_EQ(endpoint_of(r->peer), ep("127.0.0.1:" + std::to_string(proxy_.port)));
    auto orig =
        acp::kernel::original_destination(progs_->map_fd("door_origin"), peer_of(conn.get()));
    EXPECT_FALSE(orig.ok()) << "an allowed connection has no door record";
    EXPECT_TRUE(child.close_socket());
  }
  // UDP is never led in: connect() and the datagram socket stay refused.
  for (int family : {AF_INET, AF_INET6}) {
    std::string addr = family == AF_INET ? host_->addr4() : host_->addr6();
    Child child(cg_->path(), family, addr, kOriginalPort, SOCK_DGRAM);
    auto r = child.report();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->connect_errno, EPERM) << addr;
    EXPECT_TRUE(child.close_socket());
  }
  EXPECT_TRUE(nothing_to_accept(door4_.fd.get()));
  EXPECT_TRUE(nothing_to_accept(door6_.fd.get()));

  // The door off (the default): the same TCP connects fail with EPERM, and no door programs
  // are attached.
  progs_.reset();
  cg_.reset();
  make_wall(0);
  if (HasFatalFailure()) return;
  for (auto [family, addr] :
       {std::pair{AF_INET, host_->addr4()}, std::pair{AF_INET6, host_->addr6()},
        std::pair{AF_INET6, "::ffff:" + host_->addr4()}}) {
    Child child(cg_->path(), family, addr, kOriginalPort);
    auto r = child.report();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->connect_errno, EPERM) << addr;
    EXPECT_TRUE(child.close_socket());
  }
  EXPECT_TRUE(nothing_to_accept(door4_.fd.get()));
  EXPECT_TRUE(nothing_to_accept(door6_.fd.get()));
}

TEST_F(KernelDoor, DoorLinksArePinnedWithTheWallAndComeDownWithIt) {
  make_wall(door4_.port);
  if (HasFatalFailure()) return;
  auto dir = acp::kernel::session_pin_dir("acpt-door-" + std::to_string(getpid()));
  ASSERT_TRUE(dir.ok()) << dir.error().message();
  struct Unpin {
    std::string dir;
    ~Unpin() { (void)acp::kernel::detach_and_unpin(dir); }
  } unpin{*dir};
  auto st = progs_->pin(*dir);
  ASSERT_TRUE(st.ok()) << st.error().message();
  auto pinned = acp::kernel::PinnedSession::open(*dir);
  ASSERT_TRUE(pinned.ok()) << pinned.error().message();
  auto links = pinned->links();
  ASSERT_TRUE(links.ok()) << links.error().message();
  std::set<std::string> names;
  for (const auto& l : *links) names.insert(l.pin_name);
  for (const char* n : acp::kernel::kDoorLinkNames)
    EXPECT_EQ(names.count(std::string("link_") + n), 1u) << n;
  EXPECT_EQ(names.count("link_connect4"), 1u);
  ASSERT_TRUE(acp::kernel::detach_and_unpin(*dir).ok());
  EXPECT_NE(::access(dir->c_str(), F_OK), 0) << "pin dir left behind";
}

}  // namespace
