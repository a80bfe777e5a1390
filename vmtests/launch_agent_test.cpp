// Real agents in real cgroups: placement before exec, identity, no_new_privs, shell-style exit
// codes, and kill_all of what the agent leaves behind. Needs root and a cgroup2 mount.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "acp/cgroup/cgroup.hpp"
#include "acp/cgroup/mounts.hpp"
#include "acp/launch/agent_launcher.hpp"
#include "acp/launch/target_user.hpp"

namespace {

using acp::Cgroup;
using acp::launch::AgentSpec;
using namespace std::chrono_literals;

constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;

std::atomic<int> g_counter{0};

// A scratch cgroup, acp-test-<pid>-<n> under the cgroup2 mount; emptied and removed at the end
// even when the test failed half-way.
class LaunchAgent : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to make cgroups and change uid";
    auto mount = acp::cgroup2_mount_point();
    if (!mount) GTEST_SKIP() << mount.error().message();
    mount_ = *mount;
    auto cg = Cgroup::create(mount_ + "/acp-test-" + std::to_string(getpid()) + "-" +
                             std::to_string(g_counter++));
    ASSERT_TRUE(cg.ok()) << cg.error().message();
    cg_.emplace(std::move(*cg));
  }
  void TearDown() override {
    if (!cg_ || !std::filesystem::exists(cg_->path())) return;  // the test removed it
    auto killed = cg_->kill_all(5s);
    EXPECT_TRUE(killed.ok()) << killed.error().message();
    auto st = cg_->remove();
    EXPECT_TRUE(st.ok()) << st.error().message();
  }

  AgentSpec spec(std::vector<std::string> argv, const Cgroup* cg = nullptr) const {
    if (!cg) cg = &*cg_;
    AgentSpec s;
    s.argv = std::move(argv);
    s.env = {"PATH=/usr/bin:/bin", "LC_ALL=C"};
    s.uid = kNobody;
    s.gid = kNogroup;
    s.groups = {kNogroup};
    s.cgroup_fd = cg->fd();
    s.cgroup_path = cg->path();
    return s;
  }

  struct Run {
    int code = -1;
    std::string out;
    bool placed_by_clone3 = false;
  };
  // Spawns, collects stdout until EOF, waits. Fails the test when the spawn fails.
  Run run(AgentSpec s) {
    Run r;
    int p[2];
    EXPECT_EQ(pipe2(p, O_CLOEXEC), 0);
    acp::UniqueFd rd(p[0]), wr(p[1]);
    s.stdout_fd = wr.get();
    auto agent = acp::launch::spawn_agent(s);
    wr.reset();
    if (!agent) {
      ADD_FAILURE() << agent.error().message();
      return r;
    }
    char buf[4096];
    ssize_t n;
    while ((n = read(rd.get(), buf, sizeof buf)) > 0) r.out.append(buf, static_cast<size_t>(n));
    auto code = acp::launch::wait_agent(*agent);
    EXPECT_TRUE(code.ok());
    r.code = code.ok() ? *code : -1;
    r.placed_by_clone3 = agent->placed_by_clone3;
    return r;
  }

  std::string mount_;
  std::optional<Cgroup> cg_;
};

std::string cgroup2_line(const std::string& proc_self_cgroup) {
  std::istringstream in(proc_self_cgroup);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("0::", 0) == 0) return line.substr(3);
  return "";
}

// The agent prints its pid, its own view of its cgroup, and the session cgroup's member list
// (as the host sees it). It is placed when it is a member, and its cgroup namespace is rooted
// at the session cgroup when it sees itself at "/".
std::vector<std::string> placement_probe(const std::string& cg_path) {
  return {"sh", "-c", "echo $$; cat /proc/self/cgroup; echo --; cat " + cg_path + "/cgroup.procs"};
}
void expect_placed(const std::string& out) {
  std::istringstream in(out);
  std::string pid, line;
  std::getline(in, pid);
  std::string self, members;
  bool after = false;
  while (std::getline(in, line)) {
    if (line == "--") {
      after = true;
      continue;
    }
    (after ? members : self) += line + "\n";
  }
  EXPECT_EQ(cgroup2_line(self), "/") << out;
  EXPECT_NE(("\n" + members).find("\n" + pid + "\n"), std::string::npos) << out;
}

TEST_F(LaunchAgent, AgentIsInTheCgroupAtExec) {
  auto r = run(spec(placement_probe(cg_->path())));
  EXPECT_EQ(r.code, 0);
  EXPECT_TRUE(r.placed_by_clone3);
  expect_placed(r.out);
}

TEST_F(LaunchAgent, ForkFallbackAlsoPlacesTheChildBeforeExec) {
  auto s = spec(placement_probe(cg_->path()));
  s.force_fork_fallback = true;
  auto r = run(s);
  EXPECT_EQ(r.code, 0);
  EXPECT_FALSE(r.placed_by_clone3);
  expect_placed(r.out);
}

TEST_F(LaunchAgent, AgentCannotLeaveTheCgroup) {
  auto r = run(spec({"sh", "-c",
                     "echo $$ > " + mount_ +
                         "/cgroup.procs 2>/dev/null || echo refused; "
                         "cat " +
                         cg_->path() + "/cgroup.procs"}));
  EXPECT_EQ(r.out.rfind("refused\n", 0), 0u) << r.out;
  EXPECT_NE(r.out.size(), 8u) << "the agent is no longer in the session cgroup: " << r.out;
}

// --allow-root: root's file access stays, but the cgroup namespace stops it from migrating out
// (cgroup.procs of the root is root-writable) and the bounding set has no CAP_NET_RAW for
// AF_PACKET, which the BPF programs do not see.
TEST_F(LaunchAgent, RootAgentCannotLeaveTheCgroupNorOpenPacketSockets) {
  auto s = spec({"sh", "-c",
                 "echo $$ > " + mount_ +
                     "/cgroup.procs 2>/dev/null && echo moved || echo refused; "
                     "python3 -c 'import socket\ntry:\n socket.socket(socket.AF_PACKET, "
                     "socket.SOCK_RAW)\n print(\"packet-open\")\nexcept OSError:\n "
                     "print(\"packet-refused\")'; "
                     "grep CapBnd /proc/self/status"});
  s.uid = 0;
  s.gid = 0;
  s.groups = {0};
  s.readonly_paths = {mount_};
  auto r = run(s);
  EXPECT_NE(r.out.find("refused\n"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("moved"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("packet-refused"), std::string::npos) << r.out;
  auto at = r.out.find("CapBnd:");
  ASSERT_NE(at, std::string::npos) << r.out;
  const uint64_t bnd = std::stoull(r.out.substr(at + 7), nullptr, 16);
  for (int cap : {13 /*NET_RAW*/, 12 /*NET_ADMIN*/, 21 /*SYS_ADMIN*/, 39 /*BPF*/, 19 /*PTRACE*/})
    EXPECT_EQ(bnd & (uint64_t{1} << cap), 0u) << "capability " << cap << " left: " << r.out;
  // Control: the same python3 as root outside the agent opens the packet socket.
  EXPECT_EQ(system("python3 -c 'import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW)' "
                   "2>/dev/null"),
            0);
}

TEST_F(LaunchAgent, RunsAsTheTargetUserWithItsGroupsOnly) {
  auto uid = run(spec({"id", "-u"}));
  EXPECT_EQ(uid.out, "65534\n");
  auto gid = run(spec({"id", "-g"}));
  EXPECT_EQ(gid.out, "65534\n");
  // root's own groups (0) must not leak; the listed extra one must be there.
  auto s = spec({"id", "-G"});
  s.groups = {kNogroup, 100};
  auto groups = run(s);
  EXPECT_EQ(groups.out, "65534 100\n");
}

TEST_F(LaunchAgent, RunsAsAResolvedTargetUser) {
  auto user = acp::launch::resolve_target_user(std::string("nobody"), {}, false);
  ASSERT_TRUE(user.ok()) << user.error().message();
  auto s = spec({"id", "-G"});
  s.uid = user->uid;
  s.gid = user->gid;
  s.groups = user->groups;
  EXPECT_EQ(run(s).out, "65534\n");
}

TEST_F(LaunchAgent, NoNewPrivsIsSet) {
  auto on = run(spec({"grep", "^NoNewPrivs:", "/proc/self/status"}));
  EXPECT_EQ(on.out, "NoNewPrivs:\t1\n");
  // The field is what sets it: without it the same agent reports 0.
  auto s = spec({"grep", "^NoNewPrivs:", "/proc/self/status"});
  s.no_new_privs = false;
  EXPECT_EQ(run(s).out, "NoNewPrivs:\t0\n");
}

TEST_F(LaunchAgent, ExitStatusesAreTheShellOnes) {
  EXPECT_EQ(run(spec({"sh", "-c", "exit 7"})).code, 7);
  EXPECT_EQ(run(spec({"true"})).code, 0);
  EXPECT_EQ(run(spec({"sh", "-c", "kill -KILL $$"})).code, 137);
}

TEST_F(LaunchAgent, MissingCommandIs127) {
  auto a = acp::launch::spawn_agent(spec({"acp-no-such-command-xyz"}));
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.error().exit_code, 127);
  EXPECT_NE(a.error().message().find("acp-no-such-command-xyz: command not found"),
            std::string::npos);
}

class LaunchAgentFiles : public LaunchAgent {
 protected:
  void SetUp() override {
    LaunchAgent::SetUp();
    if (IsSkipped()) return;
    char tmpl[] = "/tmp/acp-launch-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ASSERT_EQ(chmod(dir_.c_str(), 0755), 0);
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
    LaunchAgent::TearDown();
  }
  std::string write(const std::string& name, const std::string& text, mode_t mode) {
    std::string p = dir_ + "/" + name;
    std::ofstream(p) << text;
    EXPECT_EQ(chmod(p.c_str(), mode), 0);
    return p;
  }
  std::string dir_;
};

TEST_F(LaunchAgentFiles, NonExecutableFileIs126) {
  auto p = write("data.sh", "#!/bin/sh\nexit 0\n", 0644);
  auto a = acp::launch::spawn_agent(spec({p}));
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.error().exit_code, 126);
  EXPECT_NE(a.error().message().find(p), std::string::npos);
}

TEST_F(LaunchAgentFiles, ExecFailureInsideTheChildIsReported) {
  // Passes the pre-check (mode 0755) but execve fails in the child, as the target user: the
  // errno comes back through the close-on-exec pipe.
  auto no_interp = write("nointerp", "#!/nonexistent/interpreter\n", 0755);
  auto a = acp::launch::spawn_agent(spec({no_interp}));
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.error().exit_code, 127);
  EXPECT_EQ(a.error().err, ENOENT);

  auto bad_format = write("garbage", "\x7f\x01\x02 not a program", 0755);
  auto b = acp::launch::spawn_agent(spec({bad_format}));
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().exit_code, 126);
  EXPECT_EQ(b.error().err, ENOEXEC);

  // A directory nobody may not search: root's stat succeeds, nobody's execve gets EACCES.
  ASSERT_EQ(mkdir((dir_ + "/private").c_str(), 0700), 0);
  auto hidden = write("private/tool", "#!/bin/sh\nexit 0\n", 0755);
  auto c = acp::launch::spawn_agent(spec({hidden}));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().exit_code, 126);
  EXPECT_EQ(c.error().err, EACCES);
}

TEST_F(LaunchAgent, ForwardSignalReachesTheAgent) {
  auto a = acp::launch::spawn_agent(spec({"sleep", "1000"}));
  ASSERT_TRUE(a.ok()) << a.error().message();
  ASSERT_TRUE(a->pidfd.valid());
  ASSERT_TRUE(acp::launch::forward_signal(*a, SIGTERM).ok());
  auto code = acp::launch::wait_agent(*a);
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 128 + SIGTERM);
  EXPECT_FALSE(acp::launch::wait_agent(*a).ok());  // reaped once only
}

// The agent starts a daemon in its own session and exits: the daemon is still in the cgroup
// and kill_all must end it.
void check_kill_all_ends_daemons(Cgroup& cg, Cgroup::KillMethod method, const AgentSpec& s) {
  auto a = acp::launch::spawn_agent(s);
  ASSERT_TRUE(a.ok()) << a.error().message();
  auto code = acp::launch::wait_agent(*a);
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 0);
  auto left = cg.procs();
  ASSERT_TRUE(left.ok()) << left.error().message();
  ASSERT_FALSE(left->empty()) << "the daemon should still be running in the cgroup";
  auto pop = cg.populated();
  ASSERT_TRUE(pop.ok());
  EXPECT_TRUE(*pop);

  auto st = cg.kill_all(5s, method);
  ASSERT_TRUE(st.ok()) << st.error().message();
  pop = cg.populated();
  ASSERT_TRUE(pop.ok());
  EXPECT_FALSE(*pop);
  // Never left frozen: a frozen cgroup would hang whatever is put in it next.
  std::ifstream freeze(cg.path() + "/cgroup.freeze");
  std::string frozen;
  freeze >> frozen;
  EXPECT_EQ(frozen, "0");
  auto after = cg.procs();
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after->empty());
  std::string path = cg.path();
  auto removed = cg.remove();
  ASSERT_TRUE(removed.ok()) << removed.error().message();
  EXPECT_FALSE(std::filesystem::exists(path));
}

constexpr const char* kDaemonize =
    "setsid sh -c 'sleep 1000' </dev/null >/dev/null 2>&1 & "
    "setsid sh -c 'sleep 1000 & sleep 1000' </dev/null >/dev/null 2>&1 & exit 0";

TEST_F(LaunchAgent, KillAllEndsADaemonizedGrandchild) {
  check_kill_all_ends_daemons(*cg_, Cgroup::KillMethod::kAuto, spec({"sh", "-c", kDaemonize}));
}

TEST_F(LaunchAgent, KillAllByFreezeAndSignalEndsADaemonizedGrandchild) {
  check_kill_all_ends_daemons(*cg_, Cgroup::KillMethod::kFreezeAndSignal,
                              spec({"sh", "-c", kDaemonize}));
}

TEST_F(LaunchAgent, ProcsAndKillAllCoverChildCgroups) {
  auto sub = Cgroup::create(cg_->path() + "/sub");
  ASSERT_TRUE(sub.ok()) << sub.error().message();
  auto a = acp::launch::spawn_agent(spec({"sleep", "1000"}, &*sub));
  ASSERT_TRUE(a.ok()) << a.error().message();
  auto procs = cg_->procs();
  ASSERT_TRUE(procs.ok());
  EXPECT_EQ(*procs, std::vector<pid_t>{a->pid});
  ASSERT_TRUE(cg_->kill_all(5s).ok());
  auto code = acp::launch::wait_agent(*a);
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 137);
  sub->release();  // the parent's remove() takes the child cgroup with it
  std::string path = cg_->path();
  ASSERT_TRUE(cg_->remove().ok());
  EXPECT_FALSE(std::filesystem::exists(path + "/sub"));
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST_F(LaunchAgent, CreateRefusesAnExistingCgroup) {
  auto again = Cgroup::create(cg_->path());
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().err, EEXIST);
  EXPECT_NE(again.error().message().find(cg_->path()), std::string::npos);
}

TEST_F(LaunchAgent, DestructorRemovesAnEmptyOwnedCgroupAndReleaseKeepsIt) {
  std::string a_path = cg_->path() + "/a";
  std::string b_path = cg_->path() + "/b";
  {
    auto a = Cgroup::create(a_path);
    ASSERT_TRUE(a.ok()) << a.error().message();
    EXPECT_TRUE(a->owned());
  }
  EXPECT_FALSE(std::filesystem::exists(a_path));
  {
    auto b = Cgroup::create(b_path);
    ASSERT_TRUE(b.ok()) << b.error().message();
    b->release();
  }
  EXPECT_TRUE(std::filesystem::exists(b_path));
  // open() does not own: dropping it leaves the directory.
  { ASSERT_TRUE(Cgroup::open(b_path).ok()); }
  EXPECT_TRUE(std::filesystem::exists(b_path));
  // TearDown's remove() takes b with it.
}

TEST_F(LaunchAgent, DestructorNeverKills) {
  std::string path = cg_->path() + "/busy";
  pid_t pid = -1;
  {
    auto busy = Cgroup::create(path);
    ASSERT_TRUE(busy.ok()) << busy.error().message();
    auto a = acp::launch::spawn_agent(spec({"sleep", "1000"}, &*busy));
    ASSERT_TRUE(a.ok()) << a.error().message();
    pid = a->pid;
    a->pid = -1;  // reaped below by hand
  }
  EXPECT_TRUE(std::filesystem::exists(path));
  EXPECT_EQ(kill(pid, 0), 0);
  ASSERT_TRUE(cg_->kill_all(5s).ok());
  int st = 0;
  EXPECT_EQ(waitpid(pid, &st, 0), pid);
}

}  // namespace

namespace {

// python3 one-liners that print OPEN or the errno name: the same probe inside and outside.
const char* kVsockProbe =
    "import socket,errno\n"
    "try:\n"
    " socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM); print('vsock:OPEN')\n"
    "except OSError as e:\n"
    " print('vsock:' + errno.errorcode[e.errno])\n"
    "try:\n"
    " socket.socket(socket.AF_INET, socket.SOCK_STREAM); print('inet:OPEN')\n"
    "except OSError as e:\n"
    " print('inet:' + errno.errorcode[e.errno])\n"
    "import ctypes\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "params = ctypes.create_string_buffer(120)\n"
    "fd = libc.syscall(425, 4, params)\n"
    "print('io_uring:OPEN' if fd >= 0 else 'io_uring:' + errno.errorcode[ctypes.get_errno()])\n";

// TIOCSTI (0x5412) on /dev/null: the tty layer says ENOTTY, the agent's filter EPERM before
// it. The same request with high bits set (the kernel truncates it to 32 bits) too.
const char* kTiocstiProbe =
    "import ctypes, errno, os\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "fd = os.open('/dev/null', os.O_RDWR)\n"
    "c = ctypes.c_char(b'x')\n"
    "for name, req in (('tiocsti', 0x5412), ('tiocsti-high', 0x100005412), "
    "('tioclinux', 0x541C)):\n"
    "    r = libc.ioctl(fd, ctypes.c_ulong(req), ctypes.byref(c))\n"
    "    print(name + ':' + ('OK' if r == 0 else errno.errorcode[ctypes.get_errno()]))\n";

}  // namespace

// An agent on the operator's terminal must not type into it (the shell there is outside the
// wall). Control: the same probe outside the agent reaches the tty layer (ENOTTY).
TEST_F(LaunchAgent, TypingIntoTheTerminalIsRefused) {
  auto r = run(spec({"python3", "-c", kTiocstiProbe}));
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("tiocsti:EPERM"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("tiocsti-high:EPERM"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("tioclinux:EPERM"), std::string::npos) << r.out;

  FILE* f =
      popen(("python3 -c \"" + std::string("exec('''") + kTiocstiProbe + "''')\"").c_str(), "r");
  ASSERT_NE(f, nullptr);
  std::string control;
  char buf[256];
  while (fgets(buf, sizeof buf, f)) control += buf;
  pclose(f);
  EXPECT_NE(control.find("tiocsti:ENOTTY"), std::string::npos) << control;
  EXPECT_NE(control.find("tioclinux:ENOTTY"), std::string::npos) << control;
}

// cgroup/sock_create never sees non-inet sockets: the agent's seccomp filter refuses their
// families (AF_VSOCK needs no privilege at all), and io_uring, which creates sockets without
// socket(2). Control: the same probe outside the agent opens both.
TEST_F(LaunchAgent, SocketFamiliesTheHooksCannotSeeAreRefused) {
  auto r = run(spec({"python3", "-c", kVsockProbe}));
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("vsock:EAFNOSUPPORT"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("inet:OPEN"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("io_uring:EPERM"), std::string::npos) << r.out;

  FILE* f =
      popen(("python3 -c \"" + std::string("exec('''") + kVsockProbe + "''')\"").c_str(), "r");
  ASSERT_NE(f, nullptr);
  std::string control;
  char buf[256];
  while (fgets(buf, sizeof buf, f)) control += buf;
  pclose(f);
  if (control.find("vsock:OPEN") == std::string::npos)
    GTEST_SKIP() << "control: AF_VSOCK cannot be opened on this machine even outside: " << control;
  EXPECT_NE(control.find("io_uring:OPEN"), std::string::npos) << control;
}
