// `acp daemon` end to end (issue 6): the real binary as daemon and as `acp run`, real agents
// (python3) as nobody, real BPF walls and cgroups, consent answered with `acp approve`.
//  - two sessions share one daemon: both confined, each allowed only its own proxy port;
//  - the daemon SIGKILLed while a session runs: the agent stays confined (direct connect EPERM),
//    a restarted daemon re-adopts the session and a new proxied request is asked and approved;
//  - acp run killed: the daemon keeps the door open and collects the session when its agent ends;
//  - READY=1 reaches $NOTIFY_SOCKET; without a daemon acp run runs standalone;
//  - --metrics: /metrics, read by prometheus_client's parser, counts what one session did
//    (decisions by decider, proxy connections and bytes, kernel denials, a pending ask) and
//    keeps counting after the session ended; an address that cannot be served stops the daemon.
// Each daemon listens on a socket in the test's own directory, so no other `acp run` on this
// machine registers with it.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/metrics_scrape.hpp"
#include "support/run_fixture.hpp"
#include "support/wall_fixture.hpp"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using acp::vmtest::count_lines;
using acp::vmtest::free_port;
using acp::vmtest::Proc;
using acp::vmtest::run;
using acp::vmtest::slurp;
using acp::vmtest::wait_until;

// One-shot agent: a direct connect to the origin and to the other session's proxy (both must
// be EPERM), then a request through its own proxy (HTTP_PROXY), which the policy asks about.
constexpr const char* kOneShotAgent = R"PY(
import socket, sys, urllib.request
origin_port, other_port = int(sys.argv[1]), int(sys.argv[2])
def attempt(port):
    try:
        socket.create_connection(('127.0.0.1', port), timeout=5).close()
        return 'OK'
    except PermissionError:
        return 'EPERM'
    except OSError as e:
        return 'ERR ' + str(e)
print('direct=' + attempt(origin_port), flush=True)
print('other_proxy=' + attempt(other_port), flush=True)
try:
    r = urllib.request.urlopen('http://127.0.0.1:%d/' % origin_port, timeout=60)
    print('proxied=%d %s' % (r.status, r.read().decode().strip()), flush=True)
except Exception as e:
    print('proxied=FAILED ' + str(e), flush=True)
)PY";

// Long-running agent: keeps trying the origin directly (REFUSED = EPERM from the wall) and,
// for each flag file go-N that appears, makes one request through the proxy (PROXIED-N <code>).
// Ends when the flag file `stop` appears.
constexpr const char* kLongAgent = R"PY(
import os, socket, sys, time, urllib.request
report, flags, origin_port = sys.argv[1], sys.argv[2], int(sys.argv[3])
def log(s):
    with open(report, 'a') as f:
        f.write(s + '\n')
done = set()
for i in range(3000):
    if os.path.exists(flags + '/stop'):
        break
    try:
        socket.create_connection(('127.0.0.1', origin_port), timeout=2).close()
        log('OK')
    except PermissionError:
        log('REFUSED')
    except OSError as e:
        log('ERR ' + str(e))
    for n in range(1, 10):
        if n not in done and os.path.exists(flags + '/go-%d' % n):
            done.add(n)
            try:
                r = urllib.request.urlopen('http://127.0.0.1:%d/' % origin_port, timeout=60)
                log('PROXIED-%d %d' % (n, r.status))
            except Exception as e:
                log('PROXIED-%d FAILED %s' % (n, e))
    time.sleep(0.1)
log('END')
)PY";

// Transparent-door agent: for each flag file go-N, one request to URL with proxies disabled
// (ProxyHandler({})): it gets out only if the kernel leads it to the daemon's door and the
// policy allows it (DOOR-N <code> | DOOR-N FAILED ...). Ends when `stop` appears.
constexpr const char* kDoorAgent = R"PY(
import os, socket, sys, time, urllib.request
report, flags, url = sys.argv[1], sys.argv[2], sys.argv[3]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
def log(s):
    with open(report, 'a') as f:
        f.write(s + '\n')
done = set()
for i in range(3000):
    if os.path.exists(flags + '/stop'):
        break
    for n in range(1, 10):
        if n not in done and os.path.exists(flags + '/go-%d' % n):
            done.add(n)
            try:
                r = opener.open(url, timeout=30)
                log('DOOR-%d %d' % (n, r.status))
            except Exception as e:
                log('DOOR-%d FAILED %s' % (n, e))
            try:
                ai = socket.getaddrinfo('named.example', 80, socket.AF_INET, socket.SOCK_STREAM)
                log('DNS-%d %s' % (n, ai[0][4][0]))
            except Exception as e:
                log('DNS-%d FAILED %s' % (n, e))
    time.sleep(0.1)
log('END')
)PY";

class Daemon : public acp::vmtest::RunFixture {
 protected:
  void SetUp() override {
    RunFixture::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    socket_ = dir_ + "/daemon.sock";
    flags_ = dir_ + "/flags";
    fs::create_directories(flags_);
    chmod(flags_.c_str(), 0777);
    report_ = flags_ + "/report";
    int fd = open(report_.c_str(), O_CREAT | O_WRONLY, 0666);
    close(fd);
    chmod(report_.c_str(), 0666);
    notify_path_ = dir_ + "/notify";
    notify_fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::strncpy(sa.sun_path, notify_path_.c_str(), sizeof sa.sun_path - 1);
    ASSERT_EQ(bind(notify_fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  }

  void TearDown() override {
    for (auto* p : {&runner_a_, &runner_b_})
      if (p->pid > 0 && waitpid(p->pid, nullptr, WNOHANG) == 0) {
        kill(p->pid, SIGKILL);
        p->reap();
      }
    stop_daemon(/*expect_clean=*/false);
    if (notify_fd_ >= 0) close(notify_fd_);
    RunFixture::TearDown();  // gc --kill of any session of ours left behind
  }

  // Starts `acp daemon` on socket_ and waits for READY=1 on the test's NOTIFY_SOCKET.
  bool start_daemon(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {"env", "NOTIFY_SOCKET=" + notify_path_, ACP_BINARY, "daemon",
                                     "--socket=" + socket_};
    argv.insert(argv.end(), extra.begin(), extra.end());
    daemon_ = Proc::start(argv);
    pollfd p{notify_fd_, POLLIN, 0};
    while (poll(&p, 1, 30000) == 1) {
      char buf[512];
      ssize_t n = recv(notify_fd_, buf, sizeof buf, 0);
      if (n > 0 && std::string(buf, static_cast<size_t>(n)).find("READY=1") != std::string::npos)
        return true;
    }
    return false;
  }

  // SIGTERM; returns what the daemon printed.
  std::string stop_daemon(bool expect_clean = true) {
    if (daemon_.pid <= 0) return "";
    kill(daemon_.pid, SIGTERM);
    int st = daemon_.finish();
    if (expect_clean) {
      EXPECT_EQ(st, 0) << daemon_.out;
    }
    std::string out = daemon_.out;
    daemon_ = Proc{};
    return out;
  }

  std::vector<std::string> run_via_daemon(const std::string& policy, std::vector<std::string> cmd,
                                          uint16_t port, std::vector<std::string> extra = {}) {
    extra.insert(extra.begin(), {"--daemon=required", "--daemon-socket=" + socket_});
    auto argv = acp_run(policy, std::move(cmd), extra);
    for (auto& a : argv)
      if (a.rfind("--proxy-port=", 0) == 0) a = "--proxy-port=" + std::to_string(port);
    return argv;
  }

  // Sessions held by the daemon of pid `pid` whose agent runs, from acp status --json.
  std::vector<nlohmann::json> sessions_of(pid_t pid) {
    std::vector<nlohmann::json> out;
    auto j = nlohmann::json::parse(run({ACP_BINARY, "status", "--json"}).out, nullptr, false);
    if (j.is_discarded() || !j.contains("sessions")) return out;
    for (const auto& s : j["sessions"])
      if (s.value("acp_pid", 0) == pid && s.value("owner", "") == "daemon" &&
          s.value("agent_pid", 0) != 0 && s.contains("proxy") && s["proxy"].is_array() &&
          !s["proxy"].empty())
        out.push_back(s);
    return out;
  }

  // A pending ask of session `sid`, or "".
  std::string wait_pending_of(const std::string& sid) {
    std::string id;
    wait_until(
        [&] {
          for (const auto& p : pending())
            if (p.value("session", "") == sid) id = p.value("id", "");
          return !id.empty();
        },
        30s);
    return id;
  }

  std::string write_script(const std::string& name, const std::string& text) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    chmod(path.c_str(), 0644);
    return path;
  }

  void touch(const std::string& name) { std::ofstream(flags_ + "/" + name) << "1"; }

  std::string socket_, flags_, report_, notify_path_;
  int notify_fd_ = -1;
  Proc daemon_, runner_a_, runner_b_;
};

TEST_F(Daemon, TwoSessionsShareOneDaemonEachConfinedToItsOwnProxy) {
  ASSERT_TRUE(start_daemon()) << "no READY=1 on NOTIFY_SOCKET: " << daemon_.out;
  const std::string policy = policy_for_origin("ask");
  const std::string agent = write_script("agent.py", kOneShotAgent);
  const uint16_t port_a = proxy_port_;
  uint16_t port_b = free_port();
  while (port_b == port_a) port_b = free_port();
  runner_a_ = Proc::start(run_via_daemon(
      policy, {"/usr/bin/python3", agent, std::to_string(origin_port_), std::to_string(port_b)},
      port_a));
  runner_b_ = Proc::start(run_via_daemon(
      policy, {"/usr/bin/python3", agent, std::to_string(origin_port_), std::to_string(port_a)},
      port_b));

  std::vector<nlohmann::json> sessions;
  ASSERT_TRUE(wait_until(
      [&] {
        sessions = sessions_of(daemon_.pid);
        return sessions.size() == 2;
      },
      30s))
      << "the daemon does not hold two sessions: " << (runner_a_.finish(), runner_a_.out)
      << "\n---\n"
      << (runner_b_.finish(), runner_b_.out);
  // Each session's allow map holds exactly its own proxy's endpoints.
  for (const auto& s : sessions) {
    const std::string own = s["proxy"][0].get<std::string>();
    const std::string port = own.substr(own.rfind(':') + 1);
    ASSERT_FALSE(s["allow"].empty()) << s.dump();
    for (const auto& a : s["allow"])
      EXPECT_NE(a.dump().find(":" + port), std::string::npos)
          << "session " << s["id"] << " allows " << a.dump() << " besides its own port " << port;
    EXPECT_EQ(s.value("owner", ""), "daemon");
    EXPECT_FALSE(s.value("orphaned", true));
  }
  // Both agents wait for a human; `acp approve` answers each through the daemon's sockets.
  for (const auto& s : sessions) {
    std::string id = wait_pending_of(s["id"]);
    ASSERT_FALSE(id.empty()) << "no pending ask of session " << s["id"];
    auto a = run({ACP_BINARY, "approve", id});
    EXPECT_EQ(a.status, 0) << a.out;
  }
  EXPECT_EQ(runner_a_.finish(), 0) << runner_a_.out;
  EXPECT_EQ(runner_b_.finish(), 0) << runner_b_.out;
  for (const auto* r : {&runner_a_, &runner_b_}) {
    EXPECT_NE(r->out.find("direct=EPERM"), std::string::npos) << r->out;
    EXPECT_NE(r->out.find("other_proxy=EPERM"), std::string::npos) << r->out;
    EXPECT_NE(r->out.find("proxied=200 origin says hello"), std::string::npos) << r->out;
  }
  // Ended with their agents: nothing of either session is left, the daemon still serves.
  for (const auto& s : sessions) {
    const std::string id = s["id"];
    EXPECT_FALSE(fs::exists("/sys/fs/bpf/acp/" + id)) << "pins left behind";
    EXPECT_FALSE(fs::exists("/run/acp/sessions/" + id + ".json")) << "record left behind";
    EXPECT_FALSE(fs::exists(s.value("cgroup", std::string("/nonexistent"))));
  }
  EXPECT_EQ(waitpid(daemon_.pid, nullptr, WNOHANG), 0) << "the daemon exited: " << daemon_.out;
  stop_daemon();
}

// One session through a daemon with --metrics: a direct connect (refused by the wall), an
// allowed request, a request the policy denies, a request to the metrics endpoint itself (the
// policy allows it, the proxy never connects to ACP's own listeners), and an ask a human
// denies. /metrics before, during the ask and after the session ended, each parsed by
// prometheus_client: every counter moved by exactly what the agent did.
constexpr const char* kMetricsAgent = R"PY(
import socket, sys, urllib.error, urllib.request
origin, denied, ask, metrics = (int(a) for a in sys.argv[1:5])
def get(port, path='/'):
    try:
        r = urllib.request.urlopen('http://127.0.0.1:%d%s' % (port, path), timeout=90)
        return '%d %s' % (r.status, r.read().decode().strip())
    except urllib.error.HTTPError as e:
        return '%d' % e.code
    except Exception as e:
        return 'FAILED ' + str(e)
try:
    socket.create_connection(('127.0.0.1', origin), timeout=5).close()
    print('direct=OK', flush=True)
except PermissionError:
    print('direct=EPERM', flush=True)
print('allowed=' + get(origin), flush=True)
print('denied=' + get(denied), flush=True)
print('metrics=' + get(metrics, '/metrics'), flush=True)
print('asked=' + get(ask), flush=True)
)PY";

TEST_F(Daemon, MetricsCountWhatASessionDidAndKeepItAfterwards) {
  if (!acp::vmtest::prometheus_parser_available())
    GTEST_SKIP() << "python3-prometheus-client is not installed (scripts/install-deps.sh)";
  using acp::vmtest::Scrape;
  using acp::vmtest::scrape_metrics;
  const uint16_t metrics_port = free_port();
  ASSERT_TRUE(start_daemon({"--metrics=127.0.0.1:" + std::to_string(metrics_port)})) << daemon_.out;
  uint16_t denied_port = free_port(), ask_port = free_port();
  while (denied_port == origin_port_ || denied_port == metrics_port) denied_port = free_port();
  while (ask_port == origin_port_ || ask_port == metrics_port || ask_port == denied_port)
    ask_port = free_port();
  ASSERT_TRUE(start_origin(denied_port));
  ASSERT_TRUE(start_origin(ask_port));
  const auto rule = [](uint16_t port, const std::string& action) {
    return "  - match: { kind: http, host: \"127.0.0.1\", port: " + std::to_string(port) +
           " }\n    action: " + action + "\n    timeout: 60\n";
  };
  const std::string policy =
      write_policy("metrics-policy.yml", "default: deny\nrules:\n" + rule(origin_port_, "allow") +
                                             rule(metrics_port, "allow") + rule(ask_port, "ask"));
  const std::string agent = write_script("metrics_agent.py", kMetricsAgent);

  const Scrape before = scrape_metrics(metrics_port);
  ASSERT_TRUE(before.ok()) << before.output;
  // Every family is there from the start, typed, with its help; the counters at zero.
  for (const auto& [name, type] : std::vector<std::pair<std::string, std::string>>{
           {"acp_daemon_sessions", "gauge"},
           {"acp_daemon_sessions_registered", "counter"},
           {"acp_decisions", "counter"},
           {"acp_decision_duration_seconds", "histogram"},
           {"acp_consent_asks_pending", "gauge"},
           {"acp_consent_oldest_ask_age_seconds", "gauge"},
           {"acp_proxy_connections", "counter"},
           {"acp_proxy_bytes", "counter"},
           {"acp_proxy_request_duration_seconds", "histogram"},
           {"acp_audit_records", "counter"},
           {"acp_audit_sync_duration_seconds", "histogram"},
           {"acp_kernel_connects", "counter"},
           {"acp_kernel_denials", "counter"}}) {
    ASSERT_TRUE(before.families.contains(name)) << name << "\n" << before.output;
    EXPECT_EQ(before.families[name]["type"], type) << name;
    EXPECT_FALSE(before.families[name]["help"].get<std::string>().empty()) << name;
  }
  EXPECT_EQ(before.value("acp_daemon_sessions"), 0);

  runner_a_ = Proc::start(run_via_daemon(
      policy,
      {"/usr/bin/python3", agent, std::to_string(origin_port_), std::to_string(denied_port),
       std::to_string(ask_port), std::to_string(metrics_port)},
      proxy_port_));
  std::vector<nlohmann::json> sessions;
  ASSERT_TRUE(wait_until(
      [&] {
        sessions = sessions_of(daemon_.pid);
        return sessions.size() == 1;
      },
      30s))
      << (runner_a_.finish(), runner_a_.out);
  const std::string ask = wait_pending_of(sessions[0]["id"]);
  ASSERT_FALSE(ask.empty()) << "no pending ask";
  // While the ask waits: one pending, and it has been waiting.
  Scrape during;
  ASSERT_TRUE(wait_until(
      [&] {
        during = scrape_metrics(metrics_port);
        return during.value("acp_consent_asks_pending") == 1 &&
               during.value("acp_consent_oldest_ask_age_seconds") > 0;
      },
      30s))
      << during.output;
  EXPECT_TRUE(during.ok()) << during.output;
  EXPECT_EQ(during.value("acp_daemon_sessions"), 1);
  auto denial = run({ACP_BINARY, "deny", ask});
  EXPECT_EQ(denial.status, 0) << denial.out;
  EXPECT_EQ(runner_a_.finish(), 0) << runner_a_.out;
  const std::string& out = runner_a_.out;
  EXPECT_NE(out.find("direct=EPERM"), std::string::npos) << out;
  EXPECT_NE(out.find("allowed=200 origin says hello"), std::string::npos) << out;
  EXPECT_NE(out.find("denied=403"), std::string::npos) << out;
  EXPECT_NE(out.find("metrics=403"), std::string::npos) << out;
  EXPECT_NE(out.find("asked=403"), std::string::npos) << out;

  // The session ended (its agent did); what it did stays counted.
  Scrape after;
  ASSERT_TRUE(wait_until(
      [&] {
        after = scrape_metrics(metrics_port);
        return after.value("acp_daemon_sessions_ended_total") == 1 &&
               after.value("acp_daemon_sessions") == 0;
      },
      30s))
      << after.output;
  ASSERT_TRUE(after.ok()) << after.output;
  auto delta = [&](const std::string& key) { return after.value(key) - before.value(key); };
  EXPECT_EQ(delta("acp_daemon_sessions_registered_total"), 1);
  EXPECT_EQ(delta("acp_decisions_total{decider=\"policy\",verdict=\"allow\"}"), 2);
  EXPECT_EQ(delta("acp_decisions_total{decider=\"policy\",verdict=\"deny\"}"), 1);
  EXPECT_EQ(delta("acp_decisions_total{decider=\"human\",verdict=\"deny\"}"), 1);
  EXPECT_EQ(delta("acp_decisions_total{decider=\"human\",verdict=\"allow\"}"), 0);
  EXPECT_EQ(delta("acp_decision_duration_seconds_count{decider=\"policy\"}"), 3);
  EXPECT_EQ(delta("acp_decision_duration_seconds_count{decider=\"human\"}"), 1);
  // The human took longer than the bucket of a cached decision.
  EXPECT_EQ(delta("acp_decision_duration_seconds_bucket{decider=\"human\",le=\"2.5e-05\"}"), 0);
  EXPECT_EQ(delta("acp_proxy_connections_total"), 4);
  EXPECT_EQ(after.value("acp_proxy_connections_open"), 0);
  EXPECT_EQ(delta("acp_proxy_requests_total"), 4);
  EXPECT_EQ(delta("acp_proxy_forwarded_total"), 1);
  EXPECT_EQ(delta("acp_proxy_denied_total"), 3);
  EXPECT_EQ(delta("acp_proxy_errors_total"), 0);
  EXPECT_EQ(delta("acp_proxy_bytes_total{direction=\"down\"}"),
            static_cast<double>(std::string("origin says hello\n").size()));
  EXPECT_EQ(delta("acp_proxy_bytes_total{direction=\"up\"}"), 0);  // GETs: no body
  EXPECT_EQ(delta("acp_proxy_request_duration_seconds_count{kind=\"http\"}"), 4);
  EXPECT_EQ(delta("acp_proxy_request_duration_seconds_count{kind=\"connect\"}"), 0);
  EXPECT_EQ(after.value("acp_consent_asks_pending"), 0);
  // The wall: the direct connect refused (connect4), the four connections to the proxy let
  // through; both kernel sources agree that something was refused.
  EXPECT_GE(delta("acp_kernel_denials_total{hook=\"connect4\",mode=\"enforce\"}"), 1);
  EXPECT_GE(delta("acp_kernel_connects_total{family=\"inet\",protocol=\"tcp\",verdict=\"deny\"}"),
            1);
  EXPECT_GE(delta("acp_kernel_connects_total{family=\"inet\",protocol=\"tcp\",verdict=\"allow\"}"),
            4);
  // The audit log: four decisions and the kernel's refusal, each synced.
  EXPECT_GE(delta("acp_audit_records_total"), 5);
  EXPECT_GE(delta("acp_audit_syncs_total"), 1);
  EXPECT_EQ(delta("acp_audit_sync_duration_seconds_count"), delta("acp_audit_syncs_total"));
  EXPECT_EQ(delta("acp_audit_failed_records_total"), 0);
  stop_daemon();
}

// --metrics that cannot be served: acp daemon says so and exits before it holds anything.
TEST_F(Daemon, MetricsAddressThatCannotBeServedStopsTheDaemon) {
  auto bad = run(
      {"timeout", "30", ACP_BINARY, "daemon", "--socket=" + socket_, "--metrics=localhost:9464"});
  EXPECT_EQ(bad.status, 1) << bad.out;
  EXPECT_NE(bad.out.find("--metrics=localhost:9464"), std::string::npos) << bad.out;
  int busy = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(busy, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(listen(busy, 1), 0);
  socklen_t len = sizeof a;
  ASSERT_EQ(getsockname(busy, reinterpret_cast<sockaddr*>(&a), &len), 0);
  const std::string flag = "--metrics=127.0.0.1:" + std::to_string(ntohs(a.sin_port));
  auto taken = run({"timeout", "30", ACP_BINARY, "daemon", "--socket=" + socket_, flag});
  close(busy);
  EXPECT_EQ(taken.status, 1) << taken.out;
  EXPECT_NE(taken.out.find(flag + ": listen on 127.0.0.1 port"), std::string::npos) << taken.out;
  EXPECT_NE(taken.out.find("in use"), std::string::npos) << taken.out;
  EXPECT_FALSE(fs::exists(socket_)) << "the daemon bound its socket before failing";
}

TEST_F(Daemon, KilledDaemonLeavesTheAgentConfinedAndARestartReadoptsIt) {
  ASSERT_TRUE(start_daemon()) << daemon_.out;
  const std::string policy = policy_for_origin("ask");
  const std::string agent = write_script("long.py", kLongAgent);
  runner_a_ = Proc::start(run_via_daemon(
      policy, {"/usr/bin/python3", agent, report_, flags_, std::to_string(origin_port_)},
      proxy_port_));
  std::vector<nlohmann::json> sessions;
  ASSERT_TRUE(wait_until(
      [&] {
        sessions = sessions_of(daemon_.pid);
        return sessions.size() == 1;
      },
      30s));
  const std::string sid = sessions[0]["id"];
  const std::string cgroup = sessions[0]["cgroup"];
  ASSERT_TRUE(wait_until([&] { return count_lines(slurp(report_), "REFUSED") >= 3; }, 30s))
      << slurp(report_);

  // A proxied request through the first daemon: asked, approved.
  touch("go-1");
  std::string ask1 = wait_pending_of(sid);
  ASSERT_FALSE(ask1.empty());
  ASSERT_EQ(run({ACP_BINARY, "approve", ask1}).status, 0);
  ASSERT_TRUE(
      wait_until([&] { return slurp(report_).find("PROXIED-1") != std::string::npos; }, 30s));
  EXPECT_NE(slurp(report_).find("PROXIED-1 200"), std::string::npos) << slurp(report_);

  // The daemon dies. The pins hold: the agent keeps running and keeps being refused.
  kill(daemon_.pid, SIGKILL);
  daemon_.finish();
  daemon_ = Proc{};
  const size_t refused_before = count_lines(slurp(report_), "REFUSED");
  ASSERT_TRUE(
      wait_until([&] { return count_lines(slurp(report_), "REFUSED") >= refused_before + 5; }, 30s))
      << slurp(report_);
  EXPECT_EQ(count_lines(slurp(report_), "OK"), 0u) << "escaped:\n" << slurp(report_);
  EXPECT_EQ(count_lines(slurp(report_), "ERR"), 0u) << slurp(report_);
  auto st = run({ACP_BINARY, "status"});
  EXPECT_NE(st.out.find(sid), std::string::npos) << st.out;
  EXPECT_TRUE(fs::exists("/sys/fs/bpf/acp/" + sid));

  // A new daemon re-adopts the session: same proxy port, consent resumes.
  ASSERT_TRUE(start_daemon()) << daemon_.out;
  ASSERT_TRUE(wait_until([&] { return sessions_of(daemon_.pid).size() == 1; }, 30s)) << daemon_.out;
  auto adopted = sessions_of(daemon_.pid)[0];
  EXPECT_EQ(adopted["id"], sid);
  EXPECT_EQ(adopted["proxy"], sessions[0]["proxy"]);
  touch("go-2");
  std::string ask2 = wait_pending_of(sid);
  ASSERT_FALSE(ask2.empty()) << "no ask after re-adoption:\n" << slurp(report_);
  EXPECT_NE(ask2, ask1);
  ASSERT_EQ(run({ACP_BINARY, "approve", ask2}).status, 0);
  ASSERT_TRUE(
      wait_until([&] { return slurp(report_).find("PROXIED-2") != std::string::npos; }, 30s));
  EXPECT_NE(slurp(report_).find("PROXIED-2 200"), std::string::npos) << slurp(report_);
  EXPECT_EQ(count_lines(slurp(report_), "OK"), 0u) << slurp(report_);

  // The agent ends; acp run ends the session through the new daemon, exits with its status.
  touch("stop");
  EXPECT_EQ(runner_a_.finish(), 0) << runner_a_.out;
  EXPECT_NE(runner_a_.out.find("lost the acp daemon"), std::string::npos) << runner_a_.out;
  EXPECT_FALSE(fs::exists("/sys/fs/bpf/acp/" + sid)) << "pins left behind";
  EXPECT_FALSE(fs::exists("/run/acp/sessions/" + sid + ".json")) << "record left behind";
  EXPECT_FALSE(fs::exists(cgroup)) << cgroup;
  stop_daemon();
}

TEST_F(Daemon, StoppedDaemonSaysStoppingLeavesTheWallAndARestartReadopts) {
  // systemctl stop/restart: SIGTERM. STOPPING=1 reaches systemd; the session is not ended.
  ASSERT_TRUE(start_daemon()) << daemon_.out;
  const std::string agent = write_script("long.py", kLongAgent);
  runner_a_ = Proc::start(run_via_daemon(
      policy_for_origin("allow"),
      {"/usr/bin/python3", agent, report_, flags_, std::to_string(origin_port_)}, proxy_port_));
  std::vector<nlohmann::json> sessions;
  ASSERT_TRUE(wait_until(
      [&] {
        sessions = sessions_of(daemon_.pid);
        return sessions.size() == 1;
      },
      30s));
  const std::string sid = sessions[0]["id"];
  kill(daemon_.pid, SIGTERM);
  bool stopping = false;
  pollfd p{notify_fd_, POLLIN, 0};
  while (!stopping && poll(&p, 1, 30000) == 1) {
    char buf[512];
    ssize_t n = recv(notify_fd_, buf, sizeof buf, 0);
    stopping =
        n > 0 && std::string(buf, static_cast<size_t>(n)).find("STOPPING=1") != std::string::npos;
  }
  EXPECT_TRUE(stopping) << "no STOPPING=1 on NOTIFY_SOCKET";
  EXPECT_EQ(daemon_.finish(), 0) << daemon_.out;
  daemon_ = Proc{};
  EXPECT_TRUE(fs::exists("/sys/fs/bpf/acp/" + sid)) << "the wall came down with the daemon";
  const size_t refused = count_lines(slurp(report_), "REFUSED");
  ASSERT_TRUE(
      wait_until([&] { return count_lines(slurp(report_), "REFUSED") >= refused + 3; }, 30s));
  ASSERT_TRUE(start_daemon()) << daemon_.out;
  ASSERT_TRUE(wait_until([&] { return sessions_of(daemon_.pid).size() == 1; }, 30s));
  touch("go-1");
  ASSERT_TRUE(
      wait_until([&] { return slurp(report_).find("PROXIED-1") != std::string::npos; }, 30s));
  EXPECT_NE(slurp(report_).find("PROXIED-1 200"), std::string::npos) << slurp(report_);
  EXPECT_EQ(count_lines(slurp(report_), "OK"), 0u) << slurp(report_);
  touch("stop");
  EXPECT_EQ(runner_a_.finish(), 0) << runner_a_.out;
  EXPECT_FALSE(fs::exists("/sys/fs/bpf/acp/" + sid)) << "pins left behind";
  stop_daemon();
}

TEST_F(Daemon, KilledRunnerLeavesTheSessionToTheDaemonUntilItsAgentEnds) {
  ASSERT_TRUE(start_daemon()) << daemon_.out;
  const std::string agent = write_script("long.py", kLongAgent);
  runner_a_ = Proc::start(run_via_daemon(
      policy_for_origin("allow"),
      {"/usr/bin/python3", agent, report_, flags_, std::to_string(origin_port_)}, proxy_port_));
  std::vector<nlohmann::json> sessions;
  ASSERT_TRUE(wait_until(
      [&] {
        sessions = sessions_of(daemon_.pid);
        return sessions.size() == 1;
      },
      30s));
  const std::string sid = sessions[0]["id"];
  ASSERT_TRUE(wait_until([&] { return count_lines(slurp(report_), "REFUSED") >= 2; }, 30s));
  kill(runner_a_.pid, SIGKILL);
  runner_a_.reap();
  // The door stays open: a proxied request still goes through (the policy allows it).
  touch("go-1");
  ASSERT_TRUE(
      wait_until([&] { return slurp(report_).find("PROXIED-1") != std::string::npos; }, 30s));
  EXPECT_NE(slurp(report_).find("PROXIED-1 200"), std::string::npos) << slurp(report_);
  EXPECT_EQ(sessions_of(daemon_.pid).size(), 1u);
  // The agent ends: the daemon collects the session.
  touch("stop");
  EXPECT_TRUE(wait_until([&] { return !fs::exists("/sys/fs/bpf/acp/" + sid); }, 30s))
      << "the daemon did not collect the session";
  EXPECT_TRUE(wait_until([&] { return !fs::exists("/run/acp/sessions/" + sid + ".json"); }, 10s));
  EXPECT_FALSE(fs::exists(sessions[0].value("cgroup", std::string("/nonexistent"))));
  EXPECT_EQ(count_lines(slurp(report_), "OK"), 0u) << slurp(report_);
  stop_daemon();
}

TEST_F(Daemon, WithoutADaemonAcpRunRunsStandalone) {
  // --daemon=auto (the default) with nobody on the socket: standalone, as before.
  auto r =
      run(acp_run(policy_for_origin("allow"),
                  {"sh", "-c", "curl -s -w ' HTTP=%{http_code}' --max-time 20 " + origin_url()},
                  {"--daemon-socket=" + socket_}));
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("origin says hello"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("HTTP=200"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("acp daemon"), std::string::npos) << r.out;
  // --daemon=required without one: acp's own failure, and it says what to do.
  auto req = run(acp_run(policy_for_origin("allow"), {"true"},
                         {"--daemon=required", "--daemon-socket=" + socket_}));
  EXPECT_EQ(req.status, 125) << req.out;
  EXPECT_NE(req.out.find("no acp daemon answers"), std::string::npos) << req.out;
}

TEST_F(Daemon, NoDaemonFlagRunsStandaloneBesideARunningDaemon) {
  ASSERT_TRUE(start_daemon()) << daemon_.out;
  auto r =
      run(acp_run(policy_for_origin("allow"),
                  {"sh", "-c", "curl -s -w ' HTTP=%{http_code}' --max-time 20 " + origin_url()},
                  {"--no-daemon", "--daemon-socket=" + socket_}));
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("HTTP=200"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("acp daemon"), std::string::npos) << r.out;
  std::string out = stop_daemon();
  EXPECT_EQ(out.find("registered"), std::string::npos) << out;
}

// --allow-unix reaches the daemon's wall (it was once dropped on the way): the agent connects
// to the abstract socket it names and not to another one; on a kernel whose wall cannot judge
// local IPC, acp run prints the daemon's notice saying so.
TEST_F(Daemon, AllowUnixReachesTheDaemonsWall) {
  ASSERT_TRUE(start_daemon()) << daemon_.out;
  const std::string tag = std::to_string(getpid());
  auto listen_abstract = [](const std::string& name) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path + 1, name.data(), name.size());  // sun_path[0] = 0: abstract
    const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&sa), len), 0) << std::strerror(errno);
    EXPECT_EQ(listen(fd, 8), 0) << std::strerror(errno);
    return fd;
  };
  const std::string allowed = "acp-vmtest-allowed-" + tag;
  const std::string other = "acp-vmtest-other-" + tag;
  const int fd_allowed = listen_abstract(allowed);
  const int fd_other = listen_abstract(other);
  const std::string agent = write_script("unix_agent.py", R"PY(
import socket, sys
for label, name in (('allowed', sys.argv[1]), ('other', sys.argv[2])):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect('\0' + name)
        print(label + '=OK', flush=True)
    except PermissionError:
        print(label + '=EPERM', flush=True)
    except OSError as e:
        print(label + '=ERR ' + str(e), flush=True)
    s.close()
)PY");
  auto r =
      run(acp_run(policy_for_origin("allow"), {"/usr/bin/python3", agent, allowed, other},
                  {"--daemon=required", "--daemon-socket=" + socket_, "--allow-unix=@" + allowed}));
  close(fd_allowed);
  close(fd_other);
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("allowed=OK"), std::string::npos) << r.out;
  if (r.out.find("local IPC is NOT walled") == std::string::npos)
    EXPECT_NE(r.out.find("other=EPERM"), std::string::npos) << r.out;
  else
    EXPECT_NE(r.out.find("other=OK"), std::string::npos) << r.out;
  std::string out = stop_daemon();
  EXPECT_NE(out.find("registered"), std::string::npos) << out;
}

// --door=both through the daemon: the session builder's door step runs in the daemon, the agent
// (no proxy settings) is led to the daemon's transparent listener and judged; a SIGKILLed
// daemon's successor reopens the door on the ports the pinned wall leads to, with the pinned
// door_origin map, and the next led-in request is judged again.
TEST_F(Daemon, TransparentDoorIsHeldByTheDaemonAndReopenedAfterARestart) {
  auto host = acp::vmtest::NetnsHost::create();
  ASSERT_TRUE(host.ok()) << host.error().message();
  origin_wrapper_ = {"ip", "netns", "exec", (*host)->name()};
  const uint16_t port = free_port();
  ASSERT_TRUE(start_origin(port, (*host)->addr4()));
  const std::string url = "http://" + (*host)->addr4() + ":" + std::to_string(port) + "/";
  const std::string policy =
      write_policy("door.yml", "default: deny\nrules:\n  - match: { kind: http, host: \"" +
                                   (*host)->addr4() + "\", port: " + std::to_string(port) +
                                   " }\n    action: allow\n  - match: { host: \"named.example\" }\n"
                                   "    action: allow\n");
  ASSERT_TRUE(start_daemon()) << daemon_.out;
  const std::string agent = write_script("door.py", kDoorAgent);
  runner_a_ = Proc::start(run_via_daemon(policy, {"/usr/bin/python3", agent, report_, flags_, url},
                                         proxy_port_, {"--door=both"}));
  ASSERT_TRUE(wait_until([&] { return sessions_of(daemon_.pid).size() == 1; }, 30s))
      << runner_a_.out << daemon_.out;
  const std::string sid = sessions_of(daemon_.pid)[0]["id"];
  touch("go-1");
  ASSERT_TRUE(wait_until([&] { return slurp(report_).find("DOOR-1") != std::string::npos; }, 30s));
  EXPECT_NE(slurp(report_).find("DOOR-1 200"), std::string::npos) << slurp(report_);
  // The session's DNS, held by the daemon too.
  ASSERT_TRUE(wait_until([&] { return slurp(report_).find("DNS-1") != std::string::npos; }, 30s));
  EXPECT_NE(slurp(report_).find("DNS-1 198.18."), std::string::npos) << slurp(report_);
  EXPECT_TRUE(fs::exists("/sys/fs/bpf/acp/" + sid + "/map_door_origin"));
  // acp status says the door and counts what it led in.
  auto text = run({ACP_BINARY, "status"});
  EXPECT_NE(text.out.find("door:       both"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("DNS: 1 names answered"), std::string::npos) << text.out;
  auto status = nlohmann::json::parse(run({ACP_BINARY, "status", "--json"}).out, nullptr, false);
  uint64_t led_in_counted = 0;
  if (!status.is_discarded())
    for (const auto& s : status["sessions"])
      if (s.value("id", "") == sid && s.contains("proxy_counters"))
        led_in_counted = s["proxy_counters"].value("door_connections", uint64_t{0});
  EXPECT_GE(led_in_counted, 1u) << status.dump();

  kill(daemon_.pid, SIGKILL);
  daemon_.finish();
  daemon_ = Proc{};
  ASSERT_TRUE(start_daemon()) << daemon_.out;
  ASSERT_TRUE(wait_until([&] { return sessions_of(daemon_.pid).size() == 1; }, 30s)) << daemon_.out;
  touch("go-2");
  ASSERT_TRUE(wait_until([&] { return slurp(report_).find("DOOR-2") != std::string::npos; }, 30s));
  EXPECT_NE(slurp(report_).find("DOOR-2 200"), std::string::npos) << slurp(report_) << daemon_.out;
  // The successor answers DNS on the port the pinned wall leads it to.
  ASSERT_TRUE(wait_until([&] { return slurp(report_).find("DNS-2") != std::string::npos; }, 30s));
  EXPECT_NE(slurp(report_).find("DNS-2 198.18."), std::string::npos) << slurp(report_);

  size_t led_in = 0;
  for (const auto& e : audit_entries())
    if (e.value("kind", "") == "request" && e["action"].value("via", "") == "transparent" &&
        e["action"].value("port", 0) == port && e.value("verdict", "") == "allow")
      ++led_in;
  EXPECT_GE(led_in, 2u);
  touch("stop");
  EXPECT_EQ(runner_a_.finish(), 0) << runner_a_.out;
  EXPECT_FALSE(fs::exists("/sys/fs/bpf/acp/" + sid)) << "pins left behind";
  stop_daemon();
}

}  // namespace

// With a daemon, acp run prints the channels the daemon sends: as standalone, the page's token
// is not on acp's stderr (a file here, which the agent reads back through /proc/self/fd/2), and
// a root agent's namespace hides the secret files the daemon names (the token file).
TEST_F(Daemon, TokenIsOnNoStreamAndHiddenFromARootAgent) {
  ASSERT_TRUE(start_daemon()) << daemon_.out;
  const uint16_t web_port = free_port();
  const std::string token_file = dir_ + "/secrets/web.token";
  const std::string cfg = dir_ + "/web-config.yml";
  std::ofstream(cfg) << "channels:\n  web:\n    enabled: true\n    listen: \"127.0.0.1:" << web_port
                     << "\"\n    token_file: \"" << token_file << "\"\n";
  chmod(cfg.c_str(), 0644);
  const std::string log = dir_ + "/acp-stderr.log";
  auto argv = run_via_daemon(
      policy_for_origin("allow"),
      {"sh", "-c", "echo AGENT-READS; cat /proc/self/fd/2; cat " + token_file + " 2>/dev/null"},
      proxy_port_);
  for (auto& a : argv) {
    if (a.rfind("--config=", 0) == 0) a = "--config=" + cfg;
    if (a == "--user=nobody") a = "--user=root";
  }
  argv.insert(argv.begin() + 2, "--allow-root");
  argv.insert(argv.begin(), {"sh", "-c", "exec \"$0\" \"$@\" 2>" + log});
  auto r = run(argv);
  EXPECT_EQ(r.status, 0) << r.out << slurp(log);
  std::string token = slurp(token_file);
  while (!token.empty() && token.back() == '\n') token.pop_back();
  ASSERT_EQ(token.size(), 64u) << r.out << slurp(log);
  const std::string logged = slurp(log);
  EXPECT_NE(logged.find("(bpf, acp daemon)"), std::string::npos) << logged;
  EXPECT_NE(logged.find("consent channel web: http://127.0.0.1:" + std::to_string(web_port) +
                        "/?token=… (the token is in " + token_file),
            std::string::npos)
      << logged;
  EXPECT_EQ(logged.find(token), std::string::npos) << logged;
  EXPECT_NE(r.out.find("AGENT-READS\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("consent channel web:"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find(token), std::string::npos) << r.out;
  stop_daemon();
}
