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
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "support/run_fixture.hpp"

namespace {

using namespace std::chrono_literals;
using acp::vmtest::free_port;
using acp::vmtest::Proc;
using acp::vmtest::run;
using acp::vmtest::slurp;

class RunSession : public acp::vmtest::RunFixture {};

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
  // Other sessions may be live on this machine: ours is the one writing our audit log.
  std::string ours;
  for (const auto& s : j["sessions"])
    if (s.value("audit_log", "") == audit()) ours = s.value("id", "");
  ASSERT_FALSE(ours.empty()) << sj.out;
  agent.finish();
  EXPECT_EQ(agent.status, 0) << agent.out;
  // After the session the wall is gone: no session left in status.
  auto after = run({ACP_BINARY, "status", "--json"});
  auto ja = nlohmann::json::parse(after.out, nullptr, false);
  ASSERT_FALSE(ja.is_discarded()) << after.out;
  for (const auto& s : ja["sessions"]) EXPECT_NE(s.value("id", ""), ours) << after.out;
}

TEST_F(RunSession, ExitStatusIsTheAgentsAnd127ForAMissingCommand) {
  auto policy = policy_for_origin("allow");
  EXPECT_EQ(run(acp_run(policy, {"sh", "-c", "exit 7"})).status, 7);
  EXPECT_EQ(run(acp_run(policy, {"no-such-command-acp-test"})).status, 127);
}

TEST_F(RunSession, RootAgentIsRefusedWithoutAllowRoot) {
  auto r = run({ACP_BINARY, "run", "--user=root", "--config=" + config(), "--", "true"});
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
  // Waits (bounded) until the audit log holds `n` lines containing `needle`.
  auto wait_audit = [&](const std::string& needle, size_t n) {
    for (int i = 0; i < 400; ++i) {
      std::istringstream in(slurp(audit()));
      size_t seen = 0;
      for (std::string line; std::getline(in, line);)
        if (line.find(needle) != std::string::npos) ++seen;
      if (seen >= n) return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  };
  // The first request has been decided (denied) before any reload.
  ASSERT_TRUE(wait_audit("\"kind\":\"request\"", 1)) << slurp(audit());
  // First a broken policy: kept out, the old one stays.
  write_policy("policy.yml", "default: deny\nrules:\n  - match: { hots: x }\n    action: allow\n");
  kill(acp.pid, SIGHUP);
  ASSERT_TRUE(wait_audit("\"policy_reload\"", 1)) << slurp(audit());
  // Then a good one that allows.
  policy_for_origin("allow");
  kill(acp.pid, SIGHUP);
  ASSERT_TRUE(wait_audit("\"policy_reload\"", 2)) << slurp(audit());
  std::ofstream(flag).close();
  acp.finish();
  EXPECT_NE(acp.out.find("FIRST=403"), std::string::npos) << acp.out;
  EXPECT_NE(acp.out.find("SECOND=200"), std::string::npos) << acp.out;
  EXPECT_NE(acp.out.find("keeping the previous policy"), std::string::npos) << acp.out;
}

}  // namespace

namespace {

// The session builder's undo stack, for real: the proxy step fails (its explicit port is taken)
// after the record, cgroup, wall and pins were made; acp run fails with what to do and leaves
// none of them behind (an undo that stopped half-way would leave the record, naming this
// command, with its pins and cgroup).
TEST_F(RunSession, AFailedStepUndoesTheStepsBeforeIt) {
  const int taken = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(taken, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(proxy_port_);
  ASSERT_EQ(::bind(taken, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0) << std::strerror(errno);
  ASSERT_EQ(::listen(taken, 4), 0);
  const std::string marker = "acp-undo-test-" + std::to_string(::getpid());
  auto r = run(acp_run(policy_for_origin("allow"), {"sh", "-c", "echo AGENT-RAN", marker}));
  ::close(taken);
  EXPECT_EQ(r.status, 125) << r.out;
  EXPECT_NE(r.out.find(std::to_string(proxy_port_)), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("AGENT-RAN"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("undoing the session failed"), std::string::npos) << r.out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/run/acp/sessions", ec))
    EXPECT_EQ(slurp(e.path().string()).find(marker), std::string::npos)
        << "left behind: " << e.path() << ": " << slurp(e.path().string());
}

}  // namespace
