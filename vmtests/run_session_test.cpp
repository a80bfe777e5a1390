// `acp run` end to end, as a user runs it: the real binary, a real agent (sh, curl, python3) as
// an unprivileged user, the real BPF wall, the real proxy, policy, consent gate, control socket
// and audit log. Origins are python3 http.server processes on loopback.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "acp/kernel/probe.hpp"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A child process with stdout and stderr captured (merged).
struct Proc {
  pid_t pid = -1;
  int out_fd = -1;
  std::string out;
  int status = -1;

  static Proc start(const std::vector<std::string>& argv) {
    Proc p;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return p;
    p.pid = fork();
    if (p.pid == 0) {
      dup2(fds[1], 1);
      dup2(fds[1], 2);
      setpgid(0, 0);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execvp(args[0], args.data());
      _exit(127);
    }
    close(fds[1]);
    p.out_fd = fds[0];
    return p;
  }
  // Reaps without reading to EOF: the agent of a killed acp still holds the pipe open.
  int reap() {
    int st = 0;
    waitpid(pid, &st, 0);
    close(out_fd);
    status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return status;
  }
  // Reads until EOF, then reaps. Returns the exit status (128+sig when killed).
  int finish() {
    out += read_all(out_fd);
    close(out_fd);
    int st = 0;
    waitpid(pid, &st, 0);
    status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return status;
  }
};

Proc run(const std::vector<std::string>& argv) {
  Proc p = Proc::start(argv);
  p.finish();
  return p;
}

uint16_t free_port() {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  close(s);
  return ntohs(a.sin_port);
}

bool port_answers(uint16_t port) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  bool ok = connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(s);
  return ok;
}

class RunSession : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: acp run loads BPF programs";
    std::string why;
    if (!acp::kernel::bpf_backend_supported(&why)) GTEST_SKIP() << "no cgroup BPF here: " << why;
    char tmpl[] = "/tmp/acp-run-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    chmod(dir_.c_str(), 0755);
    fs::create_directories(dir_ + "/www");
    std::ofstream(dir_ + "/www/index.html") << "origin says hello\n";
    origin_port_ = free_port();
    origin_ = Proc::start({"python3", "-m", "http.server", "--bind", "127.0.0.1",
                           std::to_string(origin_port_), "--directory", dir_ + "/www"});
    for (int i = 0; i < 100 && !port_answers(origin_port_); ++i) std::this_thread::sleep_for(50ms);
    ASSERT_TRUE(port_answers(origin_port_)) << "the test origin did not start";
    proxy_port_ = free_port();
  }
  void TearDown() override {
    if (origin_.pid > 0) {
      kill(origin_.pid, SIGTERM);
      origin_.finish();
    }
    // A test that failed half-way may leave an orphaned session of its own: end it.
    if (!dir_.empty() && run({ACP_BINARY, "status", "--json"}).out.find(dir_) != std::string::npos)
      run({ACP_BINARY, "gc", "--kill"});
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  std::string write_policy(const std::string& name, const std::string& yaml) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << yaml;
    chmod(path.c_str(), 0644);
    return path;
  }
  std::string policy_for_origin(const std::string& action) {
    return write_policy("policy.yml",
                        "default: deny\nrules:\n  - match: { kind: http, host: "
                        "\"127.0.0.1\", port: " +
                            std::to_string(origin_port_) + " }\n    action: " + action +
                            "\n    timeout: 20\n");
  }
  std::vector<std::string> acp_run(const std::string& policy, std::vector<std::string> cmd,
                                   std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {
        ACP_BINARY,           "run",
        "--user=nobody",      "--proxy-port=" + std::to_string(proxy_port_),
        "--policy=" + policy, "--audit-log=" + audit()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back("--");
    argv.insert(argv.end(), cmd.begin(), cmd.end());
    return argv;
  }
  std::string audit() const { return dir_ + "/audit.jsonl"; }
  std::string origin_url() const {
    return "http://127.0.0.1:" + std::to_string(origin_port_) + "/";
  }
  // Pending requests across all sessions, from `acp pending --json`.
  nlohmann::json pending() {
    auto p = run({ACP_BINARY, "pending", "--json"});
    try {
      return nlohmann::json::parse(p.out);
    } catch (...) {
      return nlohmann::json::array();
    }
  }
  std::string wait_for_pending_id() {
    for (int i = 0; i < 200; ++i) {
      auto j = pending();
      if (j.is_array() && !j.empty()) return j[0].at("id").get<std::string>();
      std::this_thread::sleep_for(50ms);
    }
    return "";
  }

  std::string dir_;
  uint16_t origin_port_ = 0;
  uint16_t proxy_port_ = 0;
  Proc origin_;
};

// The agent script: a direct attempt (must fail), then the same URL through the proxy.
std::vector<std::string> direct_then_proxied(const std::string& url) {
  return {"sh", "-c",
          "if curl -s --noproxy '*' --max-time 5 -o /dev/null " + url +
              "; then echo DIRECT-OK; else echo DIRECT-REFUSED; fi; "
              "curl -s --max-time 30 " +
              url + "; echo CURL-EXIT=$?"};
}

TEST_F(RunSession, DirectConnectionIsRefusedAndTheAllowedProxiedRequestSucceeds) {
  auto r = run(acp_run(policy_for_origin("allow"), direct_then_proxied(origin_url())));
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("DIRECT-REFUSED"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("DIRECT-OK"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("origin says hello"), std::string::npos) << r.out;
  // Both decisions are in the audit log: the kernel's denied connect and the proxy's allow.
  std::string log = slurp(audit());
  EXPECT_NE(log.find("\"connect\""), std::string::npos) << log;
  EXPECT_NE(log.find("\"allow\""), std::string::npos) << log;
  auto v = run({ACP_BINARY, "audit", "verify", audit()});
  EXPECT_EQ(v.status, 0) << v.out;
}

TEST_F(RunSession, DeniedRequestGets403FromTheProxy) {
  auto policy = write_policy("deny.yml", "default: deny\nrules: []\n");
  auto r = run(acp_run(
      policy, {"sh", "-c", "curl -s -w ' HTTP=%{http_code}' --max-time 20 " + origin_url()}));
  EXPECT_NE(r.out.find("Blocked by ACP"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("HTTP=403"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("origin says hello"), std::string::npos) << r.out;
}

TEST_F(RunSession, AskWaitsForTheOperatorsApproval) {
  Proc agent = Proc::start(acp_run(policy_for_origin("ask"), direct_then_proxied(origin_url())));
  std::string id = wait_for_pending_id();
  ASSERT_FALSE(id.empty()) << "no pending request showed up";
  auto st = run({ACP_BINARY, "status"});
  EXPECT_NE(st.out.find("pending requests"), std::string::npos) << st.out;
  EXPECT_NE(st.out.find(id), std::string::npos) << st.out;
  auto a = run({ACP_BINARY, "approve", id});
  EXPECT_EQ(a.status, 0) << a.out;
  agent.finish();
  EXPECT_EQ(agent.status, 0) << agent.out;
  EXPECT_NE(agent.out.find("origin says hello"), std::string::npos) << agent.out;
  EXPECT_NE(agent.out.find("DIRECT-REFUSED"), std::string::npos) << agent.out;
  EXPECT_NE(slurp(audit()).find("human"), std::string::npos);
}

TEST_F(RunSession, AskDeniedByTheOperatorIs403) {
  Proc agent = Proc::start(
      acp_run(policy_for_origin("ask"),
              {"sh", "-c", "curl -s -w ' HTTP=%{http_code}' --max-time 30 " + origin_url()}));
  std::string id = wait_for_pending_id();
  ASSERT_FALSE(id.empty()) << "no pending request showed up";
  auto d = run({ACP_BINARY, "deny", id, "--reason=not today"});
  EXPECT_EQ(d.status, 0) << d.out;
  agent.finish();
  EXPECT_NE(agent.out.find("HTTP=403"), std::string::npos) << agent.out;
  EXPECT_NE(agent.out.find("not today"), std::string::npos) << agent.out;
}

TEST_F(RunSession, StatusShowsTheLiveSessionAndItsWall) {
  Proc agent = Proc::start(acp_run(policy_for_origin("allow"), {"sleep", "3"}));
  std::string out;
  for (int i = 0; i < 100; ++i) {
    auto s = run({ACP_BINARY, "status"});
    out = s.out;
    if (out.find("127.0.0.1:" + std::to_string(proxy_port_)) != std::string::npos) break;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_NE(out.find("Isolated (bpf)"), std::string::npos) << out;
  EXPECT_NE(out.find("connect4"), std::string::npos) << out;
  EXPECT_NE(out.find("127.0.0.1:" + std::to_string(proxy_port_)), std::string::npos) << out;
  auto sj = run({ACP_BINARY, "status", "--json"});
  auto j = nlohmann::json::parse(sj.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << sj.out;
  ASSERT_FALSE(j["sessions"].empty()) << sj.out;
  agent.finish();
  EXPECT_EQ(agent.status, 0) << agent.out;
  // After the session the wall is gone: no session left in status.
  auto after = run({ACP_BINARY, "status", "--json"});
  auto ja = nlohmann::json::parse(after.out, nullptr, false);
  ASSERT_FALSE(ja.is_discarded()) << after.out;
  for (const auto& s : ja["sessions"])
    EXPECT_NE(s.value("id", ""), j["sessions"][0].value("id", "")) << after.out;
}

TEST_F(RunSession, ExitStatusIsTheAgentsAnd127ForAMissingCommand) {
  auto policy = policy_for_origin("allow");
  EXPECT_EQ(run(acp_run(policy, {"sh", "-c", "exit 7"})).status, 7);
  EXPECT_EQ(run(acp_run(policy, {"no-such-command-acp-test"})).status, 127);
}

TEST_F(RunSession, RootAgentIsRefusedWithoutAllowRoot) {
  auto r = run({ACP_BINARY, "run", "--user=root", "--", "true"});
  EXPECT_EQ(r.status, 125) << r.out;
  EXPECT_NE(r.out.find("--allow-root"), std::string::npos) << r.out;
}

TEST_F(RunSession, KilledAcpLeavesTheAgentConfinedAndGcCleansUp) {
  // The agent keeps trying to connect directly, reporting each result to a file.
  std::string report = dir_ + "/report";
  std::string script = "while true; do if curl -s --noproxy '*' --max-time 2 -o /dev/null " +
                       origin_url() + "; then echo OK >> " + report + "; else echo REFUSED >> " +
                       report + "; fi; sleep 0.2; done";
  int fd = open(report.c_str(), O_CREAT | O_WRONLY, 0666);
  close(fd);
  chmod(report.c_str(), 0666);
  Proc acp = Proc::start(acp_run(policy_for_origin("allow"), {"sh", "-c", script}));
  for (int i = 0; i < 100 && slurp(report).empty(); ++i) std::this_thread::sleep_for(50ms);
  ASSERT_FALSE(slurp(report).empty()) << "the agent never reported";
  kill(acp.pid, SIGKILL);
  acp.reap();
  // acp is gone; the agent is not, and it is still confined.
  std::ofstream(report, std::ios::trunc).close();
  for (int i = 0; i < 100 && slurp(report).size() < 3 * 8; ++i) std::this_thread::sleep_for(50ms);
  std::string after = slurp(report);
  EXPECT_NE(after.find("REFUSED"), std::string::npos) << after;
  EXPECT_EQ(after.find("OK"), std::string::npos) << "the agent escaped after acp died: " << after;
  auto st = run({ACP_BINARY, "status"});
  EXPECT_NE(st.out.find("ORPHANED"), std::string::npos) << st.out;
  // Plain gc keeps an orphan whose processes still run; gc --kill ends them and cleans up.
  auto gc = run({ACP_BINARY, "gc", "--kill"});
  EXPECT_EQ(gc.status, 0) << gc.out;
  auto st2 = run({ACP_BINARY, "status"});
  EXPECT_EQ(st2.out.find("ORPHANED"), std::string::npos) << st2.out;
  EXPECT_EQ(st2.out.find(report), std::string::npos) << "the session is still there: " << st2.out;
}

TEST_F(RunSession, TwoSessionsAtOnceEachGetTheirOwnProxy) {
  auto policy = policy_for_origin("allow");
  uint16_t second_port = free_port();
  std::string cmd =
      "sleep 1; curl -s --max-time 20 " + origin_url() + "; echo; echo PROXY=$HTTP_PROXY";
  Proc a = Proc::start(acp_run(policy, {"sh", "-c", cmd}));
  auto argv_b = acp_run(policy, {"sh", "-c", cmd});
  for (auto& s : argv_b)
    if (s.rfind("--proxy-port=", 0) == 0) s = "--proxy-port=" + std::to_string(second_port);
  for (auto& s : argv_b)
    if (s.rfind("--audit-log=", 0) == 0) s = "--audit-log=" + dir_ + "/audit-b.jsonl";
  Proc b = Proc::start(argv_b);
  a.finish();
  b.finish();
  EXPECT_EQ(a.status, 0) << a.out;
  EXPECT_EQ(b.status, 0) << b.out;
  EXPECT_NE(a.out.find("origin says hello"), std::string::npos) << a.out;
  EXPECT_NE(b.out.find("origin says hello"), std::string::npos) << b.out;
  EXPECT_NE(a.out.find(":" + std::to_string(proxy_port_)), std::string::npos) << a.out;
  EXPECT_NE(b.out.find(":" + std::to_string(second_port)), std::string::npos) << b.out;
}

TEST_F(RunSession, SighupReloadsThePolicyAndABrokenOneKeepsTheOld) {
  std::string policy = policy_for_origin("deny");
  std::string flag = dir_ + "/go";
  // SIGHUP also reaches the agent (acp forwards it): this one ignores it.
  std::string cmd = "trap '' HUP; curl -s -o /dev/null -w 'FIRST=%{http_code}\\n' --max-time 20 " +
                    origin_url() + "; while [ ! -e " + flag +
                    " ]; do sleep 0.1; done; curl -s -o /dev/null -w 'SECOND=%{http_code}\\n' "
                    "--max-time 20 " +
                    origin_url();
  Proc acp = Proc::start(acp_run(policy, {"sh", "-c", cmd}));
  std::this_thread::sleep_for(1500ms);
  // First a broken policy: kept out, the old one stays.
  write_policy("policy.yml", "default: deny\nrules:\n  - match: { hots: x }\n    action: allow\n");
  kill(acp.pid, SIGHUP);
  std::this_thread::sleep_for(300ms);
  // Then a good one that allows.
  policy_for_origin("allow");
  kill(acp.pid, SIGHUP);
  std::this_thread::sleep_for(300ms);
  std::ofstream(flag).close();
  acp.finish();
  EXPECT_NE(acp.out.find("FIRST=403"), std::string::npos) << acp.out;
  EXPECT_NE(acp.out.find("SECOND=200"), std::string::npos) << acp.out;
  EXPECT_NE(acp.out.find("keeping the previous policy"), std::string::npos) << acp.out;
}

}  // namespace
