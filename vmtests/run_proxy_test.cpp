// The consent proxy end to end under the real `acp run`: real clients inside the confined agent
// (python3 urllib, node, curl, a raw socket tunnel) against origins on loopback, with the real
// policy, consent gate, control socket (`acp pending/approve`) and audit log
// (`acp audit verify`). run_session_test covers the session itself (wall, status, exit codes,
// killed acp, two sessions, a basic SIGHUP); this file covers what the proxy does with traffic.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "support/run_fixture.hpp"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using acp::vmtest::free_port;
using acp::vmtest::Proc;
using acp::vmtest::run;
using acp::vmtest::slurp;

size_t count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

class RunProxy : public acp::vmtest::RunFixture {
 protected:
  // A policy file with default deny and the given rules (YAML list items, already indented).
  std::string policy(const std::string& name, const std::string& rules) {
    return write_policy(name, "default: deny\nrules:\n" + rules);
  }
  static std::string rule(const std::string& host, uint16_t port, const std::string& action,
                          int timeout = 20) {
    return "  - match: { kind: http, host: \"" + host + "\", port: " + std::to_string(port) +
           " }\n    action: " + action + "\n    timeout: " + std::to_string(timeout) + "\n";
  }
  // A file the agent (nobody) can read, e.g. a script.
  std::string write_readable(const std::string& name, const std::string& text) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    chmod(path.c_str(), 0644);
    return path;
  }
  // A directory the agent can write markers into.
  std::string writable_dir() {
    std::string d = dir_ + "/rw";
    fs::create_directories(d);
    chmod(d.c_str(), 01777);
    return d;
  }
  std::vector<nlohmann::json> request_entries() {
    std::vector<nlohmann::json> out;
    for (auto& e : audit_entries())
      if (e.value("kind", "") == "request") out.push_back(e);
    return out;
  }
  // Pending entries of this test's origin (other sessions' are not ours).
  nlohmann::json pending_for_origin() {
    nlohmann::json out = nlohmann::json::array();
    auto all = pending();
    if (!all.is_array()) return out;
    for (auto& p : all)
      if (p.contains("action") && p["action"].value("port", 0) == origin_port_) out.push_back(p);
    return out;
  }
};

// python3 urllib honours HTTPS_PROXY: a CONNECT tunnel to a TLS origin, the certificate checked
// end to end against the test's CA file (the proxy does not touch the TLS).
TEST_F(RunProxy, PythonUrllibTunnelsHttpsThroughTheProxy) {
  uint16_t tls_port = free_port();
  ASSERT_TRUE(start_tls_origin(tls_port)) << "the TLS origin did not start";
  auto pol = policy("tls.yml", rule("127.0.0.1", tls_port, "allow"));
  std::string script =
      "import os, ssl, sys, urllib.request\n"
      "print('PROXY=' + os.environ.get('HTTPS_PROXY', ''))\n"
      "ctx = ssl.create_default_context(cafile=sys.argv[1])\n"
      "r = urllib.request.urlopen(sys.argv[2], context=ctx, timeout=20)\n"
      "print('STATUS=%d' % r.status)\n"
      "print(r.read().decode())\n";
  auto r = run(acp_run(pol, {"/usr/bin/python3", "-c", script, cert_path(),
                             "https://127.0.0.1:" + std::to_string(tls_port) + "/"}));
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("PROXY=http://127.0.0.1:" + std::to_string(proxy_port_)), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("STATUS=200"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("origin says hello"), std::string::npos) << r.out;
  auto req = request_entries();
  ASSERT_EQ(req.size(), 1u) << slurp(audit());
  EXPECT_EQ(req[0]["action"].value("method", ""), "CONNECT") << req[0].dump();
  EXPECT_EQ(req[0]["action"].value("port", 0), tls_port) << req[0].dump();
  EXPECT_EQ(req[0].value("verdict", ""), "allow") << req[0].dump();
}

// node's http.request to the proxy with an absolute-form path (fetch is not proxy aware).
TEST_F(RunProxy, NodeHttpRequestThroughTheProxy) {
  auto pol = policy_for_origin("allow");
  std::string script =
      "const http = require('http');\n"
      "const proxy = new URL(process.env.HTTP_PROXY);\n"
      "const target = process.argv[1];\n"
      "const req = http.request({host: proxy.hostname, port: proxy.port, method: 'GET',\n"
      "  path: target, headers: {Host: new URL(target).host}}, (res) => {\n"
      "  let body = '';\n"
      "  res.on('data', (c) => body += c);\n"
      "  res.on('end', () => { console.log('STATUS=' + res.statusCode); console.log(body); });\n"
      "});\n"
      "req.on('error', (e) => { console.log('ERROR=' + e.message); process.exitCode = 3; });\n"
      "req.end();\n";
  auto r = run(acp_run(pol, {"node", "-e", script, origin_url()}));
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("STATUS=200"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("origin says hello"), std::string::npos) << r.out;
  auto req = request_entries();
  ASSERT_EQ(req.size(), 1u) << slurp(audit());
  EXPECT_EQ(req[0]["action"].value("method", ""), "GET") << req[0].dump();
}

// Nobody answers an ask with `timeout: 2`: 403 saying so, decided_by timeout, and nothing is
// remembered: the second request asks (and times out) again.
TEST_F(RunProxy, AskTimeoutIsA403ThatIsNotRemembered) {
  auto pol = policy("ask.yml", rule("127.0.0.1", origin_port_, "ask", 2));
  std::string curl = "curl -s -w ' HTTP=%{http_code}\\n' --max-time 30 " + origin_url() + "; ";
  auto r = run(acp_run(pol, {"sh", "-c", curl + "echo; " + curl}));
  EXPECT_EQ(count(r.out, "HTTP=403"), 2u) << r.out;
  EXPECT_EQ(r.out.find("origin says hello"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("timed out after 2 s"), std::string::npos) << r.out;
  auto req = request_entries();
  ASSERT_EQ(req.size(), 2u) << slurp(audit());
  for (const auto& e : req) {
    EXPECT_EQ(e.value("decided_by", ""), "timeout") << e.dump();
    EXPECT_EQ(e.value("verdict", ""), "deny") << e.dump();
    EXPECT_EQ(e.value("policy_verdict", ""), "ask") << e.dump();
  }
  // Two asks, two ids: the second was a new prompt, not a remembered answer.
  EXPECT_NE(req[0].value("request_id", ""), req[1].value("request_id", "")) << slurp(audit());
}

// Two identical concurrent requests share one pending entry (waiters 2); one approve (scope
// once) releases both.
TEST_F(RunProxy, IdenticalConcurrentAsksCoalesceIntoOnePrompt) {
  auto pol = policy("ask.yml", rule("127.0.0.1", origin_port_, "ask", 30));
  std::string curl = "curl -s -o /dev/null -w 'HTTP=%{http_code}\\n' --max-time 40 " + origin_url();
  Proc agent = Proc::start(acp_run(pol, {"sh", "-c", curl + " & " + curl + " & wait"}));
  nlohmann::json seen = nlohmann::json::array();
  for (int i = 0; i < 200; ++i) {
    seen = pending_for_origin();
    if (seen.size() == 1 && seen[0].value("waiters", 0) == 2) break;
    if (seen.size() > 1) break;
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_EQ(seen.size(), 1u) << seen.dump();
  EXPECT_EQ(seen[0].value("waiters", 0), 2) << seen.dump();
  auto a = run({ACP_BINARY, "approve", seen[0].at("id").get<std::string>()});
  EXPECT_EQ(a.status, 0) << a.out;
  agent.finish();
  EXPECT_EQ(agent.status, 0) << agent.out;
  EXPECT_EQ(count(agent.out, "HTTP=200"), 2u) << agent.out;
  auto req = request_entries();
  ASSERT_EQ(req.size(), 2u) << slurp(audit());
  for (const auto& e : req) {
    EXPECT_EQ(e.value("decided_by", ""), "human") << e.dump();
    EXPECT_EQ(e.value("request_id", ""), seen[0].value("id", "")) << e.dump();
  }
}

// One curl, two URLs, one kept-alive proxy connection: the first (allowed origin) is served,
// the second (denied origin, another port) is judged on its own and refused.
TEST_F(RunProxy, KeptAliveConnectionJudgesEveryRequest) {
  uint16_t other = free_port();
  ASSERT_TRUE(start_origin(other)) << "the second origin did not start";
  auto pol = policy("mixed.yml",
                    rule("127.0.0.1", origin_port_, "allow") + rule("127.0.0.1", other, "deny"));
  std::string proxy = "http://127.0.0.1:" + std::to_string(proxy_port_);
  std::string other_url = "http://127.0.0.1:" + std::to_string(other) + "/";
  auto r = run(acp_run(
      pol, {"curl", "-s", "-x", proxy, "--max-time", "30", "-o", "/dev/null", "-o", "/dev/null",
            "-w", "HTTP=%{http_code} NEW=%{num_connects}\\n", origin_url(), other_url}));
  EXPECT_NE(r.out.find("HTTP=200 NEW=1"), std::string::npos) << r.out;
  // NEW=0: the second request went over the same proxy connection.
  EXPECT_NE(r.out.find("HTTP=403 NEW=0"), std::string::npos) << r.out;
  auto req = request_entries();
  ASSERT_EQ(req.size(), 2u) << slurp(audit());
  EXPECT_EQ(req[0].value("verdict", ""), "allow") << req[0].dump();
  EXPECT_EQ(req[0]["action"].value("port", 0), origin_port_) << req[0].dump();
  EXPECT_EQ(req[1].value("verdict", ""), "deny") << req[1].dump();
  EXPECT_EQ(req[1]["action"].value("port", 0), other) << req[1].dump();
}

// CONNECT [::1]:P to a TLS origin bound to ::1, allowed by a rule naming host "::1".
TEST_F(RunProxy, Ipv6AuthorityTunnelsToLoopbackV6) {
  if (!acp::vmtest::ipv6_loopback_available())
    GTEST_SKIP() << "::1 cannot be bound on this machine (IPv6 loopback unavailable)";
  uint16_t port = free_port();
  ASSERT_TRUE(start_tls_origin(port, "::1")) << "the TLS origin on [::1] did not start";
  auto pol = policy("v6.yml", rule("::1", port, "allow"));
  auto r = run(acp_run(pol, {"curl", "-s", "--cacert", cert_path(), "-w", " HTTP=%{http_code}",
                             "--max-time", "30", "https://[::1]:" + std::to_string(port) + "/"}));
  EXPECT_NE(r.out.find("origin says hello"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("HTTP=200"), std::string::npos) << r.out;
  auto req = request_entries();
  ASSERT_EQ(req.size(), 1u) << slurp(audit());
  EXPECT_EQ(req[0]["action"].value("host", ""), "::1") << req[0].dump();
  EXPECT_EQ(req[0]["action"].value("method", ""), "CONNECT") << req[0].dump();
}

// `host: "*"` does not name loopback: the proxy will not connect to 127.0.0.1 for it (403 with
// the reason); the literal rule does.
TEST_F(RunProxy, GlobRuleDoesNotReachLoopbackButTheLiteralRuleDoes) {
  std::string curl = "curl -s -w ' HTTP=%{http_code}' --max-time 30 " + origin_url();
  auto glob = write_policy("glob.yml",
                           "default: deny\nrules:\n  - match: { kind: http, host: \"*\" }\n"
                           "    action: allow\n");
  auto r = run(acp_run(glob, {"sh", "-c", curl}));
  EXPECT_NE(r.out.find("HTTP=403"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("loopback"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("origin says hello"), std::string::npos) << r.out;

  auto literal = policy_for_origin("allow");
  auto r2 = run(acp_run(literal, {"sh", "-c", curl}));
  EXPECT_NE(r2.out.find("HTTP=200"), std::string::npos) << r2.out;
  EXPECT_NE(r2.out.find("origin says hello"), std::string::npos) << r2.out;
}

// After a session the audit log verifies; one byte changed in a middle line and `acp audit
// verify` fails (exit 1) naming that line.
TEST_F(RunProxy, AuditVerifyCatchesOneChangedByte) {
  auto pol = policy_for_origin("allow");
  std::string curl = "curl -s -o /dev/null --max-time 20 " + origin_url() + "; ";
  auto r = run(acp_run(pol, {"sh", "-c", curl + curl + curl}));
  EXPECT_EQ(r.status, 0) << r.out;
  auto ok = run({ACP_BINARY, "audit", "verify", audit()});
  EXPECT_EQ(ok.status, 0) << ok.out;
  std::string log = slurp(audit());
  ASSERT_GE(count(log, "\n"), 3u) << log;
  // Line 2: change one digit of its timestamp (still valid JSON; only the chain can tell).
  size_t line2 = log.find('\n') + 1;
  size_t ts = log.find("\"timestamp\":\"", line2);
  ASSERT_LT(ts, log.find('\n', line2)) << log;
  size_t digit = ts + std::string("\"timestamp\":\"").size() + 3;  // the year's last digit
  log[digit] = log[digit] == '9' ? '8' : static_cast<char>(log[digit] + 1);
  std::ofstream(audit(), std::ios::trunc | std::ios::binary) << log;
  auto bad = run({ACP_BINARY, "audit", "verify", audit()});
  EXPECT_EQ(bad.status, 1) << bad.out;
  EXPECT_NE(bad.out.find("line 2 "), std::string::npos) << bad.out;
}

// While the agent loops allowed requests, acp is sent SIGHUP several times with valid
// policies: no request fails, the reloaded rules are the ones deciding, and a CONNECT tunnel
// opened before the reloads still works after them.
// It stalled (a request timed out, then the held tunnel) whenever the agent's loop made more
// than ~1090 requests: the test origin logs one 60-byte line per request to its stdout, which
// was a pipe nobody read until the test ended, and at 64 KiB the origin blocked in write().
// Origins now log to a file (Proc::start's log_file). The listen backlog of 1024 stays.
TEST_F(RunProxy, ReloadsUnderLoadDropNothing) {
  std::string rw = writable_dir();
  std::string started = rw + "/started";
  std::string flag = rw + "/go";
  std::string script = write_readable(
      "agent.py",
      "import os, signal, socket, sys, urllib.request\n"
      "signal.signal(signal.SIGHUP, signal.SIG_IGN)  # acp forwards SIGHUP to the agent\n"
      "proxy_port, port, started, flag = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], "
      "sys.argv[4]\n"
      "s = socket.create_connection(('127.0.0.1', proxy_port), timeout=30)\n"
      "s.sendall(b'CONNECT 127.0.0.1:%d HTTP/1.1\\r\\nHost: 127.0.0.1:%d\\r\\n\\r\\n' % (port, "
      "port))\n"
      "head = b''\n"
      "while b'\\r\\n\\r\\n' not in head:\n"
      "    c = s.recv(4096)\n"
      "    if not c: break\n"
      "    head += c\n"
      "print('TUNNEL ' + head.split(b'\\r\\n')[0].decode(), flush=True)\n"
      "url = 'http://127.0.0.1:%d/' % port\n"
      "opener = urllib.request.build_opener(urllib.request.ProxyHandler({'http': "
      "'http://127.0.0.1:%d' % proxy_port}))\n"
      "ok = fail = 0\n"
      "for i in range(5000):\n"
      "    if os.path.exists(flag): break\n"
      "    try:\n"
      "        r = opener.open(url, timeout=20)\n"
      "        if r.status == 200 and b'origin says hello' in r.read(): ok += 1\n"
      "        else: fail += 1; print('FAIL status', r.status, flush=True)\n"
      "    except Exception as e:\n"
      "        fail += 1; print('FAIL', e, flush=True)\n"
      "    if ok == 3: open(started, 'w').close()\n"
      "s.sendall(b'GET / HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\n\\r\\n')\n"
      "data = b''\n"
      "while True:\n"
      "    c = s.recv(65536)\n"
      "    if not c: break\n"
      "    data += c\n"
      "print('TUNNEL-BODY ' + ('hello' if b'origin says hello' in data else repr(data)))\n"
      "print('OK=%d FAIL=%d' % (ok, fail))\n");
  // Two valid policies that both allow the origin, by a rule at index 0 or at index 1.
  std::string a = rule("127.0.0.1", origin_port_, "allow");
  std::string b = rule("127.0.0.2", origin_port_, "deny") + a;
  std::string pol = policy("policy.yml", a);
  Proc acp = Proc::start(acp_run(pol, {"/usr/bin/python3", script, std::to_string(proxy_port_),
                                       std::to_string(origin_port_), started, flag}));
  for (int i = 0; i < 400 && !fs::exists(started); ++i) std::this_thread::sleep_for(50ms);
  EXPECT_TRUE(fs::exists(started)) << "the agent's requests did not start";
  for (int i = 0; i < 6; ++i) {
    policy("policy.yml", i % 2 == 0 ? b : a);
    kill(acp.pid, SIGHUP);
    std::this_thread::sleep_for(300ms);
  }
  std::ofstream(flag).close();
  acp.finish();
  EXPECT_EQ(acp.status, 0) << acp.out;
  EXPECT_NE(acp.out.find("TUNNEL HTTP/1.1 200"), std::string::npos) << acp.out;
  EXPECT_NE(acp.out.find("TUNNEL-BODY hello"), std::string::npos) << acp.out;
  EXPECT_NE(acp.out.find(" FAIL=0"), std::string::npos) << acp.out;
  EXPECT_EQ(acp.out.find("OK=0 "), std::string::npos) << acp.out;
  EXPECT_EQ(acp.out.find("keeping the previous policy"), std::string::npos) << acp.out;
  EXPECT_EQ(count(acp.out, "policy reloaded"), 6u) << acp.out;
  // Both policies decided some requests: the reloads took effect while the agent ran.
  bool index0 = false, index1 = false;
  for (const auto& e : request_entries()) {
    EXPECT_EQ(e.value("verdict", ""), "allow") << e.dump();
    int idx = e.contains("rule") ? e["rule"].value("index", -2) : -2;
    index0 |= idx == 0;
    index1 |= idx == 1;
  }
  EXPECT_TRUE(index0 && index1) << slurp(audit());
}

}  // namespace
