// The web page consent channel under a real `acp run`: the confined agent cannot reach the page
// (nor the control socket), and a real browser (Debian's Chromium, headless, driven by
// playwright-core: tests/browser/web_consent.mjs) approves, denies and grants 10 minutes while
// the agent's requests wait. Screenshots: <build>/test-artifacts/web/*.png.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "support/run_fixture.hpp"

#ifndef ACP_ARTIFACT_DIR
#error "ACP_ARTIFACT_DIR must be defined by the build"
#endif

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using acp::vmtest::free_port;
using acp::vmtest::port_answers;
using acp::vmtest::Proc;
using acp::vmtest::run;
using acp::vmtest::slurp;

class RunWeb : public acp::vmtest::RunFixture {
 protected:
  // A config with the web page on 127.0.0.1:web_port_, its token in the test's dir.
  std::string web_config() {
    web_port_ = free_port();
    std::string path = dir_ + "/web-config.yml";
    std::ofstream(path) << "channels:\n  web:\n    enabled: true\n    listen: \"127.0.0.1:"
                        << web_port_ << "\"\n    token_file: \"" << token_file() << "\"\n";
    chmod(path.c_str(), 0644);
    return path;
  }
  std::string token_file() const { return dir_ + "/secrets/web.token"; }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(web_port_); }
  // The token once acp made it (bounded wait), "" otherwise.
  std::string wait_token() {
    for (int i = 0; i < 200; ++i) {
      std::string t = slurp(token_file());
      while (!t.empty() && t.back() == '\n') t.pop_back();
      if (t.size() == 64 && port_answers(web_port_)) return t;
      std::this_thread::sleep_for(50ms);
    }
    return "";
  }
  std::string done_file() const { return dir_ + "/agent-may-exit"; }
  // The agent's last command: wait (bounded) until the test says it is done with the page.
  std::string wait_for_done() const {
    return "i=0; while [ ! -e " + done_file() +
           " ] && [ $i -lt 1500 ]; do sleep 0.2; i=$((i+1)); done";
  }
  uint16_t web_port_ = 0;
};

TEST_F(RunWeb, AgentCannotReachTheWebPageNorTheControlSocket) {
  auto cfg = web_config();
  const std::string page = base_url() + "/";
  const std::string script =
      // Direct: the wall refuses the connect().
      "if curl -s --noproxy '*' --max-time 5 -o /dev/null " + page +
      "; then echo WEB-DIRECT-OK; else echo WEB-DIRECT-REFUSED; fi; "
      "if curl -s --noproxy '*' --max-time 5 -o /dev/null http://localhost:" +
      std::to_string(web_port_) +
      "/; then echo WEB-LOCALHOST-OK; else echo WEB-LOCALHOST-REFUSED; fi; "
      // Through the proxy: the policy (default deny) refuses loopback it does not name.
      "curl -s --max-time 10 -w ' WEB-VIA-PROXY=%{http_code}' " +
      page +
      "; echo; "
      // The token file and the control socket: root only.
      "if cat " +
      token_file() +
      " >/dev/null 2>&1; then echo TOKEN-READ; else echo TOKEN-UNREADABLE; fi; "
      "for s in /run/acp/control*.sock; do "
      "python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
      "print(\"CONTROL-OPEN\")' \"$s\" 2>/dev/null || echo CONTROL-REFUSED; done; " +
      wait_for_done();
  Proc acp =
      Proc::start(acp_run(policy_for_origin("allow"), {"sh", "-c", script}, {"--config=" + cfg}));
  const std::string token = wait_token();
  ASSERT_FALSE(token.empty()) << "the web page did not start";
  // The control: from outside the wall, with the token, the page answers.
  auto outside = run({"curl", "-s", "--noproxy", "*", "-H", "Authorization: Bearer " + token, "-w",
                      " HTTP=%{http_code}", base_url() + "/api/pending"});
  EXPECT_NE(outside.out.find("HTTP=200"), std::string::npos) << outside.out;
  // acp status names the page, never its token (the session record is world-readable).
  auto st = run({ACP_BINARY, "status"});
  EXPECT_NE(st.out.find("consent:    web: " + base_url() + "/?token=…"), std::string::npos)
      << st.out;
  EXPECT_EQ(st.out.find(token), std::string::npos) << st.out;
  std::ofstream(done_file()) << "";
  acp.finish();
  EXPECT_EQ(acp.status, 0) << acp.out;
  // acp's stderr is a pipe here (the agent's too): the page without its token.
  EXPECT_NE(acp.out.find("consent channel web: " + base_url() + "/?token=… (the token is in " +
                         token_file()),
            std::string::npos)
      << acp.out;
  EXPECT_EQ(acp.out.find(token), std::string::npos) << acp.out;
  EXPECT_NE(acp.out.find("WEB-DIRECT-REFUSED"), std::string::npos) << acp.out;
  EXPECT_NE(acp.out.find("WEB-LOCALHOST-REFUSED"), std::string::npos) << acp.out;
  EXPECT_EQ(acp.out.find("-OK"), std::string::npos) << acp.out;
  EXPECT_NE(acp.out.find("WEB-VIA-PROXY=403"), std::string::npos) << acp.out;
  EXPECT_EQ(acp.out.find("ACP consent"), std::string::npos) << acp.out;
  EXPECT_NE(acp.out.find("TOKEN-UNREADABLE"), std::string::npos) << acp.out;
  EXPECT_NE(acp.out.find("CONTROL-REFUSED"), std::string::npos) << acp.out;
  EXPECT_EQ(acp.out.find("CONTROL-OPEN"), std::string::npos) << acp.out;
  // The kernel saw (and logged) the agent's direct attempts at the page's port.
  int kernel_denied = 0;
  for (const auto& e : audit_entries())
    if (e.value("kind", "") == "connect" && e.value("port", 0) == web_port_) ++kernel_denied;
  EXPECT_GE(kernel_denied, 1) << slurp(audit());
}

// acp's stderr is the agent's stderr: redirected to a file (a log in the workspace), the agent
// reads it back through /proc/self/fd/2. Neither the file nor what the agent reads holds the
// page's token; the file says where the token is, and the token file exists.
TEST_F(RunWeb, TokenIsOnNoStreamTheAgentInherits) {
  auto cfg = web_config();
  const std::string log = dir_ + "/acp-stderr.log";
  std::vector<std::string> argv = {"sh", "-c", "exec \"$0\" \"$@\" 2>" + log};
  for (auto& a : acp_run(policy_for_origin("allow"),
                         {"sh", "-c", "echo AGENT-READS; cat /proc/self/fd/2; echo AGENT-DONE"},
                         {"--config=" + cfg}))
    argv.push_back(a);
  auto acp = run(argv);
  EXPECT_EQ(acp.status, 0) << acp.out << slurp(log);
  std::string token = slurp(token_file());
  while (!token.empty() && token.back() == '\n') token.pop_back();
  ASSERT_EQ(token.size(), 64u) << "the token file was not written: " << token_file();
  const std::string logged = slurp(log);
  EXPECT_NE(logged.find("consent channel web: " + base_url() + "/?token=… (the token is in " +
                        token_file()),
            std::string::npos)
      << logged;
  EXPECT_NE(logged.find("shown only when acp's stderr is a terminal"), std::string::npos) << logged;
  EXPECT_EQ(logged.find(token), std::string::npos) << logged;
  // The agent did read acp's lines back (the attack works on the stream), but no token.
  EXPECT_NE(acp.out.find("AGENT-READS\n"), std::string::npos) << acp.out;
  EXPECT_NE(acp.out.find("consent channel web: " + base_url()), std::string::npos) << acp.out;
  EXPECT_EQ(acp.out.find(token), std::string::npos) << acp.out;
}

// On a terminal (a pty, as an operator's shell has) the page's address comes with its token:
// the agent cannot read what is written to a terminal.
TEST_F(RunWeb, TerminalGetsThePageAddressWithItsToken) {
  auto cfg = web_config();
  std::vector<std::string> argv = {
      "sh", "-c",
      "exec python3 -c 'import os, pty, sys; "
      "sys.exit(os.waitstatus_to_exitcode(pty.spawn(sys.argv[1:])))' \"$@\" </dev/null",
      "pty"};
  for (auto& a : acp_run(policy_for_origin("allow"), {"true"}, {"--config=" + cfg}))
    argv.push_back(a);
  auto acp = run(argv);
  EXPECT_EQ(acp.status, 0) << acp.out;
  std::string token = slurp(token_file());
  while (!token.empty() && token.back() == '\n') token.pop_back();
  ASSERT_EQ(token.size(), 64u) << acp.out;
  EXPECT_NE(acp.out.find("shown on this terminal only): " + base_url() + "/?token=" + token),
            std::string::npos)
      << acp.out;
}

// A root agent (--allow-root) keeps root's file access, not ACP's secrets: the page's token file
// (wherever the config puts it), /etc/acp, the CA's key are hidden in its mount namespace, also
// through /proc/1/root and /proc/<acp>/root; it cannot unmount what hides them, open inodes by
// handle, or read a disk raw. The TLS trust bundle it needs stays readable.
TEST_F(RunWeb, RootAgentCannotReadAcpSecrets) {
  auto cfg = web_config();
  // /etc/acp, made for the test when the machine has none (removed at the end).
  const bool made_etc = !fs::exists("/etc/acp");
  if (made_etc) {
    ASSERT_TRUE(fs::create_directory("/etc/acp"));
  }
  const std::string etc_secret = "/etc/acp/acp-test-" + std::to_string(getpid()) + ".secret";
  std::ofstream(etc_secret) << "etc-acp-secret-" << getpid() << "\n";
  // The CA inside /etc/acp too: hidden with it, but for its trust bundle, which the agent needs.
  const std::string ca_dir = "/etc/acp/acp-test-" + std::to_string(getpid()) + "-ca";
  struct Cleanup {
    std::string file, ca;
    bool dir;
    ~Cleanup() {
      std::error_code ec;
      fs::remove(file, ec);
      fs::remove_all(ca, ec);
      if (dir) fs::remove("/etc/acp", ec);
    }
  } cleanup{etc_secret, ca_dir, made_etc};
  // The disks root can read raw here (outside the agent): a sandboxed machine may allow none.
  std::vector<std::string> disks;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/dev", ec))
    if (e.is_block_file(ec) &&
        run({"sh", "-c", "head -c 4096 " + e.path().string() + " | wc -c"}).out == "4096\n")
      disks.push_back(e.path().string());
  if (disks.empty())
    std::cerr << "note: no block device is readable here even outside the agent: the raw-disk "
                 "part of this test has nothing to read\n";
  std::string files = token_file() + " " + etc_secret + " " + ca_dir + "/private/ca.key";
  std::string through_proc;
  for (const auto& f : {token_file(), etc_secret})
    through_proc += " /proc/1/root" + f + " /proc/$PPID/root" + f;
  const std::string handle_probe =
      "import ctypes, os\n"
      "libc = ctypes.CDLL(None, use_errno=True)\n"
      "class H(ctypes.Structure):\n"
      "    _fields_ = [('n', ctypes.c_uint), ('t', ctypes.c_int), ('h', ctypes.c_ubyte * 128)]\n"
      "h = H(); h.n = 128; m = ctypes.c_int()\n"
      "libc.name_to_handle_at(-100, b'/etc/passwd', ctypes.byref(h), ctypes.byref(m), 0)\n"
      "fd = libc.open_by_handle_at(os.open('/', os.O_RDONLY), ctypes.byref(h), os.O_RDONLY)\n"
      "print('HANDLE-OPEN' if fd >= 0 else 'HANDLE-REFUSED')\n";
  std::ofstream(dir_ + "/handle.py") << handle_probe;
  std::string script =
      "for f in " + files + through_proc + "; do cat \"$f\" 2>/dev/null; done; for d in ";
  for (const auto& d : disks) script += d + " ";
  script +=
      "; do printf 'DISK %s ' $d; head -c 4096 $d 2>/dev/null | wc -c; done; "
      "ls -A /etc/acp | sed 's/^/ETC-ENTRY /'; "
      "umount /etc/acp 2>/dev/null && echo UMOUNTED || echo UMOUNT-REFUSED; "
      "umount -l /etc/acp 2>/dev/null && echo UMOUNTED || echo UMOUNT-REFUSED; "
      "python3 " +
      dir_ +
      "/handle.py; "
      "grep -E '^Cap(Inh|Eff|Bnd|Amb)' /proc/self/status; "
      "grep -c 'BEGIN CERTIFICATE' \"$SSL_CERT_FILE\" | sed 's/^/BUNDLE-CERTS /'";
  auto argv = acp_run(
      policy_for_origin("allow"), {"sh", "-c", script},
      {"--config=" + cfg, "--allow-root", "--inspect-tls", "--inspect-tls-ca-dir=" + ca_dir});
  argv[2] = "--user=root";
  auto acp = run(argv);
  EXPECT_EQ(acp.status, 0) << acp.out;
  std::string token = slurp(token_file());
  while (!token.empty() && token.back() == '\n') token.pop_back();
  ASSERT_EQ(token.size(), 64u) << acp.out;
  const std::string key = slurp(ca_dir + "/private/ca.key");
  ASSERT_NE(key.find("PRIVATE KEY"), std::string::npos) << "no CA key was made: " << acp.out;
  EXPECT_EQ(acp.out.find(token), std::string::npos) << acp.out;
  EXPECT_EQ(acp.out.find("etc-acp-secret-"), std::string::npos) << acp.out;
  EXPECT_EQ(acp.out.find("PRIVATE KEY"), std::string::npos) << acp.out;
  EXPECT_EQ(acp.out.find("ETC-ENTRY " + fs::path(etc_secret).filename().string()),
            std::string::npos)
      << acp.out;
  EXPECT_EQ(acp.out.find("UMOUNTED"), std::string::npos) << acp.out;
  EXPECT_NE(acp.out.find("HANDLE-REFUSED"), std::string::npos) << acp.out;
  for (const auto& d : disks)
    EXPECT_NE(acp.out.find("DISK " + d + " 0\n"), std::string::npos) << acp.out;
  // The trust bundle (system CAs and ACP's) is there for the agent's TLS clients.
  auto certs = acp.out.find("BUNDLE-CERTS ");
  ASSERT_NE(certs, std::string::npos) << acp.out;
  EXPECT_GT(std::stoi(acp.out.substr(certs + 13)), 0) << acp.out;
  for (const char* set : {"CapInh:\t", "CapAmb:\t", "CapEff:\t", "CapBnd:\t"}) {
    auto at = acp.out.find(set);
    ASSERT_NE(at, std::string::npos) << acp.out;
    const uint64_t caps = std::stoull(acp.out.substr(at + 8), nullptr, 16);
    for (int cap : {21 /*SYS_ADMIN*/, 2 /*DAC_READ_SEARCH*/, 27 /*MKNOD*/, 19 /*SYS_PTRACE*/})
      EXPECT_EQ(caps & (uint64_t{1} << cap), 0u) << set << "capability " << cap << ": " << acp.out;
  }
  // Controls: outside, root reads the same secrets, opens by handle and reads a disk.
  EXPECT_NE(slurp(etc_secret).find("etc-acp-secret-"), std::string::npos);
  EXPECT_NE(run({"python3", dir_ + "/handle.py"}).out.find("HANDLE-OPEN"), std::string::npos);
}

TEST_F(RunWeb, BrowserApprovesDeniesAndGrantsTenMinutes) {
  const std::string driver = std::string(ACP_SOURCE_DIR) + "/tests/browser/web_consent.mjs";
  if (!fs::exists("/usr/bin/chromium"))
    GTEST_SKIP() << "no /usr/bin/chromium: run scripts/install-deps.sh";
  if (!fs::exists(std::string(ACP_SOURCE_DIR) +
                  "/tests/browser/node_modules/playwright-core/package.json"))
    GTEST_SKIP() << "playwright-core is not installed: run scripts/install-browser-deps.sh";
  for (const char* n : {"one", "two", "three", "four"})
    std::ofstream(dir_ + "/www/" + n) << "origin page " << n << "\n";
  auto policy = write_policy(
      "ask.yml", "default: deny\nrules:\n  - match: { kind: http, host: \"127.0.0.1\", port: " +
                     std::to_string(origin_port_) + " }\n    action: ask\n    timeout: 120\n");
  auto cfg = web_config();
  std::string script;
  for (const char* n : {"one", "two", "three", "four"})
    script += std::string("curl -s -o /dev/null -w '") + n + "=%{http_code}\\n' --max-time 150 " +
              origin_url() + n + "; ";
  script += wait_for_done();
  Proc acp = Proc::start(acp_run(policy, {"sh", "-c", script}, {"--config=" + cfg}));
  const std::string token = wait_token();
  ASSERT_FALSE(token.empty()) << "the web page did not start";

  const std::string artifacts = ACP_ARTIFACT_DIR;
  fs::create_directories(artifacts);
  for (const auto& e : fs::directory_iterator(artifacts))
    if (e.path().extension() == ".png") fs::remove(e.path());
  auto browser = run({"timeout", "-k", "10", "300", "node", driver, base_url(), token, artifacts,
                      dir_ + "/chromium-profile"});
  std::ofstream(done_file()) << "";
  acp.finish();
  EXPECT_EQ(browser.status, 0) << browser.out;
  EXPECT_NE(browser.out.find("STEP done"), std::string::npos) << browser.out;
  EXPECT_EQ(acp.status, 0) << acp.out;
  // The agent's four requests: approved, denied (403 from the proxy), approved for 10 min, and
  // the fourth through on that grant.
  EXPECT_NE(acp.out.find("one=200"), std::string::npos) << acp.out;
  EXPECT_NE(acp.out.find("two=403"), std::string::npos) << acp.out;
  EXPECT_NE(acp.out.find("three=200"), std::string::npos) << acp.out;
  EXPECT_NE(acp.out.find("four=200"), std::string::npos) << acp.out;
  int asked = 0, by_grant = 0, by_web = 0;
  for (const auto& e : audit_entries()) {
    if (e.value("kind", "") != "request") continue;
    const std::string scope = e.value("scope", "");
    const std::string reason = e.value("reason", "");
    if (e.value("policy_verdict", "") == "ask") ++asked;
    if (scope == "grant:duration") ++by_grant;
    if (reason.find("by web") != std::string::npos || reason.find("denied by") == 0) ++by_web;
  }
  EXPECT_EQ(asked, 4);
  EXPECT_EQ(by_grant, 1) << slurp(audit());
  EXPECT_EQ(by_web, 3) << slurp(audit());
  for (const char* png : {"wrong-token.png", "pending.png", "denied.png", "final.png"})
    EXPECT_TRUE(fs::exists(artifacts + "/" + png)) << png;
  // Nothing of the browser is left running.
  auto left = run({"pgrep", "-f", "user-data-dir=" + dir_});
  EXPECT_NE(left.status, 0) << left.out;
}

// Issue 13: a U+202E in agent text reversed what the page showed. Agent text reaches the page
// raw through an MCP tools/call: the confined agent (python3 urllib, through its proxy) calls a
// tool whose name and argument carry the override; Chromium must show it as the text \u{202E},
// in byte order, and the human's Deny reaches that call. A raw U+202E in a request path (a plain
// socket: clients would encode it) reaches the audit log and the page in canonical form,
// percent-encoded, never raw. Driver: tests/browser/web_display.mjs. Screenshot:
// <build>/test-artifacts/web/bidi.png.
TEST_F(RunWeb, PageShowsBidiControlsVisibly) {
  const std::string driver = std::string(ACP_SOURCE_DIR) + "/tests/browser/web_display.mjs";
  if (!fs::exists("/usr/bin/chromium"))
    GTEST_SKIP() << "no /usr/bin/chromium: run scripts/install-deps.sh";
  if (!fs::exists(std::string(ACP_SOURCE_DIR) +
                  "/tests/browser/node_modules/playwright-core/package.json"))
    GTEST_SKIP() << "playwright-core is not installed: run scripts/install-browser-deps.sh";
  const std::string port = std::to_string(origin_port_);
  // The MCP POST's HTTP layer is allowed (the host), the tool call asked; the GET is asked.
  auto policy =
      write_policy("ask.yml",
                   "default: deny\nrules:\n"
                   "  - match: { kind: http, host: \"127.0.0.1\", port: " +
                       port +
                       ", method: POST }\n    action: allow\n"
                       "  - match: { kind: http, host: \"127.0.0.1\", port: " +
                       port +
                       " }\n    action: ask\n    timeout: 120\n"
                       "  - match: { kind: mcp, server: \"127.0.0.1\", tool: \"report*\" }\n"
                       "    action: ask\n    timeout: 120\n");
  auto cfg = web_config();
  // The agent: first the raw override in a path, then the MCP call; one line of output each.
  std::ofstream(dir_ + "/agent.py")
      << "import json, os, socket, urllib.parse, urllib.request\n"
         "proxy = os.environ['http_proxy']\n"
         "p = urllib.parse.urlsplit(proxy)\n"
         "s = socket.create_connection((p.hostname, p.port), timeout=150)\n"
         "s.sendall(b'GET http://127.0.0.1:"
      << port << "/report\\xe2\\x80\\xaefdp.exe HTTP/1.1\\r\\nHost: 127.0.0.1:" << port
      << "\\r\\nConnection: close\\r\\n\\r\\n')\n"
         "print('PATH=' + s.recv(64).split()[1].decode(), flush=True)\n"
         "s.close()\n"
         "call = {'jsonrpc': '2.0', 'id': 7, 'method': 'tools/call', 'params': {\n"
         "    'name': 'report\\u202efdp.exe', 'arguments': {'file': 'a\\u202efdp.exe'}}}\n"
         "req = urllib.request.Request('http://127.0.0.1:"
      << port
      << "/mcp', data=json.dumps(call, ensure_ascii=False).encode(), headers={\n"
         "    'Content-Type': 'application/json',\n"
         "    'Accept': 'application/json, text/event-stream',\n"
         "    'MCP-Protocol-Version': '2025-06-18'})\n"
         "opener = urllib.request.build_opener(urllib.request.ProxyHandler({'http': proxy}))\n"
         "with opener.open(req, timeout=150) as r:\n"
         "    reply = json.loads(r.read())\n"
         "    print('MCP=%d id=%s error=%s' % (r.status, reply.get('id'),\n"
         "          reply.get('error', {}).get('code')), flush=True)\n";
  const std::string script = "python3 " + dir_ + "/agent.py; " + wait_for_done();
  Proc acp = Proc::start(acp_run(policy, {"sh", "-c", script}, {"--config=" + cfg}));
  const std::string token = wait_token();
  ASSERT_FALSE(token.empty()) << "the web page did not start";
  const std::string artifacts = ACP_ARTIFACT_DIR;
  fs::create_directories(artifacts);
  fs::remove(artifacts + "/bidi.png");
  auto browser = run({"timeout", "-k", "10", "300", "node", driver, base_url(), token, artifacts,
                      dir_ + "/chromium-profile"});
  std::ofstream(done_file()) << "";
  acp.finish();
  EXPECT_EQ(browser.status, 0) << browser.out;
  EXPECT_NE(browser.out.find("STEP path-encoded"), std::string::npos) << browser.out;
  EXPECT_NE(browser.out.find("STEP bidi-visible"), std::string::npos) << browser.out;
  EXPECT_NE(browser.out.find("STEP done"), std::string::npos) << browser.out;
  EXPECT_EQ(acp.status, 0) << acp.out;
  EXPECT_NE(acp.out.find("PATH=403"), std::string::npos) << acp.out;
  // The human's Deny reached the tool call: ACP's JSON-RPC error for the call's own id.
  EXPECT_NE(acp.out.find("MCP=200 id=7 error=-32001"), std::string::npos) << acp.out;
  EXPECT_TRUE(fs::exists(artifacts + "/bidi.png"));
  // The audit log keeps the tool name as it was (the raw bytes), decided by the human's deny;
  // the path in canonical form, percent-encoded, and nowhere raw.
  const std::string rlo = "\xe2\x80\xae";
  bool tool_found = false, path_found = false;
  for (const auto& e : audit_entries()) {
    if (e.value("kind", "") != "request" || !e.contains("action")) continue;
    const auto& a = e["action"];
    if (a.value("tool", "") == "report" + rlo + "fdp.exe") {
      tool_found = true;
      EXPECT_EQ(a.value("kind", ""), "mcp") << e.dump();
      EXPECT_EQ(a.value("args", ""), "{\"file\":\"a" + rlo + "fdp.exe\"}") << e.dump();
      EXPECT_EQ(e.value("verdict", ""), "deny") << e.dump();
      EXPECT_NE(e.value("reason", "").find("disguised"), std::string::npos) << e.dump();
    }
    EXPECT_EQ(a.value("path", "").find(rlo), std::string::npos) << e.dump();
    if (a.value("path", "") == "/report%E2%80%AEfdp.exe") {
      path_found = true;
      EXPECT_EQ(e.value("verdict", ""), "deny") << e.dump();
    }
  }
  EXPECT_TRUE(tool_found) << slurp(audit());
  EXPECT_TRUE(path_found) << slurp(audit());
  auto left = run({"pgrep", "-f", "user-data-dir=" + dir_});
  EXPECT_NE(left.status, 0) << left.out;
}

}  // namespace
