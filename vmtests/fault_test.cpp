// Fault tests (issue 8): `acp run` as a user runs it, while things go wrong around it.
//  - acp SIGKILLed at each stage of a session: the agent, if started, stays confined and
//    `acp gc --kill` removes everything. The exact stages before the agent exists are reached
//    with the test-only stop point (ACP_TEST_HOOKS=1 ACP_TEST_PAUSE_AT=<stage>,
//    include/acp/session/test_pause.hpp).
//  - the consent channel down or slow: nobody answers (the rule's timeout denies), and control
//    clients that connect and stall do not lock the human out.
//  - the audit log's disk full: deny with a clear error, no half line, the chain verifies.
//  - a corrupted policy on SIGHUP: the old one stays.
//  - the agent forking hard (bounded) and holding thousands of tunnels (acp answers the human;
//    its fds go back to their baseline).
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/run_fixture.hpp"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using acp::vmtest::count_lines;
using acp::vmtest::free_port;
using acp::vmtest::port_answers;
using acp::vmtest::Proc;
using acp::vmtest::run;
using acp::vmtest::slurp;
using acp::vmtest::wait_until;

size_t count_fds(pid_t pid) {
  std::error_code ec;
  size_t n = 0;
  for (auto it = fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
       !ec && it != fs::directory_iterator(); it.increment(ec))
    ++n;
  return n;
}

// What the fds of `pid` are (for a failure message).
std::string fd_listing(pid_t pid) {
  std::string out;
  std::error_code ec;
  for (auto it = fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
       !ec && it != fs::directory_iterator(); it.increment(ec))
    out +=
        it->path().filename().string() + " -> " + fs::read_symlink(it->path(), ec).string() + "\n";
  return out;
}

// Python agent: optionally leaves a request pending at the proxy or holds a tunnel through it
// (then waits until acp is gone and says so), then keeps trying the origin directly, one line
// per attempt: OK (escaped), REFUSED (EPERM from the wall) or ERR.
constexpr const char* kConfinedAgent = R"PY(
import socket, sys, time
report, proxy_port, origin_port, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def log(s):
    with open(report, 'a') as f:
        f.write(s + '\n')
if mode in ('pending', 'tunnel'):
    p = socket.create_connection(('127.0.0.1', proxy_port))
    if mode == 'pending':
        p.sendall(b'GET http://127.0.0.1:%d/ HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n' % (origin_port, origin_port))
        log('SENT')
    else:
        p.sendall(b'CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n' % (origin_port, origin_port))
        head = b''
        while b'\r\n\r\n' not in head:
            d = p.recv(4096)
            if not d: break
            head += d
        log('TUNNEL-OPEN' if head.startswith(b'HTTP/1.1 200') else 'TUNNEL-FAILED ' + repr(head))
    try:
        while p.recv(4096):
            pass
    except OSError:
        pass
    log('PROXY-GONE')
for i in range(1200):
    try:
        socket.create_connection(('127.0.0.1', origin_port), timeout=2).close()
        log('OK')
    except PermissionError:
        log('REFUSED')
    except OSError as e:
        log('ERR ' + str(e))
    time.sleep(0.1)
)PY";

class Fault : public acp::vmtest::RunFixture {
 protected:
  void SetUp() override {
    RunFixture::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    // A directory the agent (nobody) may write its reports and flags into.
    flags_ = dir_ + "/flags";
    fs::create_directories(flags_);
    chmod(flags_.c_str(), 0777);
    report_ = flags_ + "/report";
  }
  void TearDown() override {
    // A test that failed half-way may leave its acp running: end it (the fixture then collects
    // the orphaned session with gc --kill). WNOHANG: only our own unreaped children answer 0.
    for (pid_t pid : started_) {
      int st = 0;
      if (waitpid(pid, &st, WNOHANG) == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
      }
    }
    if (zombie_.pid > 0) zombie_.finish();
    if (!mount_.empty()) umount2(mount_.c_str(), MNT_DETACH);
    RunFixture::TearDown();
  }

  // Proc::start, remembered so that TearDown can end it if the test did not.
  Proc start(const std::vector<std::string>& argv) {
    Proc p = Proc::start(argv);
    started_.push_back(p.pid);
    return p;
  }

  std::string write_script(const std::string& name, const std::string& text) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    chmod(path.c_str(), 0644);
    return path;
  }

  // Our session in `acp status --json`: the one whose acp pid is `acp_pid` (other sessions may
  // be live on this machine). Null when absent.
  nlohmann::json session_of(pid_t acp_pid) {
    auto j = nlohmann::json::parse(run({ACP_BINARY, "status", "--json"}).out, nullptr, false);
    if (j.is_discarded()) return nullptr;
    for (const auto& s : j["sessions"])
      if (s.value("acp_pid", 0) == acp_pid) return s;
    return nullptr;
  }

  // The id of a pending ask of the session of `acp_pid` (others may be live here), or "".
  std::string wait_for_my_pending(pid_t acp_pid, std::chrono::seconds limit = 30s) {
    std::string sid, id;
    wait_until(
        [&] {
          if (sid.empty()) {
            auto s = session_of(acp_pid);
            if (!s.is_null()) sid = s.value("id", "");
          }
          for (const auto& p : pending())
            if (!sid.empty() && p.value("session", "") == sid) id = p.value("id", "");
          return !id.empty();
        },
        limit);
    return id;
  }

  // acp stopped itself at a stage (test_pause_point): true once waitpid sees the stop.
  static bool wait_stopped(pid_t pid) {
    int st = 0;
    return waitpid(pid, &st, WUNTRACED) == pid && WIFSTOPPED(st);
  }

  // After acp was SIGKILLed: status shows the session orphaned; gc --kill removes its cgroup,
  // pins and record.
  void expect_gc_kill_cleans(const std::string& id) {
    auto st = run({ACP_BINARY, "status"});
    // Another helper's `acp run` may already have collected it if its cgroup was empty.
    if (st.out.find(id) != std::string::npos) {
      EXPECT_NE(st.out.find("ORPHANED"), std::string::npos) << st.out;
    }
    auto gc = run({ACP_BINARY, "gc", "--kill"});
    EXPECT_EQ(gc.status, 0) << gc.out;
    EXPECT_EQ(run({ACP_BINARY, "status"}).out.find(id), std::string::npos);
    EXPECT_FALSE(fs::exists("/sys/fs/bpf/acp/" + id)) << "pins left behind";
    EXPECT_FALSE(fs::exists("/run/acp/sessions/" + id + ".json")) << "record left behind";
  }

  // Starts acp with the stop point at `stage`, waits until it has stopped there, finds its
  // session; SIGKILLs it. Returns the session (as status showed it while stopped). Unless
  // `reap`, acp is left a zombie (its parent, this test, has not reaped it): dead all the same.
  nlohmann::json kill_at_stage(const std::string& stage, bool reap = true) {
    std::vector<std::string> argv = {"env", "ACP_TEST_HOOKS=1", "ACP_TEST_PAUSE_AT=" + stage};
    auto a = acp_run(policy_for_origin("allow"), {"true"});
    argv.insert(argv.end(), a.begin(), a.end());
    Proc acp = start(argv);
    if (!wait_stopped(acp.pid)) {
      ADD_FAILURE() << "acp did not stop at " << stage;
      kill(acp.pid, SIGKILL);
      acp.finish();
      return nullptr;
    }
    nlohmann::json s = session_of(acp.pid);
    kill(acp.pid, SIGKILL);
    if (!reap) {
      siginfo_t si{};
      EXPECT_EQ(waitid(P_PID, static_cast<id_t>(acp.pid), &si, WEXITED | WNOWAIT), 0);
      zombie_ = acp;  // reaped in TearDown
      return s;
    }
    acp.finish();
    EXPECT_EQ(acp.status, 128 + SIGKILL) << acp.out;
    return s;
  }

  // Runs kConfinedAgent in `mode` under acp; once `ready` is in the report, SIGKILLs acp and
  // checks that the agent is still confined, then that gc --kill cleans up.
  void kill_with_agent(const std::string& policy, const std::string& mode,
                       const std::string& ready) {
    std::string script = write_script("agent.py", kConfinedAgent);
    int fd = open(report_.c_str(), O_CREAT | O_WRONLY, 0666);
    close(fd);
    chmod(report_.c_str(), 0666);
    Proc acp =
        start(acp_run(policy, {"/usr/bin/python3", script, report_, std::to_string(proxy_port_),
                               std::to_string(origin_port_), mode}));
    ASSERT_TRUE(wait_until([&] { return slurp(report_).find(ready) != std::string::npos; }, 30s))
        << slurp(report_);
    if (mode == "pending") {
      ASSERT_FALSE(wait_for_my_pending(acp.pid).empty());
    }
    nlohmann::json s = session_of(acp.pid);
    ASSERT_FALSE(s.is_null());
    const std::string id = s.value("id", "");
    kill(acp.pid, SIGKILL);
    acp.reap();
    // The agent notices the proxy is gone, then tries the origin directly, again and again.
    ASSERT_TRUE(wait_until([&] { return count_lines(slurp(report_), "REFUSED") >= 5; }, 30s))
        << slurp(report_);
    std::string after = slurp(report_);
    EXPECT_NE(after.find("PROXY-GONE"), std::string::npos) << after;
    EXPECT_EQ(count_lines(after, "OK"), 0u) << "the agent escaped after acp died:\n" << after;
    EXPECT_EQ(count_lines(after, "ERR"), 0u) << after;
    expect_gc_kill_cleans(id);
    EXPECT_FALSE(fs::exists(s.value("cgroup", std::string("/nonexistent"))));
  }

  std::string flags_;
  std::string report_;
  std::string mount_;
  std::vector<pid_t> started_;
  Proc zombie_;
};

// --- acp killed at each stage ---------------------------------------------------------------

TEST_F(Fault, KilledAfterTheCgroupIsMadeGcCleansUp) {
  // acp is dead but not yet reaped (a zombie): gc must not take it for a live owner.
  auto s = kill_at_stage("cgroup", /*reap=*/false);
  ASSERT_FALSE(s.is_null()) << "no session seen while acp was stopped";
  const std::string cg = s.value("cgroup", "");
  EXPECT_TRUE(s["programs"].empty()) << s.dump();  // stopped before the programs were attached
  expect_gc_kill_cleans(s.value("id", ""));
  EXPECT_FALSE(fs::exists(cg)) << cg;
}

// A write of the session record that died between create and rename leaves
// <id>.json.tmp.XXXXXX (util::write_file_atomic) and nothing else: gc removes it once it is stale,
// and leaves a fresh one (a live acp may be between the two steps) alone.
TEST_F(Fault, GcSweepsAStaleTemporaryRecordAndKeepsAFreshOne) {
  fs::create_directories("/run/acp/sessions");
  const std::string stale = "/run/acp/sessions/0000feedfa11.json.tmp.Ab12Cd";
  const std::string fresh = "/run/acp/sessions/0000feedfa12.json.tmp.Ef34Gh";
  std::ofstream(stale) << "{\"half\":";
  std::ofstream(fresh) << "{\"half\":";
  struct timeval old[2] = {{::time(nullptr) - 7200, 0}, {::time(nullptr) - 7200, 0}};
  ASSERT_EQ(::utimes(stale.c_str(), old), 0);
  auto gc = run({ACP_BINARY, "gc"});
  EXPECT_EQ(gc.status, 0) << gc.out;
  EXPECT_FALSE(fs::exists(stale)) << gc.out;
  EXPECT_NE(gc.out.find("0000feedfa11"), std::string::npos) << gc.out;
  EXPECT_TRUE(fs::exists(fresh)) << gc.out;
  fs::remove(fresh);
}

TEST_F(Fault, KilledAfterTheProgramsAreAttachedTheWallHoldsAndGcCleansUp) {
  auto s = kill_at_stage("attached");
  ASSERT_FALSE(s.is_null()) << "no session seen while acp was stopped";
  const std::string id = s.value("id", "");
  const std::string cg = s.value("cgroup", "");
  EXPECT_FALSE(s["programs"].empty()) << s.dump();
  // acp is gone, the pinned wall is not: a process that joins the cgroup cannot connect out.
  ASSERT_TRUE(fs::exists("/sys/fs/bpf/acp/" + id));
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  pid_t child = fork();
  if (child == 0) {
    std::ofstream(cg + "/cgroup.procs") << getpid() << std::flush;
    int sk = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(origin_port_);
    int rc = connect(sk, reinterpret_cast<sockaddr*>(&a), sizeof a);
    int err = rc == 0 ? 0 : errno;
    (void)!write(pipefd[1], &err, sizeof err);
    _exit(0);
  }
  close(pipefd[1]);
  int err = -1;
  ASSERT_EQ(read(pipefd[0], &err, sizeof err), static_cast<ssize_t>(sizeof err));
  close(pipefd[0]);
  waitpid(child, nullptr, 0);
  EXPECT_EQ(err, EPERM) << "connect from the orphaned cgroup: " << strerror(err);
  expect_gc_kill_cleans(id);
  EXPECT_FALSE(fs::exists(cg)) << cg;
}

TEST_F(Fault, KilledWithTheAgentRunningItStaysConfined) {
  // The "agent" stop point: the agent runs, the event loop has not started.
  std::string script = write_script("agent.py", kConfinedAgent);
  int fd = open(report_.c_str(), O_CREAT | O_WRONLY, 0666);
  close(fd);
  chmod(report_.c_str(), 0666);
  std::vector<std::string> argv = {"env", "ACP_TEST_HOOKS=1", "ACP_TEST_PAUSE_AT=agent"};
  auto a = acp_run(policy_for_origin("allow"),
                   {"/usr/bin/python3", script, report_, std::to_string(proxy_port_),
                    std::to_string(origin_port_), "direct"});
  argv.insert(argv.end(), a.begin(), a.end());
  Proc acp = start(argv);
  ASSERT_TRUE(wait_stopped(acp.pid));
  auto s = session_of(acp.pid);
  ASSERT_FALSE(s.is_null());
  kill(acp.pid, SIGKILL);
  acp.reap();
  ASSERT_TRUE(wait_until([&] { return count_lines(slurp(report_), "REFUSED") >= 5; }, 30s))
      << slurp(report_);
  EXPECT_EQ(count_lines(slurp(report_), "OK"), 0u) << slurp(report_);
  expect_gc_kill_cleans(s.value("id", ""));
}

TEST_F(Fault, KilledWhileARequestIsPendingTheAgentStaysConfined) {
  kill_with_agent(policy_for_origin("ask"), "pending", "SENT");
}

TEST_F(Fault, KilledWhileATunnelIsOpenTheAgentStaysConfined) {
  kill_with_agent(policy_for_origin("allow"), "tunnel", "TUNNEL-OPEN");
}

// --- the consent channel down or slow -------------------------------------------------------

TEST_F(Fault, NobodyAnswersTheRuleTimeoutDenies) {
  auto policy = write_policy("timeout.yml",
                             "default: deny\nrules:\n  - match: { kind: http, host: "
                             "\"127.0.0.1\" }\n    action: ask\n    timeout: 1\n");
  auto r = run(acp_run(
      policy, {"sh", "-c", "curl -s -w ' HTTP=%{http_code}' --max-time 60 " + origin_url()}));
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("HTTP=403"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("no human answered"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("origin says hello"), std::string::npos) << r.out;
  bool recorded = false;
  for (const auto& e : audit_entries())
    if (e.value("kind", "") == "request" && e.value("decided_by", "") == "timeout" &&
        e.value("verdict", "") == "deny")
      recorded = true;
  EXPECT_TRUE(recorded) << slurp(audit());
}

TEST_F(Fault, StalledControlClientsDoNotBlockPendingApproveOrTheProxy) {
  uint16_t allowed_port = free_port();
  ASSERT_TRUE(start_origin(allowed_port));
  auto policy = write_policy(
      "stall.yml", "default: deny\nrules:\n  - match: { kind: http, host: \"127.0.0.1\", port: " +
                       std::to_string(allowed_port) +
                       " }\n    action: allow\n  - match: { kind: http, host: \"127.0.0.1\", "
                       "port: " +
                       std::to_string(origin_port_) + " }\n    action: ask\n    timeout: 120\n");
  std::string go = flags_ + "/go";
  std::string cmd = "while [ ! -e " + go +
                    " ]; do sleep 0.1; done; "
                    "curl -s -o /dev/null -w 'ALLOWED=%{http_code}\\n' --max-time 60 "
                    "http://127.0.0.1:" +
                    std::to_string(allowed_port) +
                    "/; curl -s -o /dev/null -w 'ASKED=%{http_code}\\n' --max-time 120 " +
                    origin_url();
  Proc acp = start(acp_run(policy, {"sh", "-c", cmd}));
  std::string control;
  ASSERT_TRUE(wait_until(
      [&] {
        auto s = session_of(acp.pid);
        if (!s.is_null()) control = s.value("control", "");
        return !control.empty();
      },
      30s));
  // 50 root clients on the control socket: half never send a byte, half send half a line.
  std::vector<int> stalled;
  for (int i = 0; i < 50; ++i) {
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", control.c_str());
    ASSERT_EQ(connect(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0) << strerror(errno);
    if (i % 2) {
      ASSERT_GT(send(s, "{\"op\":\"pend", 11, MSG_NOSIGNAL), 0);
    }
    stalled.push_back(s);
  }
  std::ofstream(go).close();
  // The proxy still serves, the human still sees the ask and answers it.
  std::string id = wait_for_my_pending(acp.pid);
  ASSERT_FALSE(id.empty()) << "acp pending did not show the ask with 50 stalled clients";
  auto a = run({ACP_BINARY, "approve", id});
  EXPECT_EQ(a.status, 0) << a.out;
  EXPECT_EQ(run({ACP_BINARY, "status"}).status, 0);
  acp.finish();
  for (int s : stalled) close(s);
  EXPECT_EQ(acp.status, 0) << acp.out;
  EXPECT_NE(acp.out.find("ALLOWED=200"), std::string::npos) << acp.out;
  EXPECT_NE(acp.out.find("ASKED=200"), std::string::npos) << acp.out;
}

// --- the audit disk full --------------------------------------------------------------------

TEST_F(Fault, AuditDiskFullDeniesWithAClearErrorAndTheChainStillVerifies) {
  mount_ = dir_ + "/auditfs";
  fs::create_directories(mount_);
  ASSERT_EQ(mount("tmpfs", mount_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "size=32k,mode=0700"), 0)
      << strerror(errno);
  // 24 KiB of the 32 taken: room for a dozen audit lines, then the disk is full.
  {
    std::ofstream filler(mount_ + "/filler");
    filler << std::string(24 * 1024, 'x');
  }
  const std::string log = mount_ + "/audit.jsonl";
  auto argv =
      acp_run(policy_for_origin("allow"),
              {"sh", "-c",
               "for i in $(seq 1 40); do curl -s -w ' HTTP=%{http_code}\\n' --max-time 20 " +
                   origin_url() + "; done"});
  for (auto& s : argv)
    if (s.rfind("--audit-log=", 0) == 0) s = "--audit-log=" + log;
  auto r = run(argv);
  EXPECT_EQ(r.status, 0) << r.out;
  // Some requests went through while there was room; the rest were denied, saying why.
  EXPECT_GE(count_lines(r.out, "HTTP=200"), 1u) << r.out;
  EXPECT_GE(count_lines(r.out, "HTTP=403"), 1u) << r.out;
  EXPECT_NE(r.out.find("the audit log is full"), std::string::npos) << r.out;
  // acp's own stderr (merged into r.out) tells the operator too.
  EXPECT_NE(r.out.find("acp: audit log write failed: the audit log is full"), std::string::npos)
      << r.out;
  // Every 200 has its line; no half line anywhere; the chain verifies.
  std::string text = slurp(log);
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n') << "the log ends in a partial line";
  std::istringstream in(text);
  size_t lines = 0;
  for (std::string line; std::getline(in, line); ++lines)
    EXPECT_FALSE(nlohmann::json::parse(line, nullptr, false).is_discarded()) << line;
  EXPECT_GE(lines, count_lines(r.out, "HTTP=200"));
  auto v = run({ACP_BINARY, "audit", "verify", log});
  EXPECT_EQ(v.status, 0) << v.out;
}

// --- a corrupted policy on reload -----------------------------------------------------------

TEST_F(Fault, CorruptedPolicyOnReloadKeepsTheOldOne) {
  // run_session_test's SighupReloads... covers a YAML error; these are the other ways a policy
  // file goes bad. After each SIGHUP the agent's next request is still allowed by the old one.
  std::string policy = policy_for_origin("allow");
  const std::vector<std::function<void()>> corruptions = {
      [&] {
        std::ofstream(policy, std::ios::binary) << std::string("\x00\xff\xfe garbage\x01", 12);
      },
      [&] { std::ofstream(policy) << "default: deny\nrules:\n  - match: { kind: ht"; },
      [&] {
        policy_for_origin("deny");  // valid, but others may write it: refused
        chmod(policy.c_str(), 0666);
      },
      [&] { fs::remove(policy); },
  };
  std::string cmd =
      "trap '' HUP; i=0; while [ $i -le " + std::to_string(corruptions.size()) +
      " ]; do while [ ! -e " + flags_ +
      "/go$i ]; do sleep 0.1; done; curl -s -o /dev/null -w \"STEP$i=%{http_code}\\n\" "
      "--max-time 20 " +
      origin_url() + "; i=$((i+1)); done";
  Proc acp = start(acp_run(policy, {"sh", "-c", cmd}));
  auto reloads = [&] { return count_lines(slurp(audit()), "\"policy_reload\""); };
  auto requests = [&] { return count_lines(slurp(audit()), "\"kind\":\"request\""); };
  std::ofstream(flags_ + "/go0").close();
  ASSERT_TRUE(wait_until([&] { return requests() >= 1; }, 30s)) << slurp(audit());
  for (size_t i = 0; i < corruptions.size(); ++i) {
    corruptions[i]();
    kill(acp.pid, SIGHUP);
    ASSERT_TRUE(wait_until([&] { return reloads() >= i + 1; }, 30s)) << slurp(audit());
    std::ofstream(flags_ + "/go" + std::to_string(i + 1)).close();
    ASSERT_TRUE(wait_until([&] { return requests() >= i + 2; }, 30s)) << slurp(audit());
  }
  acp.finish();
  EXPECT_EQ(acp.status, 0) << acp.out;
  for (size_t i = 0; i <= corruptions.size(); ++i)
    EXPECT_NE(acp.out.find("STEP" + std::to_string(i) + "=200"), std::string::npos) << acp.out;
  EXPECT_EQ(count_lines(acp.out, "keeping the previous policy"), corruptions.size()) << acp.out;
  EXPECT_EQ(count_lines(slurp(audit()), "\"ok\":false"), corruptions.size()) << slurp(audit());
}

// --- the agent forking hard -----------------------------------------------------------------

TEST_F(Fault, ForkBombIsBoundedAcpAnswersAndTeardownKillsEverything) {
  std::string stop = flags_ + "/stop";
  // The bomb runs in a child; the agent itself only waits (it needs no fork to exit). Every
  // bomb process forks for ever, retrying when the limit refuses it: the pressure stays on.
  std::string agent =
      "import os, time\n"
      "if os.fork() == 0:\n"
      "    while True:\n"
      "        try:\n"
      "            os.fork()\n"
      "        except OSError:\n"
      "            time.sleep(0.05)\n"
      "while not os.path.exists('" +
      stop + "'):\n    time.sleep(0.1)\n";
  std::string script = write_script("bomb.py", agent);
  Proc acp =
      start(acp_run(policy_for_origin("allow"), {"/usr/bin/python3", script}, {"--max-tasks=256"}));
  nlohmann::json s;
  ASSERT_TRUE(wait_until(
      [&] {
        s = session_of(acp.pid);
        return !s.is_null() && !s.value("task_limit", "").empty();
      },
      30s));
  const std::string limit_text = s.value("task_limit", "");
  const std::string cg = s.value("cgroup", "");
  // Which mechanism holds depends on the machine (task_limit.hpp); its number bounds the cgroup.
  uint64_t limit = 0;
  auto eq = limit_text.find('=');
  ASSERT_NE(eq, std::string::npos) << limit_text;
  limit = std::stoull(limit_text.substr(eq + 1));
  ASSERT_GT(limit, 0u);
  auto tasks_in_cgroup = [&] {
    std::istringstream in(slurp(cg + "/cgroup.threads"));
    size_t n = 0;
    for (std::string l; std::getline(in, l);) ++n;
    return n;
  };
  // The bomb grows until it hits the limit; meanwhile acp keeps answering.
  ASSERT_TRUE(wait_until([&] { return tasks_in_cgroup() >= 100; }, 60s)) << tasks_in_cgroup();
  size_t most = 0;
  for (int i = 0; i < 5; ++i) {
    auto st = run({ACP_BINARY, "status"});
    EXPECT_EQ(st.status, 0) << st.out;
    EXPECT_NE(st.out.find(limit_text), std::string::npos) << st.out;
    auto p = run({ACP_BINARY, "pending", "--json"});
    EXPECT_EQ(p.status, 0) << p.out;
    EXPECT_FALSE(nlohmann::json::parse(p.out, nullptr, false).is_discarded()) << p.out;
    most = std::max(most, tasks_in_cgroup());
  }
  EXPECT_LE(most, limit) << limit_text;
  std::ofstream(stop).close();
  acp.finish();
  EXPECT_EQ(acp.status, 0) << acp.out.substr(0, 2000);
  // Teardown killed every task and removed the cgroup.
  EXPECT_FALSE(fs::exists(cg)) << cg;
  EXPECT_TRUE(session_of(acp.pid).is_null());
}

// --- the agent holding thousands of connections ---------------------------------------------

// An origin that accepts connections and holds them, saying nothing.
constexpr const char* kSinkOrigin = R"PY(
import selectors, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', int(sys.argv[1])))
s.listen(4096)
import resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
sel = selectors.DefaultSelector()
sel.register(s, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        if key.fileobj is s:
            c, _ = s.accept()
            sel.register(c, selectors.EVENT_READ)
        else:
            try:
                d = key.fileobj.recv(4096)
            except OSError:
                d = b''
            if not d:
                sel.unregister(key.fileobj)
                key.fileobj.close()
)PY";

// Opens N CONNECT tunnels through the proxy, says HELD, holds them until `release` exists.
constexpr const char* kTunnelHolder = R"PY(
import os, resource, socket, sys, time
proxy_port, sink_port, n, report, release = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
held = []
for i in range(n):
    t = socket.create_connection(('127.0.0.1', proxy_port))
    t.sendall(b'CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n' % (sink_port, sink_port))
    head = b''
    while b'\r\n\r\n' not in head:
        d = t.recv(4096)
        if not d: break
        head += d
    if not head.startswith(b'HTTP/1.1 200'):
        with open(report, 'a') as f: f.write('TUNNEL-FAILED %d %r\n' % (i, head))
        sys.exit(1)
    held.append(t)
with open(report, 'a') as f: f.write('HELD %d\n' % len(held))
while not os.path.exists(release):
    time.sleep(0.1)
for t in held: t.close()
)PY";

TEST_F(Fault, ThousandsOfTunnelsAcpStillAnswersAndItsFdsReturnToBaseline) {
  constexpr int kTunnels = 2000;
  uint16_t sink_port = free_port();
  std::string sink = write_script("sink.py", kSinkOrigin);
  extra_origins_.push_back(Proc::start({"python3", sink, std::to_string(sink_port)}));
  ASSERT_TRUE(wait_until([&] { return port_answers(sink_port); }, 10s));
  std::string holder = write_script("holder.py", kTunnelHolder);
  auto policy = write_policy(
      "many.yml", "default: deny\nrules:\n  - match: { kind: http, host: \"127.0.0.1\", port: " +
                      std::to_string(sink_port) +
                      " }\n    action: allow\n  - match: { kind: http, host: \"127.0.0.1\", "
                      "port: " +
                      std::to_string(origin_port_) + " }\n    action: ask\n    timeout: 300\n");
  int fd = open(report_.c_str(), O_CREAT | O_WRONLY, 0666);
  close(fd);
  chmod(report_.c_str(), 0666);
  const std::string go = flags_ + "/go", release = flags_ + "/release", done = flags_ + "/done";
  // The agent's first request (denied) shows the event loop is serving: every fd of the
  // session setup exists by then, and the baseline is taken after it.
  std::string cmd =
      "curl -s -o /dev/null http://127.0.0.1:1/; echo STARTED >> " + report_ + "; while [ ! -e " +
      go + " ]; do sleep 0.1; done; /usr/bin/python3 " + holder + " " +
      std::to_string(proxy_port_) + " " + std::to_string(sink_port) + " " +
      std::to_string(kTunnels) + " " + report_ + " " + release + " & H=$!; while ! grep -q HELD " +
      report_ +
      "; do sleep 0.2; kill -0 $H || exit 3; done; curl -s -o /dev/null -w 'ASKED=%{http_code}\\n' "
      "--max-time 300 " +
      origin_url() + " >> " + report_ + "; touch " + release + "; wait $H; echo HOLDER-EXITED >> " +
      report_ + "; while [ ! -e " + done + " ]; do sleep 0.1; done";
  Proc acp = start(acp_run(policy, {"sh", "-c", cmd}));
  ASSERT_TRUE(wait_until([&] { return slurp(report_).find("STARTED") != std::string::npos; }, 60s));
  const size_t baseline = count_fds(acp.pid);
  std::ofstream(go).close();
  ASSERT_TRUE(wait_until(
      [&] {
        auto r = slurp(report_);
        return r.find("HELD") != std::string::npos || r.find("FAILED") != std::string::npos;
      },
      300s))
      << slurp(report_);
  ASSERT_NE(slurp(report_).find("HELD"), std::string::npos) << slurp(report_);
  EXPECT_GE(count_fds(acp.pid), baseline + kTunnels) << "the tunnels are not all held by acp";
  // With 2000 tunnels open the human still sees the ask and answers it.
  std::string id = wait_for_my_pending(acp.pid, 120s);
  ASSERT_FALSE(id.empty()) << "acp pending did not show the ask";
  auto a = run({ACP_BINARY, "approve", id});
  EXPECT_EQ(a.status, 0) << a.out;
  ASSERT_TRUE(
      wait_until([&] { return slurp(report_).find("HOLDER-EXITED") != std::string::npos; }, 120s))
      << slurp(report_);
  EXPECT_NE(slurp(report_).find("ASKED=200"), std::string::npos) << slurp(report_);
  // Every tunnel's fds are given back.
  EXPECT_TRUE(wait_until([&] { return count_fds(acp.pid) <= baseline; }, 60s))
      << "acp holds " << count_fds(acp.pid) << " fds, " << baseline << " before the tunnels:\n"
      << fd_listing(acp.pid);
  std::ofstream(done).close();
  acp.finish();
  EXPECT_EQ(acp.status, 0) << acp.out.substr(0, 2000);
}

}  // namespace
