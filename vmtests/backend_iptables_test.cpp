// The iptables backend through `acp run --backend=iptables`, end to end: the real binary, real
// chains, real agents as nobody. Two sessions at once keep their own doors and do not take down
// each other's chains; a finished session leaves no chain; a killed acp leaves its chains up
// (fail-closed) until `acp gc --kill`. Also the preload and none wiring (what the agent gets).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "acp/backend/iptables_wall.hpp"
#include "support/run_fixture.hpp"

namespace {

using acp::vmtest::Proc;
using acp::vmtest::run;
using acp::vmtest::slurp;

// ACP- chains in both families right now (iptables -S), e.g. {"ACP-0123456789ab"}.
std::vector<std::string> acp_chains() {
  auto c = acp::backend::list_iptables_chains(acp::backend::kSessionChainPrefix);
  EXPECT_TRUE(c.ok()) << c.error().message();
  return c.ok() ? *c : std::vector<std::string>{};
}

bool has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// The session id that `acp run` printed ("acp: session <id>: agent pid ...").
std::string session_id_in(const std::string& out) {
  auto at = out.find("acp: session ");
  if (at == std::string::npos) return "";
  return out.substr(at + 13, 12);
}

class IptablesBackend : public acp::vmtest::RunFixture {
 protected:
  void SetUp() override {
    RunFixture::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    std::string why;
    if (!acp::backend::iptables_backend_supported(&why)) GTEST_SKIP() << "iptables: " << why;
  }

  // An agent that makes a direct attempt at `direct_url` and a proxied request for the origin,
  // reports both, then (when `gate` is given) says "ready" in a file and waits until the test
  // writes to the gate fifo, and does both again.
  std::vector<std::string> agent(const std::string& direct_url, const std::string& gate = "") {
    const std::string attempt =
        "if curl -s --noproxy '*' --max-time 5 -o /dev/null " + direct_url +
        "; then echo DIRECT-OK; else echo DIRECT-REFUSED; fi; curl -s --max-time 20 " +
        origin_url() + "; ";
    std::string script = attempt;
    if (!gate.empty())
      script += "echo ready > " + gate + ".ready; read x < " + gate + "; echo AGAIN; " + attempt;
    return {"sh", "-c", script};
  }
  // A fifo the agent (nobody) blocks on, in a directory where it may write its ready file.
  std::string make_gate(const std::string& name) {
    const std::string gates = dir_ + "/gates";
    ::mkdir(gates.c_str(), 0777);
    ::chmod(gates.c_str(), 0777);
    std::string p = gates + "/" + name;
    EXPECT_EQ(::mkfifo(p.c_str(), 0666), 0);
    ::chmod(p.c_str(), 0666);
    return p;
  }
  // Waits (bounded, ~20 s) for the agent behind `gate` to be ready.
  bool wait_ready(const std::string& gate) {
    for (int i = 0; i < 2000; i++) {
      if (std::filesystem::exists(gate + ".ready")) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  static void open_gate(const std::string& gate) { std::ofstream(gate) << "go\n"; }
};

TEST_F(IptablesBackend, TheAgentReachesOnlyTheProxyAndStatusSaysIptables) {
  const std::string gate = make_gate("gate");
  Proc s =
      Proc::start(acp_run(policy_for_origin("allow"),
                          agent("http://127.0.0.1:" + std::to_string(origin_port_) + "/", gate),
                          {"--backend=iptables"}));
  ASSERT_TRUE(wait_ready(gate)) << "the agent never got ready";
  auto st = run({ACP_BINARY, "status"});
  EXPECT_NE(st.out.find("Network: 🔒 Isolated (iptables)"), std::string::npos) << st.out;
  EXPECT_NE(st.out.find("--dport " + std::to_string(proxy_port_) + " -j ACCEPT"), std::string::npos)
      << st.out;
  auto json = run({ACP_BINARY, "status", "--json"});
  EXPECT_NE(json.out.find("\"backend\": \"iptables\""), std::string::npos) << json.out;
  open_gate(gate);
  s.finish();
  EXPECT_EQ(s.status, 0) << s.out;
  EXPECT_NE(s.out.find("DIRECT-REFUSED"), std::string::npos) << s.out;
  EXPECT_EQ(s.out.find("DIRECT-OK"), std::string::npos) << s.out;
  EXPECT_NE(s.out.find("origin says hello"), std::string::npos) << s.out;
  const std::string id = session_id_in(s.out);
  ASSERT_EQ(id.size(), 12u) << s.out;
  EXPECT_NE(s.out.find("(iptables)"), std::string::npos) << s.out;
  EXPECT_FALSE(has(acp_chains(), "ACP-" + id)) << "the chains are removed with the session";
  // Control: the same direct attempt outside acp reaches the origin.
  auto control = run({"curl", "-s", "--noproxy", "*", "--max-time", "5", origin_url()});
  EXPECT_NE(control.out.find("origin says hello"), std::string::npos) << control.out;
}

TEST_F(IptablesBackend, TwoSessionsKeepTheirOwnDoorsAndChains) {
  const std::string gate_a = make_gate("a");
  const uint16_t port_a = proxy_port_;
  // A tries B's proxy port directly; B tries A's.
  const uint16_t port_b = acp::vmtest::free_port();
  ASSERT_NE(port_a, port_b);
  Proc a = Proc::start(acp_run(policy_for_origin("allow"),
                               agent("http://127.0.0.1:" + std::to_string(port_b) + "/", gate_a),
                               {"--backend=iptables"}));
  ASSERT_TRUE(wait_ready(gate_a)) << "session A never got ready";
  auto chains_with_a = acp_chains();

  proxy_port_ = port_b;
  auto b = run(acp_run(policy_for_origin("allow"),
                       agent("http://127.0.0.1:" + std::to_string(port_a) + "/"),
                       {"--backend=iptables"}));
  proxy_port_ = port_a;
  EXPECT_EQ(b.status, 0) << b.out;
  EXPECT_NE(b.out.find("DIRECT-REFUSED"), std::string::npos) << "B to A's proxy\n" << b.out;
  EXPECT_NE(b.out.find("origin says hello"), std::string::npos) << "B through its own\n" << b.out;
  const std::string id_b = session_id_in(b.out);
  ASSERT_EQ(id_b.size(), 12u) << b.out;
  EXPECT_FALSE(has(acp_chains(), "ACP-" + id_b)) << "B's chains are gone";

  // A, after B came and went: still walled, still served; its chains untouched.
  EXPECT_EQ(acp_chains(), chains_with_a);
  open_gate(gate_a);
  a.finish();
  EXPECT_EQ(a.status, 0) << a.out;
  const auto again = a.out.find("AGAIN");
  ASSERT_NE(again, std::string::npos) << a.out;
  EXPECT_NE(a.out.find("DIRECT-REFUSED"), std::string::npos) << a.out;
  EXPECT_NE(a.out.find("DIRECT-REFUSED", again), std::string::npos)
      << "A is still walled after B's teardown\n"
      << a.out;
  EXPECT_NE(a.out.find("origin says hello", again), std::string::npos) << a.out;
  EXPECT_EQ(a.out.find("DIRECT-OK"), std::string::npos) << a.out;
  const std::string id_a = session_id_in(a.out);
  ASSERT_EQ(id_a.size(), 12u);
  EXPECT_TRUE(has(chains_with_a, "ACP-" + id_a));
  EXPECT_FALSE(has(acp_chains(), "ACP-" + id_a));
}

TEST_F(IptablesBackend, AKilledAcpLeavesTheChainsUpUntilGc) {
  const std::string gate = make_gate("gate");
  Proc s =
      Proc::start(acp_run(policy_for_origin("allow"),
                          agent("http://127.0.0.1:" + std::to_string(origin_port_) + "/", gate),
                          {"--backend=iptables"}));
  ASSERT_TRUE(wait_ready(gate));
  auto before = acp_chains();
  ASSERT_EQ(::kill(s.pid, SIGKILL), 0);
  s.reap();
  // Fail-closed: the agent is still there, and so are its chains.
  EXPECT_EQ(acp_chains(), before);
  auto st = run({ACP_BINARY, "status"});
  EXPECT_NE(st.out.find("ORPHANED"), std::string::npos) << st.out;
  EXPECT_NE(st.out.find("Isolated (iptables)"), std::string::npos) << st.out;
  auto gc = run({ACP_BINARY, "gc", "--kill"});
  EXPECT_EQ(gc.status, 0) << gc.out;
  EXPECT_NE(gc.out.find("removed session"), std::string::npos) << gc.out;
  for (const auto& c : before) {
    if (acp::backend::session_id_of_chain(c)) {
      EXPECT_FALSE(has(acp_chains(), c)) << c << " left after gc";
    }
  }
}

class WeakBackends : public acp::vmtest::RunFixture {};

TEST_F(WeakBackends, PreloadGivesTheAgentTheLibraryAndTheProxyAllowList) {
  const std::string lib = dir_ + "/libacp_preload.so";
  std::ofstream(lib) << "not a library: the agent's environment is what is checked here";
  ::chmod(lib.c_str(), 0644);
  ::setenv("ACP_PRELOAD_LIB", lib.c_str(), 1);
  auto r = run(acp_run(policy_for_origin("allow"),
                       {"sh", "-c", "echo LD=$LD_PRELOAD; echo ALLOW=$ACP_PRELOAD_ALLOW"},
                       {"--isolation=preload"}));
  ::unsetenv("ACP_PRELOAD_LIB");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("LD=" + lib), std::string::npos) << r.out;
  const std::string p = std::to_string(proxy_port_);
  EXPECT_NE(r.out.find("ALLOW=127.0.0.1:" + p), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Weak isolation (preload)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(preload)"), std::string::npos) << r.out;
}

TEST_F(WeakBackends, PreloadWithoutTheLibraryRefusesToStart) {
  ::setenv("ACP_PRELOAD_LIB", (dir_ + "/missing.so").c_str(), 1);
  auto r = run(
      acp_run(policy_for_origin("allow"), {"sh", "-c", "echo AGENT-RAN"}, {"--backend=preload"}));
  ::unsetenv("ACP_PRELOAD_LIB");
  EXPECT_EQ(r.status, 125) << r.out;
  EXPECT_EQ(r.out.find("AGENT-RAN"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ACP_PRELOAD_LIB=" + dir_ + "/missing.so"), std::string::npos) << r.out;
}

TEST_F(WeakBackends, NoneWarnsLoudlyAndLeavesTheAgentUnconfined) {
  auto r = run(
      acp_run(policy_for_origin("allow"),
              {"sh", "-c", "curl -s --noproxy '*' --max-time 5 " + origin_url() + "; echo; env"},
              {"--backend=none"}));
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("No network isolation. Agent can bypass ACP proxy."), std::string::npos)
      << r.out;
  // That is what none means: the direct request gets through.
  EXPECT_NE(r.out.find("origin says hello"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("HTTP_PROXY=http://127.0.0.1:" + std::to_string(proxy_port_)),
            std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find("LD_PRELOAD=/"), std::string::npos) << r.out;
}

}  // namespace
