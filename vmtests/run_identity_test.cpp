// Issue 13, class A: the proxy knows who is talking to it. Under real `acp run` sessions (BPF
// wall, real cgroups, curl as agent and as host client):
//  - a host process connecting to a session's proxy is refused (403, audited, counted in
//    `acp status`), while the session's own agent is served;
//  - agent A, with literal loopback rules, cannot reach session B's proxy through its own proxy;
//  - nor the web page, on any spelling of its address (and a wildcard ACP listener is not
//    reached through the host's own non-loopback address, made here on a dummy link);
//  - an orphan (acp SIGKILLed, its pinned wall left) is refused by the next session that binds
//    the same proxy port, and the refusal is in that session's audit log.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <deque>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "acp/proxy/own_endpoints.hpp"
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

constexpr const char* kRefusedClient = "refused: client not in this session";
constexpr const char* kOwnEndpoint = "reaches ACP's own";

class RunIdentity : public acp::vmtest::RunFixture {
 protected:
  void SetUp() override {
    RunFixture::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    flags_ = dir_ + "/flags";
    fs::create_directories(flags_);
    chmod(flags_.c_str(), 0777);
  }
  void TearDown() override {
    touch("done");
    for (auto& p : started_) {
      if (p.pid <= 0 || p.status != -1) continue;  // finished or reaped by the test
      // Bounded: the agents wait for "done" at most a minute; past that, end acp.
      int st = 0;
      if (wait_until([&] { return waitpid(p.pid, &st, WNOHANG) == p.pid; }, 60s)) {
        close(p.out_fd);
        p.status = 0;
      } else {
        kill(p.pid, SIGKILL);
        p.reap();
      }
    }
    if (!dummy_.empty()) run({"ip", "link", "del", dummy_});
    RunFixture::TearDown();
  }

  void touch(const std::string& name) {
    std::ofstream(flags_ + "/" + name) << "1\n";
    chmod((flags_ + "/" + name).c_str(), 0666);
  }
  std::string flag(const std::string& name) const { return flags_ + "/" + name; }
  // A shell agent: `body`, then it waits (bounded) for the test's "done" flag.
  std::string agent_script(const std::string& name, const std::string& body) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << "#!/bin/sh\n"
                        << body << "\n"
                        << "i=0; while [ ! -e " << flag("done")
                        << " ] && [ $i -lt 300 ]; do sleep 0.2; i=$((i+1)); done\n";
    chmod(path.c_str(), 0755);
    return path;
  }
  // acp_run with this session's own proxy port and audit log.
  std::vector<std::string> session(const std::string& policy, const std::string& script,
                                   uint16_t port, const std::string& audit_log,
                                   std::vector<std::string> extra = {}) {
    auto argv = acp_run(policy, {"/bin/sh", script}, std::move(extra));
    for (auto& a : argv) {
      if (a.rfind("--proxy-port=", 0) == 0) a = "--proxy-port=" + std::to_string(port);
      if (a.rfind("--audit-log=", 0) == 0) a = "--audit-log=" + audit_log;
    }
    return argv;
  }
  Proc& start(const std::vector<std::string>& argv) {
    started_.push_back(Proc::start(argv));
    return started_.back();
  }
  // The session of `acp_pid` in `acp status --json`; null when absent.
  nlohmann::json session_of(pid_t acp_pid) {
    auto j = nlohmann::json::parse(run({ACP_BINARY, "status", "--json"}).out, nullptr, false);
    if (j.is_discarded()) return nullptr;
    for (const auto& s : j["sessions"])
      if (s.value("acp_pid", 0) == acp_pid) return s;
    return nullptr;
  }
  // A proxy counter of a session as acp status shows it (kMissing when it does not).
  static constexpr uint64_t kMissing = 999999;
  static uint64_t counter(const nlohmann::json& session, const char* name) {
    auto it = session.find("proxy_counters");
    if (it == session.end() || !it->is_object()) return kMissing;
    return it->value(name, kMissing);
  }
  std::vector<nlohmann::json> entries(const std::string& path) {
    std::vector<nlohmann::json> out;
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_discarded()) out.push_back(j);
    }
    return out;
  }
  size_t refused_client_entries(const std::string& path) {
    size_t n = 0;
    for (const auto& e : entries(path))
      if (e.value("kind", "") == "client" &&
          e.value("reason", "").find(kRefusedClient) != std::string::npos)
        ++n;
    return n;
  }
  std::string literal_loopback_policy() {
    return write_policy("loopback.yml",
                        "default: deny\nrules:\n"
                        "  - match: { kind: http, host: \"127.0.0.1\" }\n    action: allow\n"
                        "  - match: { kind: http, host: \"localhost\" }\n    action: allow\n"
                        "  - match: { kind: http, host: \"0.0.0.0\" }\n    action: allow\n"
                        "  - match: { kind: http, host: \"::1\" }\n    action: allow\n"
                        "  - match: { kind: http, host: \"::ffff:127.0.0.1\" }\n"
                        "    action: allow\n"
                        "  - match: { kind: http, host: \"198.18.77.1\" }\n    action: allow\n");
  }
  // curl from the agent: "<label>=<code> <body>" on one line of the report.
  static std::string agent_curl(const std::string& label, const std::string& args,
                                const std::string& report) {
    return "b=$(curl -s --max-time 10 -w ' CODE=%{http_code} CONNECT=%{http_connect}' " + args +
           " 2>&1 | tr '\\n' ' ');" + " echo \"" + label + "=$b\" >> " + report + "\n";
  }
  static std::string line_of(const std::string& report, const std::string& label) {
    auto at = report.find(label + "=");
    if (at == std::string::npos) return {};
    return report.substr(at, report.find('\n', at) - at);
  }

  std::string flags_;
  std::deque<Proc> started_;  // a deque: start() hands out references that must stay valid
  std::string dummy_;
};

TEST_F(RunIdentity, AHostProcessIsRefusedAndTheSessionsOwnAgentIsServed) {
  const std::string report = flag("report");
  auto script = agent_script("agent.sh",
                             agent_curl("AGENT", origin_url(), report) + "touch " + flag("ready"));
  Proc& acp = start(session(policy_for_origin("allow"), script, proxy_port_, audit()));
  ASSERT_TRUE(wait_until([&] { return fs::exists(flag("ready")); }, 60s)) << slurp(report);
  // Control: the agent, in the session's cgroup, is served.
  EXPECT_NE(line_of(slurp(report), "AGENT").find("origin says hello"), std::string::npos)
      << slurp(report);

  // The host (this test's cgroup) through the same proxy, on both of its addresses and both
  // ways: refused before anything is judged.
  const std::string px = "http://127.0.0.1:" + std::to_string(proxy_port_);
  auto get =
      run({"curl", "-s", "--max-time", "10", "-x", px, "-w", " CODE=%{http_code}", origin_url()});
  EXPECT_NE(get.out.find("CODE=403"), std::string::npos) << get.out;
  EXPECT_NE(get.out.find(kRefusedClient), std::string::npos) << get.out;
  auto connect = run({"curl", "-s", "--max-time", "10", "-p", "-x", px, origin_url()});
  EXPECT_EQ(connect.out.find("origin says hello"), std::string::npos) << connect.out;
  size_t host_tries = 2;
  if (acp::vmtest::ipv6_loopback_available()) {
    auto v6 =
        run({"curl", "-s", "--max-time", "10", "-x", "http://[::1]:" + std::to_string(proxy_port_),
             "-w", " CODE=%{http_code}", origin_url()});
    EXPECT_NE(v6.out.find("CODE=403"), std::string::npos) << v6.out;
    ++host_tries;
  }
  // Counted in acp status, from any shell.
  auto s = session_of(acp.pid);
  ASSERT_FALSE(s.is_null());
  EXPECT_EQ(counter(s, "foreign_clients"), host_tries) << s.dump();
  auto text = run({ACP_BINARY, "status"}).out;
  EXPECT_NE(
      text.find(std::to_string(host_tries) + " connections refused (client not in this session)"),
      std::string::npos)
      << text;

  touch("done");
  EXPECT_EQ(acp.finish(), 0) << acp.out;
  // Audited; the origin saw the agent's request only.
  EXPECT_EQ(refused_client_entries(audit()), host_tries);
  size_t judged = 0;
  for (const auto& e : audit_entries())
    if (e.contains("action")) ++judged;
  EXPECT_EQ(judged, 1u);
}

TEST_F(RunIdentity, AgentCannotReachAnotherSessionsProxyThroughItsOwn) {
  // Session B: its agent only waits.
  const uint16_t port_b = free_port();
  const std::string audit_b = dir_ + "/audit-b.jsonl";
  Proc& b = start(session(policy_for_origin("allow"), agent_script("b.sh", "touch " + flag("b-up")),
                          port_b, audit_b));
  ASSERT_TRUE(wait_until([&] { return fs::exists(flag("b-up")); }, 60s)) << b.out;

  // Session A: literal rules for every loopback spelling; through its own proxy to B's port.
  const std::string report = flag("report-a");
  const std::string pb = std::to_string(port_b);
  std::string body =
      agent_curl("CONTROL", origin_url(), report) +
      agent_curl("GET", "http://127.0.0.1:" + pb + "/", report) +
      agent_curl("CONNECT", "-p http://127.0.0.1:" + pb + "/", report) +
      agent_curl("LOCALHOST", "http://localhost:" + pb + "/", report) +
      agent_curl("ANY", "http://0.0.0.0:" + pb + "/", report) +
      agent_curl("MAPPED", "http://[::ffff:127.0.0.1]:" + pb + "/", report) +
      // As a proxy, too: B's proxy asked to fetch the origin for A.
      agent_curl("AS-PROXY", "-x http://127.0.0.1:" + pb + " " + origin_url(), report);
  if (acp::vmtest::ipv6_loopback_available())
    body += agent_curl("V6", "http://[::1]:" + pb + "/", report);
  body += "touch " + flag("a-done");
  Proc& a = start(session(literal_loopback_policy(), agent_script("a.sh", body), proxy_port_,
                          dir_ + "/audit-a.jsonl"));
  ASSERT_TRUE(wait_until([&] { return fs::exists(flag("a-done")); }, 90s)) << slurp(report);
  const std::string r = slurp(report);
  EXPECT_NE(line_of(r, "CONTROL").find("origin says hello"), std::string::npos) << r;
  for (const char* label : {"GET", "CONNECT", "ANY", "MAPPED", "V6"}) {
    auto line = line_of(r, label);
    if (line.empty() && std::string(label) == "V6") continue;
    SCOPED_TRACE(line);
    // A literal rule allowed it; ACP's own endpoint check refused it (or the canonicaliser
    // refused the spelling first): never B's answer.
    EXPECT_EQ(line.find("CODE=200"), std::string::npos);
    if (std::string(label) == "GET") {
      EXPECT_NE(line.find(kOwnEndpoint), std::string::npos);
    }
  }
  EXPECT_EQ(line_of(r, "LOCALHOST").find("CODE=200"), std::string::npos) << r;
  // The agent's wall does not let it reach B's proxy directly either.
  EXPECT_EQ(line_of(r, "AS-PROXY").find("origin says hello"), std::string::npos) << r;

  // B never saw any of it: no connection, nothing judged, nothing audited.
  auto sb = session_of(b.pid);
  ASSERT_FALSE(sb.is_null());
  EXPECT_EQ(counter(sb, "connections"), 0u) << sb.dump();
  touch("done");
  EXPECT_EQ(a.finish(), 0) << a.out;
  EXPECT_EQ(b.finish(), 0) << b.out;
  for (const auto& e : entries(audit_b)) EXPECT_FALSE(e.contains("action")) << e.dump();
}

TEST_F(RunIdentity, TheWebPageIsNeverReachedThroughTheProxyWhateverThePolicy) {
  const uint16_t web_port = free_port();
  const std::string cfg = dir_ + "/web-config.yml";
  std::ofstream(cfg) << "channels:\n  web:\n    enabled: true\n    listen: \"127.0.0.1:" << web_port
                     << "\"\n    token_file: \"" << dir_ << "/secrets/web.token\"\n";
  chmod(cfg.c_str(), 0644);
  // The host's own non-loopback address, made for this test on a dummy link.
  dummy_ = "acpid" + std::to_string(getpid() % 100000);
  bool have_dummy = run({"ip", "link", "add", dummy_, "type", "dummy"}).status == 0 &&
                    run({"ip", "addr", "add", "198.18.77.1/32", "dev", dummy_}).status == 0 &&
                    run({"ip", "link", "set", dummy_, "up"}).status == 0;
  if (!have_dummy) dummy_.clear();

  const std::string report = flag("report");
  const std::string wp = std::to_string(web_port);
  std::string body = agent_curl("CONTROL", origin_url(), report);
  for (const std::string host : {"127.0.0.1", "localhost", "0.0.0.0", "[::ffff:127.0.0.1]", "127.1",
                                 "2130706433", "0x7f000001", "017700000001", "198.18.77.1"}) {
    body += agent_curl("H-" + host, "http://" + host + ":" + wp + "/", report);
    body += agent_curl("C-" + host, "-p http://" + host + ":" + wp + "/", report);
  }
  body += "touch " + flag("agent-done");
  Proc& acp = start(session(literal_loopback_policy(), agent_script("agent.sh", body), proxy_port_,
                            audit(), {"--config=" + cfg}));
  ASSERT_TRUE(wait_until([&] { return fs::exists(flag("agent-done")); }, 120s)) << slurp(report);
  ASSERT_TRUE(port_answers(web_port)) << "the web page did not start";
  const std::string r = slurp(report);
  EXPECT_NE(line_of(r, "CONTROL").find("origin says hello"), std::string::npos) << r;
  EXPECT_EQ(count_lines(r, "CODE=200"), 1u) << r;  // the control only
  // The page answers a request without its token with 403 "forbidden": it never answered.
  EXPECT_EQ(count_lines(r, "forbidden"), 0u) << r;
  // The plain spelling reaches the check (others may be refused earlier, by the canonicaliser).
  for (const char* label : {"H-127.0.0.1", "C-127.0.0.1"}) {
    auto line = line_of(r, label);
    EXPECT_NE(line.find(label[0] == 'H' ? "CODE=403" : "CONNECT=403"), std::string::npos) << line;
    if (label[0] == 'H') {
      EXPECT_NE(line.find(std::string(kOwnEndpoint) + " web page"), std::string::npos) << line;
    }
  }

  // A wildcard ACP listener is the same socket on the host's own address (the page itself
  // only binds loopback).
  if (have_dummy) {
    boost::asio::io_context io;
    boost::asio::ip::tcp::acceptor wild(io);
    wild.open(boost::asio::ip::tcp::v4());
    wild.bind({boost::asio::ip::address_v4::any(), 0});
    auto reg = acp::proxy::register_own_endpoint(wild.native_handle(), "wildcard test listener");
    ASSERT_TRUE(reg) << reg.error().message();
    wild.listen();
    auto why = acp::proxy::own_endpoint_refusal(
        {boost::asio::ip::make_address("198.18.77.1"), wild.local_endpoint().port()});
    ASSERT_TRUE(why);
    EXPECT_NE(why->find("wildcard test listener"), std::string::npos) << *why;
  }
  touch("done");
  EXPECT_EQ(acp.finish(), 0) << acp.out;
}

TEST_F(RunIdentity, AnOrphanIsRefusedByTheNextSessionOnItsPort) {
  // The orphan-to-be asks through its proxy every 0.2 s (bounded), logging each status.
  const std::string report = flag("orphan");
  auto orphan_script = agent_script(
      "orphan.sh", "i=0; while [ $i -lt 600 ] && [ ! -e " + flag("done") +
                       " ]; do c=$(curl -s --max-time 2 -o /dev/null -w '%{http_code}' " +
                       origin_url() + "); echo \"$c\" >> " + report +
                       "; sleep 0.2; i=$((i+1)); done");
  Proc& orphan = start(session(policy_for_origin("allow"), orphan_script, proxy_port_,
                               dir_ + "/audit-orphan.jsonl"));
  ASSERT_TRUE(wait_until([&] { return count_lines(slurp(report), "200") >= 1; }, 60s))
      << slurp(report) << orphan.out;
  auto s = session_of(orphan.pid);
  ASSERT_FALSE(s.is_null());
  const std::string orphan_id = s.value("id", "");
  kill(orphan.pid, SIGKILL);
  orphan.reap();
  // The proxy is gone; the pinned wall still lets the orphan reach its port.
  ASSERT_TRUE(wait_until([&] { return count_lines(slurp(report), "000") >= 2; }, 30s))
      << slurp(report);
  const size_t before = slurp(report).size();

  // The next session binds the same port (its agent only waits).
  const std::string audit_next = dir_ + "/audit-next.jsonl";
  Proc& next =
      start(session(policy_for_origin("allow"), agent_script("next.sh", "touch " + flag("next-up")),
                    proxy_port_, audit_next));
  ASSERT_TRUE(wait_until([&] { return fs::exists(flag("next-up")); }, 60s)) << next.out;
  ASSERT_TRUE(
      wait_until([&] { return count_lines(slurp(report).substr(before), "403") >= 2; }, 30s))
      << slurp(report);
  EXPECT_EQ(count_lines(slurp(report).substr(before), "200"), 0u) << slurp(report);
  // Refused and audited by the new session, counted in its status; never judged by it.
  EXPECT_GE(refused_client_entries(audit_next), 2u);
  auto sn = session_of(next.pid);
  ASSERT_FALSE(sn.is_null());
  EXPECT_GE(counter(sn, "foreign_clients"), 2u) << sn.dump();
  EXPECT_LT(counter(sn, "foreign_clients"), kMissing) << sn.dump();
  EXPECT_EQ(counter(sn, "requests"), 0u) << sn.dump();

  touch("done");
  EXPECT_EQ(next.finish(), 0) << next.out;
  for (const auto& e : entries(audit_next)) EXPECT_FALSE(e.contains("action")) << e.dump();
  auto gc = run({ACP_BINARY, "gc", "--kill"});
  EXPECT_EQ(gc.status, 0) << gc.out;
  EXPECT_EQ(run({ACP_BINARY, "status"}).out.find(orphan_id), std::string::npos);
}

}  // namespace
