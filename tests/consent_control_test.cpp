#include "acp/proxy/control.hpp"

#include <grp.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstring>
#include <future>
#include <thread>

#include "consent_test_support.hpp"

namespace {

namespace asio = boost::asio;
using acp::consent::ConsentGate;
using acp::consent::ConsentOutcome;
using acp::consent::control_request;
using acp::consent::ControlServer;
using acp::testing::TempDir;
using nlohmann::json;

acp::Action connect_to(const std::string& host) {
  acp::Action a;
  a.host = host;
  a.port = 443;
  a.method = "CONNECT";
  return a;
}

struct Session : acp::testing::GateSession {
  Session(const TempDir& dir, const std::string& id, const std::string& sock = "control.sock")
      : GateSession(dir, id, sock) {}
  std::future<ConsentOutcome> ask(const std::string& host) {
    return GateSession::ask(connect_to(host), "{host: \"*\"}");
  }
  json wait_pending(size_t n) {
    json r = GateSession::wait_pending(n);
    if (r.is_null()) ADD_FAILURE() << "never saw " << n << " pending";
    return r;
  }
};

// Sends raw bytes on a fresh connection and reads whatever comes back until EOF or `lines`.
std::vector<std::string> raw_exchange(const std::string& path, const std::string& bytes,
                                      size_t lines) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strcpy(sa.sun_path, path.c_str());
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  std::string in;
  std::vector<std::string> out;
  char buf[4096];
  while (out.size() < lines) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    in.append(buf, static_cast<size_t>(n));
    for (auto nl = in.find('\n'); nl != std::string::npos; nl = in.find('\n')) {
      out.push_back(in.substr(0, nl));
      in.erase(0, nl + 1);
    }
  }
  ::close(fd);
  return out;
}

TEST(ConsentControl, PendingApproveAndDenyOverTheSocket) {
  TempDir dir;
  Session s(dir, "aaaa00000001");
  EXPECT_EQ(s.server->path(), dir / "control.sock");
  struct stat st {};
  ASSERT_EQ(::stat(s.server->path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  auto first = s.ask("one.example");
  auto second = s.ask("two.example");
  auto listing = s.wait_pending(2);
  EXPECT_EQ(listing["session"], "aaaa00000001");
  std::string one, two;
  for (const auto& p : listing["pending"]) {
    (p["action"]["host"] == "one.example" ? one : two) = p["id"];
    EXPECT_EQ(p["rule"], "{host: \"*\"}");
    EXPECT_GT(p["expires_in_s"].get<long long>(), 0);
  }

  auto r =
      control_request(s.server->path(),
                      {{"op", "approve"}, {"id", one}, {"scope", "duration"}, {"duration_s", 600}});
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ((*r)["ok"], true) << r->dump();
  auto o1 = first.get();
  EXPECT_TRUE(o1.approved);
  EXPECT_EQ(o1.scope, "duration");
  EXPECT_NE(o1.reason.find("control uid="), std::string::npos) << o1.reason;

  r = control_request(s.server->path(), {{"op", "deny"}, {"id", two}, {"reason", "no"}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)["ok"], true);
  auto o2 = second.get();
  EXPECT_FALSE(o2.approved);
  EXPECT_EQ(o2.reason, "denied by operator: no");

  r = control_request(s.server->path(), {{"op", "approve"}, {"id", two}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)["ok"], false);
  EXPECT_EQ((*r)["code"], "unknown_id");
}

TEST(ConsentControl, BadRequestsGetErrorRepliesAndTheServerLivesOn) {
  TempDir dir;
  Session s(dir, "aaaa00000002");
  auto replies = raw_exchange(s.server->path(),
                              "this is not json\n[1,2]\n{\"op\":\"fly\"}\n{\"op\":\"approve\"}\n"
                              "{\"op\":\"approve\",\"id\":\"x\",\"scope\":\"forever\"}\n"
                              "{\"op\":\"ping\"}\n",
                              6);
  ASSERT_EQ(replies.size(), 6u);
  for (int i = 0; i < 5; ++i) {
    auto j = json::parse(replies[i]);
    EXPECT_EQ(j["ok"], false) << replies[i];
    EXPECT_EQ(j["code"], "bad_request") << replies[i];
  }
  EXPECT_EQ(json::parse(replies[5])["ok"], true);

  // A line over the limit: an error reply, then the connection is closed.
  auto big =
      raw_exchange(s.server->path(), std::string(acp::consent::kMaxControlLine + 10, 'x'), 2);
  ASSERT_EQ(big.size(), 1u);
  EXPECT_NE(big[0].find("longer than"), std::string::npos);
  auto r = control_request(s.server->path(), {{"op", "ping"}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)["ok"], true);
}

TEST(ConsentControl, ASecondSessionGetsItsOwnSocketAndAStaleOneIsReplaced) {
  TempDir dir;
  // A stale socket file: bound once, nobody listening any more.
  {
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::strcpy(sa.sun_path, (dir / "control.sock").c_str());
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    ::close(fd);
  }
  Session a(dir, "aaaa00000003");
  EXPECT_EQ(a.server->path(), dir / "control.sock");
  Session b(dir, "bbbb00000003");
  EXPECT_EQ(b.server->path(), dir / "control-bbbb00000003.sock");
  auto socks = acp::consent::list_control_sockets(dir.path());
  ASSERT_EQ(socks.size(), 2u);
  EXPECT_EQ(socks[0], dir / "control.sock");
  EXPECT_EQ(socks[1], dir / "control-bbbb00000003.sock");
  auto r = control_request(socks[1], {{"op", "ping"}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)["session"], "bbbb00000003");
}

TEST(ConsentControl, OnlyRootMayTalk) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run a client as uid 65534";
  TempDir dir;
  ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0);
  Session s(dir, "aaaa00000004");
  std::string path = s.server->path();

  // Child as nobody: 0 = forbidden reply seen, 1 = connect refused (EACCES), 2+ = other.
  auto as_nobody = [&]() {
    pid_t pid = ::fork();
    if (pid == 0) {
      if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(5);
      int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
      sockaddr_un sa{};
      sa.sun_family = AF_UNIX;
      std::strcpy(sa.sun_path, path.c_str());
      if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
        ::_exit(errno == EACCES ? 1 : 2);
      const char req[] = "{\"op\":\"pending\"}\n";
      // The server may already have replied and closed: no SIGPIPE, read the reply anyway.
      (void)::send(fd, req, sizeof req - 1, MSG_NOSIGNAL);
      static char buf[4096];
      ssize_t n = ::read(fd, buf, sizeof buf - 1);
      if (n <= 0) ::_exit(4);
      buf[n] = 0;
      ::_exit(std::strstr(buf, "\"forbidden\"") ? 0 : 6);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 100;
  };
  EXPECT_EQ(as_nobody(), 1);  // the file mode keeps it out
  ASSERT_EQ(::chmod(path.c_str(), 0666), 0);
  EXPECT_EQ(as_nobody(), 0);  // and with the mode loosened, the peer credentials still do
  auto r = control_request(path, {{"op", "ping"}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)["ok"], true);
}

TEST(ConsentControl, DurationsParse) {
  std::chrono::seconds d{0};
  EXPECT_TRUE(acp::consent::parse_duration("90s", d));
  EXPECT_EQ(d.count(), 90);
  EXPECT_TRUE(acp::consent::parse_duration("10m", d));
  EXPECT_EQ(d.count(), 600);
  EXPECT_TRUE(acp::consent::parse_duration("1h30m", d));
  EXPECT_EQ(d.count(), 5400);
  EXPECT_TRUE(acp::consent::parse_duration("300", d));
  EXPECT_EQ(d.count(), 300);
  for (const char* bad : {"", "m", "1x", "1h30", "-5m", "0s", "9999d"})
    EXPECT_FALSE(acp::consent::parse_duration(bad, d)) << bad;
}

}  // namespace
