// Local IPC escapes: an agent that cannot reach the network asks an unconfined local process
// to do it. Each server here runs OUTSIDE the wall (in this test process, or as nobody in a
// bare cgroup); the client runs as nobody inside a bpf session wall and, as the control, the
// same command as the same user in a bare cgroup. The wall's cgroup/connect_unix and
// cgroup/sendmsg_unix programs (bpf/acp_unix.bpf.c, Linux 6.7+) must refuse the connect or
// send with EPERM; the control must get through; a name listed with --allow-unix
// (SockPrograms::allow_unix) must work inside. bpf only: the iptables backend cannot see
// AF_UNIX at all (docs/security.md says so).
#include <gtest/gtest.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "acp/kernel/event_reader.hpp"
#include "acp/kernel/pinned_session.hpp"
#include "acp/kernel/session_maps.hpp"
#include "acp/util/unique_fd.hpp"
#include "support/wall_fixture.hpp"

namespace {

using acp::UniqueFd;
using acp::vmtest::kNobody;
using acp::vmtest::RunResult;
using acp::vmtest::TestWall;
using Argv = std::vector<std::string>;

// One client attempt, as nobody. argv: NAME MODE; NAME "/path" or "@abstract". Prints
// result=OK (and what came back), result=EPERM, or result=<errno name>.
constexpr const char* kPyUnixClient = R"(
import errno, socket, sys
name, mode = sys.argv[1], sys.argv[2]
addr = '\0' + name[1:] if name.startswith('@') else name
try:
    if mode == 'http':
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(addr)
        s.sendall(b'GET /version HTTP/1.0\r\nHost: docker\r\n\r\n')
        data = s.recv(200)
        print('reply=' + data.split(b'\r\n')[0].decode())
    elif mode == 'sendto':
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.sendto(b'ping', addr)
    elif mode == 'dgram-connect':
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.connect(addr)
        s.send(b'ping')
    elif mode == 'seqpacket':
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.connect(addr)
    print('result=OK')
except OSError as e:
    print('result=' + (errno.errorcode.get(e.errno, str(e.errno))))
)";

Argv py_client(const std::string& name, const std::string& mode) {
  return {"python3", "-c", kPyUnixClient, name, mode};
}

// A unix socket server in this process (root, outside every session cgroup). Stream and
// seqpacket: answers each connection with one "HTTP/1.0 200 OK" after reading the request, as
// the Docker API would. Datagram: counts what arrives.
class UnixServer {
 public:
  // name: a filesystem path (made 0777 so nobody may connect) or "@abstract".
  static std::unique_ptr<UnixServer> start(const std::string& name, int type) {
    auto srv = std::unique_ptr<UnixServer>(new UnixServer);
    srv->fd_ = UniqueFd(::socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!srv->fd_) return nullptr;
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    socklen_t len;
    if (name[0] == '@') {
      sun.sun_path[0] = '\0';
      std::memcpy(sun.sun_path + 1, name.data() + 1, name.size() - 1);
      len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
    } else {
      std::strncpy(sun.sun_path, name.c_str(), sizeof(sun.sun_path) - 1);
      len = sizeof(sun);
    }
    if (::bind(srv->fd_.get(), reinterpret_cast<sockaddr*>(&sun), len) != 0) return nullptr;
    if (name[0] != '@') ::chmod(name.c_str(), 0777);
    if (type != SOCK_DGRAM && ::listen(srv->fd_.get(), 16) != 0) return nullptr;
    srv->type_ = type;
    srv->thread_ = std::thread([s = srv.get()] { s->loop(); });
    return srv;
  }
  ~UnixServer() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  uint64_t served() const { return served_; }

 private:
  UnixServer() = default;
  void loop() {
    while (!stop_) {
      pollfd p{fd_.get(), POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      if (type_ == SOCK_DGRAM) {
        char buf[256];
        while (::recv(fd_.get(), buf, sizeof(buf), 0) > 0) served_++;
        continue;
      }
      UniqueFd c(::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!c) continue;
      served_++;
      pollfd cp{c.get(), POLLIN, 0};
      if (::poll(&cp, 1, 2000) > 0) {
        char buf[512];
        (void)::recv(c.get(), buf, sizeof(buf), 0);
      }
      static const char kReply[] =
          "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n"
          "{\"ApiVersion\":1}\n";
      (void)::send(c.get(), kReply, sizeof(kReply) - 1, MSG_NOSIGNAL);
    }
  }
  UniqueFd fd_;
  int type_ = SOCK_STREAM;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> served_{0};
  std::thread thread_;
};

// Linux 6.7 added cgroup/connect_unix; the programs also need kernel BTF.
bool kernel_has_unix_hooks() {
  utsname u{};
  if (::uname(&u) != 0) return false;
  int major = 0, minor = 0;
  if (std::sscanf(u.release, "%d.%d", &major, &minor) != 2) return false;
  struct stat st {};
  return (major > 6 || (major == 6 && minor >= 7)) && ::stat("/sys/kernel/btf/vmlinux", &st) == 0;
}

class IpcEscape : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!acp::vmtest::wall_backend_supported(acp::vmtest::WallBackend::kBpf, &why))
      GTEST_SKIP() << "bpf backend: " << why;
    char tmpl[] = "/tmp/acp-ipc-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ::chmod(dir_.c_str(), 01777);  // nobody makes sockets here (tmux, dbus-daemon)
    auto wall = TestWall::create({});
    ASSERT_TRUE(wall.ok()) << wall.error().message();
    wall_ = std::move(*wall);
    if (!wall_->programs().unix_walled()) {
      // Skip only where the kernel cannot: older than 6.7 or without BTF. On a kernel that has
      // the hook, a wall without it is the bug this suite is for.
      if (kernel_has_unix_hooks())
        FAIL() << "Linux >= 6.7 with BTF, but the local-IPC programs are not loaded: "
               << wall_->programs().unix_why();
      GTEST_SKIP() << "the kernel has no usable cgroup/connect_unix: "
                   << wall_->programs().unix_why();
    }
    auto bare = acp::vmtest::ScratchCgroup::create();
    ASSERT_TRUE(bare.ok()) << bare.error().message();
    bare_ = std::move(*bare);
    auto reader = acp::kernel::EventReader::create(
        wall_->programs().events_fd(), [this](const acp_event& e) { events_.push_back(e); });
    ASSERT_TRUE(reader.ok()) << reader.error().message();
    reader_.emplace(std::move(*reader));
  }
  void TearDown() override {
    servers_.clear();
    wall_.reset();
    bare_.reset();  // kills what ran in it (tmux, dbus-daemon)
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  UnixServer& serve(const std::string& name, int type) {
    auto s = UnixServer::start(name, type);
    EXPECT_TRUE(s) << "unix server " << name << ": " << std::strerror(errno);
    servers_.push_back(std::move(s));
    return *servers_.back();
  }
  // SHELL: tmux runs commands with it (nobody's login shell is nologin).
  RunResult in_wall(const Argv& argv) {
    return acp::vmtest::run_in(wall_->cgroup().fd(), wall_->path(), argv, kNobody,
                               {"SHELL=/bin/sh"});
  }
  RunResult in_bare(const Argv& argv) {
    return acp::vmtest::run_in(bare_->fd(), bare_->path(), argv, kNobody, {"SHELL=/bin/sh"});
  }
  // Works without the wall, EPERM behind it.
  void expect_blocked(const Argv& argv, const std::string& what) {
    RunResult control = in_bare(argv);
    EXPECT_EQ(control.result(), "OK") << "control (no wall): " << what << "\n" << control.out;
    RunResult in = in_wall(argv);
    EXPECT_EQ(in.result(), "EPERM") << "inside the wall: " << what << "\n" << in.out;
  }
  std::vector<acp_event>& events() {
    EXPECT_TRUE(reader_->consume().ok());
    return events_;
  }

  std::string dir_;
  std::unique_ptr<TestWall> wall_;
  std::unique_ptr<acp::vmtest::ScratchCgroup> bare_;
  std::vector<std::unique_ptr<UnixServer>> servers_;
  std::optional<acp::kernel::EventReader> reader_;
  std::vector<acp_event> events_;
};

TEST_F(IpcEscape, AFakeDockerSocketSpeakingHttpIsRefused) {
  const std::string sock = dir_ + "/docker.sock";
  auto& srv = serve(sock, SOCK_STREAM);
  RunResult control = in_bare(py_client(sock, "http"));
  EXPECT_EQ(control.result(), "OK") << control.out;
  EXPECT_NE(control.out.find("reply=HTTP/1.0 200 OK"), std::string::npos) << control.out;
  const uint64_t before = srv.served();
  RunResult in = in_wall(py_client(sock, "http"));
  EXPECT_EQ(in.result(), "EPERM") << in.out;
  EXPECT_EQ(srv.served(), before) << "the server saw a connection from inside the wall";
}

TEST_F(IpcEscape, ASessionBusLikePathAndAnAbstractSocketAreRefused) {
  // Where a user's D-Bus session bus lives, and the abstract form older buses and X11 use
  // (abstract sockets ignore file permissions: anyone in the network namespace may connect).
  std::filesystem::create_directories(dir_ + "/user/65534");
  ::chmod((dir_ + "/user").c_str(), 0755);
  ::chmod((dir_ + "/user/65534").c_str(), 0755);
  const std::string bus = dir_ + "/user/65534/bus";
  const std::string abstract = "@acp-vmtest-dbus-" + std::to_string(::getpid());
  serve(bus, SOCK_STREAM);
  serve(abstract, SOCK_STREAM);
  expect_blocked(py_client(bus, "http"), "session bus path");
  expect_blocked(py_client(abstract, "http"), "abstract socket");
  expect_blocked(py_client(abstract, "http"), "abstract socket, again");
}

TEST_F(IpcEscape, SeqpacketConnectIsRefused) {
  const std::string sock = dir_ + "/seq.sock";
  serve(sock, SOCK_SEQPACKET);
  expect_blocked(py_client(sock, "seqpacket"), "SOCK_SEQPACKET connect");
}

TEST_F(IpcEscape, DatagramsWithAnAddressAndConnectedDatagramsAreRefused) {
  // Like /dev/log or a daemon's datagram control socket.
  const std::string sock = dir_ + "/log";
  auto& srv = serve(sock, SOCK_DGRAM);
  expect_blocked(py_client(sock, "sendto"), "sendto (cgroup/sendmsg_unix)");
  expect_blocked(py_client(sock, "dgram-connect"), "connect of a datagram socket");
  const uint64_t from_controls = srv.served();
  EXPECT_GE(from_controls, 2u);
  RunResult again = in_wall(py_client(sock, "sendto"));
  EXPECT_EQ(again.result(), "EPERM") << again.out;
  EXPECT_EQ(srv.served(), from_controls) << "a datagram from inside the wall arrived";
}

TEST_F(IpcEscape, AnAllowedPathWorksInsideAndOnlyThatExactName) {
  const std::string allowed = dir_ + "/allowed.sock";
  const std::string other = dir_ + "/other.sock";
  const std::string abstract = "@acp-vmtest-allowed-" + std::to_string(::getpid());
  serve(allowed, SOCK_STREAM);
  serve(other, SOCK_STREAM);
  serve(abstract, SOCK_STREAM);
  ASSERT_TRUE(wall_->programs().allow_unix(allowed).ok());
  ASSERT_TRUE(wall_->programs().allow_unix(abstract).ok());
  RunResult ok = in_wall(py_client(allowed, "http"));
  EXPECT_EQ(ok.result(), "OK") << ok.out;
  RunResult ok_abs = in_wall(py_client(abstract, "http"));
  EXPECT_EQ(ok_abs.result(), "OK") << ok_abs.out;
  expect_blocked(py_client(other, "http"), "a path that is not listed");
  // The same socket by another name (a symlink the agent makes, a "/./" spelling) is another
  // key: refused, because the hook sees names, not inodes.
  const std::string link = dir_ + "/link.sock";
  ASSERT_EQ(::symlink(other.c_str(), link.c_str()), 0);
  expect_blocked(py_client(link, "http"), "a symlink to an unlisted socket");
  const std::string dotted = dir_ + "/./allowed.sock";
  RunResult dot = in_wall(py_client(dotted, "http"));
  EXPECT_EQ(dot.result(), "EPERM") << "a second spelling of an allowed path\n" << dot.out;
  // The pinned map says what is allowed (acp status reads it).
  auto pins = acp::kernel::PinnedSession::open(wall_->pin_dir());
  ASSERT_TRUE(pins.ok()) << pins.error().message();
  auto names = pins->unix_allow_entries();
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, (std::vector<std::string>{allowed, abstract}));
}

TEST_F(IpcEscape, ATmuxServerOutsideTheWallCannotBeDriven) {
  if (::access("/usr/bin/tmux", X_OK) != 0) GTEST_SKIP() << "tmux is not installed";
  const std::string sock = dir_ + "/tmux.sock";
  const std::string marker = dir_ + "/ran-outside";
  // The user's own tmux server, unconfined (bare cgroup), as a human would have left it.
  RunResult started =
      in_bare({"/usr/bin/tmux", "-S", sock, "new-session", "-d", "-s", "acp", "sleep 600"});
  ASSERT_EQ(started.code, 0) << started.out;
  // Inside: ask the server to run a command (it would run outside the wall).
  Argv drive = {"/usr/bin/tmux", "-S", sock, "run-shell", "touch " + marker};
  RunResult in = in_wall(drive);
  EXPECT_NE(in.code, 0) << in.out;
  EXPECT_FALSE(std::filesystem::exists(marker)) << "tmux ran a command for the walled agent";
  // Control: the same request from outside the wall runs.
  RunResult control = in_bare(drive);
  EXPECT_EQ(control.code, 0) << control.out;
  EXPECT_TRUE(std::filesystem::exists(marker)) << control.out;
}

TEST_F(IpcEscape, ADbusSessionBusOutsideTheWallCannotBeReached) {
  if (::access("/usr/bin/dbus-daemon", X_OK) != 0 || ::access("/usr/bin/dbus-send", X_OK) != 0)
    GTEST_SKIP() << "dbus-daemon or dbus-send is not installed";
  const std::string bus = dir_ + "/bus";
  RunResult started = in_bare(
      {"/usr/bin/dbus-daemon", "--session", "--fork", "--nopidfile", "--address=unix:path=" + bus});
  ASSERT_EQ(started.code, 0) << started.out;
  Argv ask = {"/usr/bin/dbus-send",    "--bus=unix:path=" + bus,
              "--print-reply",         "--dest=org.freedesktop.DBus",
              "/org/freedesktop/DBus", "org.freedesktop.DBus.ListNames"};
  RunResult control = in_bare(ask);
  EXPECT_EQ(control.code, 0) << control.out;
  EXPECT_NE(control.out.find("org.freedesktop.DBus"), std::string::npos) << control.out;
  RunResult in = in_wall(ask);
  EXPECT_NE(in.code, 0) << in.out;
  EXPECT_EQ(in.out.find("array ["), std::string::npos) << in.out;
}

TEST_F(IpcEscape, EachRefusalIsAnEventWithThePathAndCounted) {
  const std::string sock = dir_ + "/docker.sock";
  serve(sock, SOCK_STREAM);
  serve(dir_ + "/log", SOCK_DGRAM);
  EXPECT_EQ(in_wall(py_client(sock, "http")).result(), "EPERM");
  EXPECT_EQ(in_wall(py_client(dir_ + "/log", "sendto")).result(), "EPERM");
  bool saw_connect = false, saw_sendmsg = false;
  for (const auto& e : events()) {
    if (e.family != AF_UNIX) continue;
    EXPECT_EQ(e.uid, kNobody);
    EXPECT_EQ(e.verdict, ACP_VERDICT_DENY);
    std::string text = acp::kernel::describe_event(e);
    if (e.hook == ACP_HOOK_CONNECT_UNIX) {
      saw_connect = true;
      EXPECT_EQ(e.port, sock.size());
      EXPECT_NE(text.find("unix:" + sock.substr(0, 16)), std::string::npos) << text;
    }
    if (e.hook == ACP_HOOK_SENDMSG_UNIX) saw_sendmsg = true;
  }
  EXPECT_TRUE(saw_connect);
  EXPECT_TRUE(saw_sendmsg);
  auto pins = acp::kernel::PinnedSession::open(wall_->pin_dir());
  ASSERT_TRUE(pins.ok());
  auto c = pins->counters();
  ASSERT_TRUE(c.ok());
  EXPECT_GE(c->denied[ACP_FAM_UNIX][ACP_PRO_OTHER], 2u);
  auto links = pins->links();
  ASSERT_TRUE(links.ok());
  int unix_links = 0;
  for (const auto& l : *links)
    if (l.attach_type == "cgroup_unix_connect" || l.attach_type == "cgroup_unix_sendmsg")
      unix_links++;
  EXPECT_EQ(unix_links, 2);
}

TEST_F(IpcEscape, AuditModeLetsUnixThroughAndReports) {
  ASSERT_TRUE(wall_->programs().set_mode(ACP_MODE_AUDIT).ok());
  const std::string sock = dir_ + "/docker.sock";
  serve(sock, SOCK_STREAM);
  RunResult in = in_wall(py_client(sock, "http"));
  EXPECT_EQ(in.result(), "OK") << in.out;
  bool audited = false;
  for (const auto& e : events())
    if (e.hook == ACP_HOOK_CONNECT_UNIX && e.verdict == ACP_VERDICT_AUDIT_DENY) audited = true;
  EXPECT_TRUE(audited);
}

TEST_F(IpcEscape, SocketpairAndInheritedSocketsStillWork) {
  // What ordinary programs do without naming a socket: unaffected.
  RunResult r = in_wall({"python3", "-c",
                         "import socket; a, b = socket.socketpair(); a.send(b'x'); "
                         "print('result=OK' if b.recv(1) == b'x' else 'result=BAD')"});
  EXPECT_EQ(r.result(), "OK") << r.out;
}

}  // namespace
