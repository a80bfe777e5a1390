// `acp run --config=…` with the webhook channel: a confined agent's `ask` request goes to a
// real webhook (python3, verifying the HMAC signature) that approves it; the agent itself can
// reach neither the webhook nor the channel's callback listener (the wall).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "support/run_fixture.hpp"

namespace {

using namespace std::chrono_literals;
using acp::vmtest::free_port;
using acp::vmtest::Proc;
using acp::vmtest::run;
using acp::vmtest::slurp;

const char* kHook = R"PY(
import hashlib, hmac, json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
secret = open(sys.argv[2]).read().strip().encode()
log = sys.argv[3]
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers['Content-Length']))
        parts = dict(p.split('=', 1) for p in self.headers.get('X-ACP-Signature', '').split(',') if '=' in p)
        want = hmac.new(secret, parts.get('t', '').encode() + b'.' + body, hashlib.sha256).hexdigest()
        ok = hmac.compare_digest(want, parts.get('v1', '')) and self.headers.get('X-ACP-Secret') == secret.decode()
        with open(log, 'a') as f:
            f.write(json.dumps({'sig_ok': ok, 'body': json.loads(body)}) + '\n')
        out = json.dumps({'approved': ok, 'reason': 'signature ok' if ok else 'bad signature'}).encode()
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    def log_message(self, *a):
        pass
HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()
)PY";

class RunWebhook : public acp::vmtest::RunFixture {};

TEST_F(RunWebhook, AskedRequestIsApprovedByTheWebhookAndTheAgentCannotReachIt) {
  const uint16_t hook_port = free_port();
  uint16_t cb_port = free_port();
  while (cb_port == hook_port) cb_port = free_port();
  const std::string secret = dir_ + "/webhook.secret";
  {
    std::ofstream(secret) << "vmtest-secret-0123456789\n";
    std::ofstream(dir_ + "/hook.py") << kHook;
  }
  ASSERT_EQ(::chmod(secret.c_str(), 0600), 0);
  const std::string hook_log = dir_ + "/hook.jsonl";
  extra_origins_.push_back(
      Proc::start({"python3", dir_ + "/hook.py", std::to_string(hook_port), secret, hook_log}));
  for (int i = 0; i < 200 && !acp::vmtest::port_answers(hook_port); ++i)
    std::this_thread::sleep_for(50ms);
  ASSERT_TRUE(acp::vmtest::port_answers(hook_port)) << "the test webhook did not start";

  const std::string config = dir_ + "/config.yml";
  std::ofstream(config) << "channels:\n"
                           "  web: {enabled: false}\n"
                           "  webhook:\n"
                           "    enabled: true\n"
                           "    url: http://127.0.0.1:"
                        << hook_port
                        << "/hook\n"
                           "    secret_file: "
                        << secret
                        << "\n"
                           "    timeout: 10s\n"
                           "    retries: 1\n"
                           "    callback_listen: 127.0.0.1:"
                        << cb_port << "\n";

  const std::string cb_url = "http://127.0.0.1:" + std::to_string(cb_port) + "/acp/webhook/answer";
  const std::string hook_url = "http://127.0.0.1:" + std::to_string(hook_port) + "/hook";
  auto r = run(acp_run(policy_for_origin("ask"),
                       {"sh", "-c",
                        "if curl -s --noproxy '*' --max-time 5 -X POST -d '{}' " + cb_url +
                            "; then echo CALLBACK-REACHED; else echo CALLBACK-REFUSED; fi; "
                            "if curl -s --noproxy '*' --max-time 5 -X POST -d '{}' " +
                            hook_url +
                            "; then echo HOOK-REACHED; else echo HOOK-REFUSED; fi; "
                            "curl -s --max-time 30 " +
                            origin_url() + "; echo CURL-EXIT=$?"},
                       {"--config=" + config}));
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("consent channel webhook: POST " + hook_url), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("CALLBACK-REFUSED"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("CALLBACK-REACHED"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("HOOK-REFUSED"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("origin says hello"), std::string::npos) << r.out;

  // The hook saw exactly one request, correctly signed, in upstream's shape plus ACP's fields.
  auto lines = acp::vmtest::slurp(hook_log);
  ASSERT_FALSE(lines.empty());
  ASSERT_EQ(std::count(lines.begin(), lines.end(), '\n'), 1) << lines;
  auto entry = nlohmann::json::parse(lines.substr(0, lines.find('\n')));
  EXPECT_TRUE(entry["sig_ok"].get<bool>()) << lines;
  EXPECT_EQ(entry["body"]["type"], "consent_request");
  EXPECT_EQ(entry["body"]["action"]["host"], "127.0.0.1");
  EXPECT_EQ(entry["body"]["action"]["port"], origin_port_);
  EXPECT_EQ(entry["body"]["callback_url"], cb_url);
  const std::string request_id = entry["body"]["request_id"];

  // The audit log: the human (the webhook) approved that request id.
  bool found = false;
  for (const auto& e : audit_entries()) {
    if (e.value("request_id", "") != request_id) continue;
    found = true;
    EXPECT_EQ(e["verdict"], "allow") << e.dump();
    EXPECT_EQ(e["decided_by"], "human") << e.dump();
  }
  EXPECT_TRUE(found) << slurp(audit());
}

TEST_F(RunWebhook, MissingSecretFileStopsTheSession) {
  const std::string config = dir_ + "/config.yml";
  std::ofstream(config) << "channels:\n"
                           "  web: {enabled: false}\n"
                           "  webhook: {enabled: true, url: 'http://127.0.0.1:9/hook', "
                           "secret_file: "
                        << dir_ << "/missing.secret}\n";
  auto r = run(acp_run(policy_for_origin("ask"), {"true"}, {"--config=" + config}));
  EXPECT_EQ(r.status, 125) << r.out;
  EXPECT_NE(r.out.find("missing.secret"), std::string::npos) << r.out;
}

}  // namespace
