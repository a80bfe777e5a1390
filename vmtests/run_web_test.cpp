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
  EXPECT_NE(acp.out.find("consent channel web: " + base_url() + "/?token=" + token),
            std::string::npos)
      << acp.out;
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

// Issue 13: a U+202E in a path reversed what the page showed. The confined agent sends the
// override raw in its request line (python3, a plain socket to its proxy); Chromium must show
// it as the text \u{202E}, in byte order, and the human's Deny applies to that request.
// Screenshot: <build>/test-artifacts/web/bidi.png.
TEST_F(RunWeb, PageShowsBidiControlsVisibly) {
  const std::string driver = std::string(ACP_SOURCE_DIR) + "/tests/browser/web_display.mjs";
  if (!fs::exists("/usr/bin/chromium"))
    GTEST_SKIP() << "no /usr/bin/chromium: run scripts/install-deps.sh";
  if (!fs::exists(std::string(ACP_SOURCE_DIR) +
                  "/tests/browser/node_modules/playwright-core/package.json"))
    GTEST_SKIP() << "playwright-core is not installed: run scripts/install-browser-deps.sh";
  auto policy = write_policy(
      "ask.yml", "default: deny\nrules:\n  - match: { kind: http, host: \"127.0.0.1\", port: " +
                     std::to_string(origin_port_) + " }\n    action: ask\n    timeout: 120\n");
  auto cfg = web_config();
  const std::string port = std::to_string(origin_port_);
  const std::string script =
      "python3 -c '\n"
      "import os, socket, urllib.parse\n"
      "p = urllib.parse.urlsplit(os.environ[\"http_proxy\"])\n"
      "s = socket.create_connection((p.hostname, p.port), timeout=150)\n"
      "s.sendall(b\"GET http://127.0.0.1:" +
      port + "/report\\xe2\\x80\\xaefdp.exe HTTP/1.1\\r\\nHost: 127.0.0.1:" + port +
      "\\r\\nConnection: close\\r\\n\\r\\n\")\n"
      "print(\"BIDI=\" + s.recv(64).split()[1].decode(), flush=True)\n"
      "'; " +
      wait_for_done();
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
  EXPECT_NE(browser.out.find("STEP bidi-visible"), std::string::npos) << browser.out;
  EXPECT_NE(browser.out.find("STEP done"), std::string::npos) << browser.out;
  EXPECT_EQ(acp.status, 0) << acp.out;
  EXPECT_NE(acp.out.find("BIDI=403"), std::string::npos) << acp.out;
  EXPECT_TRUE(fs::exists(artifacts + "/bidi.png"));
  // The audit log keeps the request as it was (the raw bytes), decided by the human's deny.
  bool found = false;
  for (const auto& e : audit_entries()) {
    if (e.value("kind", "") != "request" || !e.contains("action")) continue;
    if (e["action"].value("path", "") ==
        "/report\xe2\x80\xae"
        "fdp.exe") {
      found = true;
      EXPECT_EQ(e.value("verdict", ""), "deny") << e.dump();
      EXPECT_NE(e.value("reason", "").find("disguised"), std::string::npos) << e.dump();
    }
  }
  EXPECT_TRUE(found) << slurp(audit());
  auto left = run({"pgrep", "-f", "user-data-dir=" + dir_});
  EXPECT_NE(left.status, 0) << left.out;
}

}  // namespace
