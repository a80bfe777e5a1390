// MCP tool-call consent with the real SDK (@modelcontextprotocol/sdk, tests/mcp/): its server
// and client talk through ACP over both transports, so the wire format is the real one.
//  - Streamable HTTP: the session's consent stack (SessionProxy: proxy, policy, consent gate,
//    control socket, audit log) in this process, the SDK server on loopback, the SDK client
//    through the proxy; batches sent raw with curl.
//  - stdio: the SDK client spawns `acp mcp -- node server.mjs stdio`.
// `ask` is answered with the real `acp approve` / `acp deny` (ACP_RUN_DIR in the test's dir).
// Skips only when tests/mcp/node_modules is missing (scripts/install-mcp-deps.sh installs it;
// scripts/test.sh runs that, so CI runs these).
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <nlohmann/json.hpp>

#include "acp/session/session_proxy.hpp"
#include "consent_test_support.hpp"

namespace {

namespace fs = std::filesystem;
namespace asio = boost::asio;
using acp::testing::TempDir;
using json = nlohmann::json;

const std::string kMcpDir = std::string(ACP_SOURCE_DIR) + "/tests/mcp";

bool sdk_installed() {
  return fs::exists(kMcpDir + "/node_modules/@modelcontextprotocol/sdk/package.json");
}

#define REQUIRE_SDK()   \
  if (!sdk_installed()) \
  GTEST_SKIP() << "tests/mcp/node_modules is not installed: run scripts/install-mcp-deps.sh"

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

struct ShellResult {
  int status = -1;
  std::string out;
};

ShellResult shell(const std::string& cmd) {
  ShellResult r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

std::vector<json> json_lines(const std::string& text) {
  std::vector<json> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    auto j = json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.is_object()) out.push_back(j);
  }
  return out;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// The strings under `key` in a JSON-lines log.
std::vector<std::string> logged(const std::string& path, const std::string& key) {
  std::vector<std::string> out;
  for (const auto& j : json_lines(slurp(path)))
    if (j.contains(key)) out.push_back(j[key]);
  return out;
}

bool any_contains(const std::vector<std::string>& v, const std::string& needle) {
  return std::any_of(v.begin(), v.end(),
                     [&](const std::string& s) { return s.find(needle) != std::string::npos; });
}

constexpr const char* kPolicy = R"(default: deny
rules:
  - match: { kind: http, host: "127.0.0.1" }
    action: allow
  - match: { kind: mcp, tool: echo }
    action: allow
  - match: { kind: mcp, tool: delete_file, args: '{"path":"/tmp/ask-*"}' }
    action: ask
  - match: { kind: mcp, tool: delete_file }
    action: deny
)";

class McpSdkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(dir_ / "run");
    std::ofstream(dir_ / "policy.yml") << kPolicy;
    // No web page: its default token file is in /etc/acp (a test leaves nothing there).
    std::ofstream(dir_ / "config.yml") << "channels:\n  web: {enabled: false}\n";
  }

  std::string acp_cli(const std::string& args) {
    return "ACP_RUN_DIR=" + quote(dir_ / "run") + " " + quote(ACP_BINARY) + " " + args;
  }

  // Waits for one pending request (the client is blocked on it) and answers it.
  void answer_next(const std::string& verb, const std::string& expect_tool) {
    std::string id;
    for (int i = 0; i < 600 && id.empty(); ++i) {
      auto r = shell(acp_cli("pending --json 2>/dev/null"));
      auto j = json::parse(r.out, nullptr, false);
      if (j.is_array() && !j.empty()) {
        EXPECT_EQ(j[0]["action"]["kind"], "mcp");
        EXPECT_EQ(j[0]["action"]["tool"], expect_tool);
        id = j[0]["id"];
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));  // polling, not a timing check
    }
    ASSERT_FALSE(id.empty()) << "no pending MCP request appeared";
    auto r = shell(acp_cli(verb + " " + id + " 2>&1"));
    EXPECT_EQ(r.status, 0) << r.out;
  }

  std::vector<json> audit_mcp_entries() {
    std::vector<json> out;
    for (const auto& j : json_lines(slurp(dir_ / "audit.jsonl")))
      if (j.contains("action") && j["action"].value("kind", "") == "mcp") out.push_back(j);
    return out;
  }

  TempDir dir_;
};

// ---- Streamable HTTP through the proxy ----

class McpHttpTest : public McpSdkTest {
 protected:
  void SetUp() override {
    McpSdkTest::SetUp();
    if (!sdk_installed()) return;
    // The SDK server on loopback: its first stdout line is "PORT <n>".
    int out[2];
    ASSERT_EQ(::pipe(out), 0);
    server_pid_ = ::fork();
    ASSERT_GE(server_pid_, 0);
    if (server_pid_ == 0) {
      ::dup2(out[1], 1);
      ::close(out[0]);
      ::close(out[1]);
      std::string log = dir_ / "server.log";
      ::execlp("node", "node", (kMcpDir + "/server.mjs").c_str(), "http", log.c_str(), nullptr);
      ::_exit(127);
    }
    ::close(out[1]);
    FILE* f = ::fdopen(out[0], "r");
    char line[128] = {};
    ASSERT_NE(std::fgets(line, sizeof line, f), nullptr) << "the MCP test server did not start";
    std::fclose(f);
    ASSERT_EQ(std::sscanf(line, "PORT %d", &server_port_), 1) << line;

    acp::SessionProxyConfig cfg;
    cfg.session_id = "mcp0test0001";
    cfg.policy_path = dir_ / "policy.yml";
    cfg.audit_path = dir_ / "audit.jsonl";
    cfg.control_path = dir_ / "run/control.sock";
    cfg.grants_path = dir_ / "grants.json";
    cfg.config_path = dir_ / "config.yml";
    auto p = acp::SessionProxy::start(io_, cfg);
    ASSERT_TRUE(p.ok()) << p.error().message();
    proxy_ = std::move(*p);
    thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    if (thread_.joinable()) {
      asio::post(io_, [this] {
        proxy_->stop();
        io_.stop();
      });
      thread_.join();
    }
    if (server_pid_ > 0) {
      ::kill(server_pid_, SIGTERM);
      ::waitpid(server_pid_, nullptr, 0);
    }
  }

  std::string server_url() const {
    return "http://127.0.0.1:" + std::to_string(server_port_) + "/mcp";
  }

  std::vector<json> client(const json& calls) {
    auto r = shell("cd " + quote(kMcpDir) + " && node client.mjs http " +
                   quote(proxy_->proxy_url()) + " " + quote(server_url()) + " " +
                   quote(dir_ / "sent.log") + " " + quote(calls.dump()) + " 2>&1");
    EXPECT_EQ(r.status, 0) << r.out;
    return json_lines(r.out);
  }

  // curl through the proxy with the transport's headers; returns the response headers + body.
  ShellResult post(const std::string& body, const std::string& session = "") {
    std::ofstream(dir_ / "body.json", std::ios::binary) << body;
    std::string cmd = "curl -sS --max-time 60 -x " + quote(proxy_->proxy_url()) +
                      " -D - -H 'Content-Type: application/json'"
                      " -H 'Accept: application/json, text/event-stream'";
    if (!session.empty()) cmd += " -H " + quote("Mcp-Session-Id: " + session);
    return shell(cmd + " --data-binary @" + quote(dir_ / "body.json") + " " + quote(server_url()) +
                 " 2>&1");
  }

  asio::io_context io_;
  std::unique_ptr<acp::SessionProxy> proxy_;
  std::thread thread_;
  pid_t server_pid_ = -1;
  int server_port_ = 0;
};

TEST_F(McpHttpTest, AllowedCallsRunDeniedOnesNeverReachTheServer) {
  REQUIRE_SDK();
  auto out =
      client(json::array({{{"name", "echo"}, {"arguments", {{"text", "hi"}}}},
                          {{"name", "delete_file"}, {"arguments", {{"path", "/etc/passwd"}}}},
                          {{"name", "echo"}, {"arguments", {{"text", "after"}}}}}));
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[0]["tools"], json::array({"delete_file", "echo"}));
  EXPECT_EQ(out[1]["text"], "echo: hi");
  ASSERT_TRUE(out[2].contains("error")) << out[2];
  EXPECT_EQ(out[2]["error"]["code"], -32001);
  std::string msg = out[2]["error"]["message"];
  EXPECT_NE(msg.find("ACP denied the tool call 'delete_file' on 127.0.0.1"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("rule 4 (line 9) denies"), std::string::npos) << msg;
  EXPECT_EQ(out[3]["text"], "echo: after");  // the session goes on

  auto tools = logged(dir_ / "server.log", "tool");
  EXPECT_EQ(tools, (std::vector<std::string>{"echo", "echo"}));
  // Every body the server received is byte for byte one the client sent, and every body the
  // client sent reached the server except the refused tools/call.
  auto sent = logged(dir_ / "sent.log", "sent");
  auto got = logged(dir_ / "server.log", "in");
  std::vector<std::string> expected;
  for (const auto& s : sent)
    if (s.find("delete_file") == std::string::npos) expected.push_back(s);
  EXPECT_EQ(got, expected);
  EXPECT_TRUE(any_contains(got, "\"method\":\"initialize\""));
  EXPECT_TRUE(any_contains(got, "notifications/initialized"));
  EXPECT_TRUE(any_contains(got, "tools/list"));

  auto audit = audit_mcp_entries();
  ASSERT_EQ(audit.size(), 3u);
  EXPECT_EQ(audit[0]["action"]["tool"], "echo");
  EXPECT_EQ(audit[0]["action"]["server"], "127.0.0.1");
  EXPECT_EQ(audit[0]["action"]["args"], R"({"text":"hi"})");
  EXPECT_EQ(audit[0]["verdict"], "allow");
  EXPECT_EQ(audit[1]["action"]["tool"], "delete_file");
  EXPECT_EQ(audit[1]["verdict"], "deny");
  auto verify = shell(quote(ACP_BINARY) + " audit verify " + quote(dir_ / "audit.jsonl") + " 2>&1");
  EXPECT_EQ(verify.status, 0) << verify.out;
}

TEST_F(McpHttpTest, AskedCallsWaitForAcpApproveOrDeny) {
  REQUIRE_SDK();
  auto fut = std::async(std::launch::async, [this] {
    return client(
        json::array({{{"name", "delete_file"}, {"arguments", {{"path", "/tmp/ask-yes"}}}},
                     {{"name", "delete_file"}, {"arguments", {{"path", "/tmp/ask-no"}}}}}));
  });
  answer_next("approve", "delete_file");
  answer_next("deny --reason=not-today", "delete_file");
  auto out = fut.get();
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[1]["text"], "deleted /tmp/ask-yes");
  ASSERT_TRUE(out[2].contains("error")) << out[2];
  EXPECT_EQ(out[2]["error"]["code"], -32001);
  EXPECT_NE(out[2]["error"]["message"].get<std::string>().find("not-today"), std::string::npos);
  auto tools = logged(dir_ / "server.log", "tool");
  EXPECT_EQ(tools, std::vector<std::string>{"delete_file"});
  auto audit = audit_mcp_entries();
  ASSERT_EQ(audit.size(), 2u);
  EXPECT_EQ(audit[0]["decided_by"], "human");
  EXPECT_EQ(audit[0]["verdict"], "allow");
  EXPECT_EQ(audit[1]["verdict"], "deny");
}

TEST_F(McpHttpTest, BatchesAreAllOrNothingAndOtherMessagesPassUntouched) {
  REQUIRE_SDK();
  auto init = post(
      R"({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}})");
  ASSERT_EQ(init.status, 0) << init.out;
  std::string session;
  {
    std::istringstream in(init.out);
    std::string line;
    while (std::getline(in, line)) {
      if (line.size() > 15 && strncasecmp(line.c_str(), "mcp-session-id:", 15) == 0) {
        session = line.substr(15);
        session.erase(0, session.find_first_not_of(' '));
        while (!session.empty() && (session.back() == '\r' || session.back() == ' '))
          session.pop_back();
      }
    }
  }
  ASSERT_FALSE(session.empty()) << init.out;
  auto note = post(R"({"jsonrpc":"2.0","method":"notifications/initialized"})", session);
  EXPECT_NE(note.out.find(" 202"), std::string::npos) << note.out;

  // One denied call refuses the whole batch: nothing of it reaches the server.
  const std::string refused =
      R"([{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}},)"
      R"({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_file","arguments":{"path":"/"}}}])";
  auto r = post(refused, session);
  auto body = json::parse(r.out.substr(r.out.find("\r\n\r\n") + 4), nullptr, false);
  ASSERT_TRUE(body.is_array()) << r.out;
  ASSERT_EQ(body.size(), 2u);
  EXPECT_EQ(body[0]["id"], 1);
  EXPECT_EQ(body[0]["error"]["code"], -32002);
  EXPECT_EQ(body[1]["id"], 2);
  EXPECT_EQ(body[1]["error"]["code"], -32001);

  // An allowed batch goes through as sent, and its answers come back (JSON or an SSE stream).
  const std::string allowed =
      R"([{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"b1"}}},)"
      R"({"jsonrpc":"2.0","id":4,"method":"tools/list"}])";
  r = post(allowed, session);
  EXPECT_NE(r.out.find("echo: b1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("delete_file"), std::string::npos) << r.out;  // the tools/list answer

  auto got = logged(dir_ / "server.log", "in");
  ASSERT_EQ(got.size(), 3u);
  EXPECT_NE(got[1].find("notifications/initialized"), std::string::npos);
  EXPECT_EQ(got[2], allowed);
  EXPECT_EQ(logged(dir_ / "server.log", "tool"), std::vector<std::string>{"echo"});
}

// ---- stdio: acp mcp ----

class McpStdioTest : public McpSdkTest {
 protected:
  std::vector<json> client(const json& calls, const std::string& acp_args = "") {
    auto r =
        shell("cd " + quote(kMcpDir) + " && ACP_RUN_DIR=" + quote(dir_ / "run") +
              " node client.mjs stdio " + quote(dir_ / "client.log") + " " + quote(calls.dump()) +
              " " + quote(ACP_BINARY) + " mcp --policy " + quote(dir_ / "policy.yml") +
              " --audit-log " + quote(dir_ / "audit.jsonl") + " --config " +
              quote(dir_ / "config.yml") + " " + acp_args + " -- node server.mjs stdio " +
              quote(dir_ / "server.log") + " 2>" + quote(dir_ / "stderr.log"));
    EXPECT_EQ(r.status, 0) << r.out << slurp(dir_ / "stderr.log");
    return json_lines(r.out);
  }
};

TEST_F(McpStdioTest, AllowedDeniedAndBytesUntouched) {
  REQUIRE_SDK();
  auto out =
      client(json::array({{{"name", "echo"}, {"arguments", {{"text", "hi"}}}},
                          {{"name", "delete_file"}, {"arguments", {{"path", "/etc/passwd"}}}},
                          {{"name", "echo"}, {"arguments", {{"text", "after"}}}}}),
             "--server-name files");
  ASSERT_EQ(out.size(), 4u) << slurp(dir_ / "stderr.log");
  EXPECT_EQ(out[1]["text"], "echo: hi");
  ASSERT_TRUE(out[2].contains("error")) << out[2];
  EXPECT_EQ(out[2]["error"]["code"], -32001);
  EXPECT_NE(out[2]["error"]["message"].get<std::string>().find(
                "ACP denied the tool call 'delete_file' on files"),
            std::string::npos);
  EXPECT_EQ(out[3]["text"], "echo: after");
  EXPECT_EQ(logged(dir_ / "server.log", "tool"), (std::vector<std::string>{"echo", "echo"}));

  // Client -> server: every line byte for byte, except the refused one.
  auto sent = logged(dir_ / "client.log", "sent");
  auto got = logged(dir_ / "server.log", "in");
  std::vector<std::string> expected;
  for (const auto& s : sent)
    if (s.find("delete_file") == std::string::npos) expected.push_back(s);
  EXPECT_EQ(got, expected);
  EXPECT_TRUE(any_contains(got, "notifications/initialized"));
  EXPECT_TRUE(any_contains(got, "tools/list"));
  // Server -> client: the bytes the client read are the bytes the server wrote, with ACP's one
  // refusal line between two of the server's lines.
  std::string wrote, read;
  for (const auto& w : logged(dir_ / "server.log", "out")) wrote += w;
  for (const auto& r : logged(dir_ / "client.log", "raw")) read += r;
  std::string without_acp;
  int acp_lines = 0;
  std::istringstream lines(read);
  for (std::string line; std::getline(lines, line);) {
    if (line.find("ACP denied") != std::string::npos) {
      ++acp_lines;
      EXPECT_EQ(line.rfind("{\"error\":{\"code\":-32001", 0), 0u) << line;
      continue;
    }
    without_acp += line + "\n";
  }
  EXPECT_EQ(acp_lines, 1);
  EXPECT_EQ(without_acp, wrote);
  EXPECT_EQ(logged(dir_ / "client.log", "recv").size(),
            logged(dir_ / "server.log", "out").size() + 1);
  auto audit = audit_mcp_entries();
  ASSERT_EQ(audit.size(), 3u);
  EXPECT_EQ(audit[1]["action"]["server"], "files");
  EXPECT_EQ(audit[1]["action"]["args"], R"({"path":"/etc/passwd"})");
  EXPECT_EQ(audit[1]["verdict"], "deny");
}

// A server that reads its stdin as the Python SDK does (TextIOWrapper, universal newlines:
// a CR ends a line too) must never get a line ACP read differently: a CR inside a line, or a
// NUL that ends nlohmann's input early, would hide a tools/call. Such lines are refused.
TEST_F(McpStdioTest, LinesAServerCouldSplitOrReadOnAreRefused) {
  const std::string call =
      R"({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_file","arguments":{"path":"/etc/passwd"}}})";
  const std::string echo =
      R"({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"ok"}}})";
  std::string input = "1\r" + call + "\n";       // a CR: Python reads two lines
  input += std::string("1\0", 2) + call + "\n";  // a NUL: nlohmann stops at it
  input += echo + "\n";                          // control: passes
  std::ofstream(dir_ / "input.bin", std::ios::binary) << input;
  const std::string server =
      "import sys\n"
      "with open(sys.argv[1], 'a') as log:\n"
      "    for line in sys.stdin:\n"
      "        log.write(repr(line) + '\\n')\n";
  std::ofstream(dir_ / "server.py") << server;
  auto r =
      shell(acp_cli("mcp --policy " + quote(dir_ / "policy.yml") + " --audit-log " +
                    quote(dir_ / "audit.jsonl") + " --config " + quote(dir_ / "config.yml") +
                    " -- python3 " + quote(dir_ / "server.py") + " " + quote(dir_ / "server.log") +
                    " <" + quote(dir_ / "input.bin") + " 2>" + quote(dir_ / "stderr.log")));
  EXPECT_EQ(r.status, 0) << r.out << slurp(dir_ / "stderr.log");
  const std::string got = slurp(dir_ / "server.log");
  EXPECT_EQ(got.find("delete_file"), std::string::npos) << got;
  EXPECT_NE(got.find("\"echo\""), std::string::npos) << got << slurp(dir_ / "stderr.log");
  const std::string err = slurp(dir_ / "stderr.log");
  EXPECT_NE(err.find("carriage return"), std::string::npos) << err;
  EXPECT_NE(err.find("NUL"), std::string::npos) << err;
}

TEST_F(McpStdioTest, AskedCallsWaitForAcpApproveOrDeny) {
  REQUIRE_SDK();
  auto fut = std::async(std::launch::async, [this] {
    return client(
        json::array({{{"name", "delete_file"}, {"arguments", {{"path", "/tmp/ask-yes"}}}},
                     {{"name", "delete_file"}, {"arguments", {{"path", "/tmp/ask-no"}}}}}));
  });
  answer_next("approve", "delete_file");
  answer_next("deny", "delete_file");
  auto out = fut.get();
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[1]["text"], "deleted /tmp/ask-yes");
  ASSERT_TRUE(out[2].contains("error")) << out[2];
  EXPECT_EQ(logged(dir_ / "server.log", "tool"), std::vector<std::string>{"delete_file"});
  auto audit = audit_mcp_entries();
  ASSERT_EQ(audit.size(), 2u);
  EXPECT_EQ(audit[0]["decided_by"], "human");
  EXPECT_EQ(audit[0]["action"]["server"], "node");  // the command's name by default
}

TEST(McpStdioCommand, ExitStatusAndMissingCommand) {
  TempDir dir;
  std::ofstream(dir / "config.yml") << "channels:\n  web: {enabled: false}\n";
  auto run = [&](const std::string& cmd) {
    return shell("ACP_RUN_DIR=" + quote(dir / "") + " " + quote(ACP_BINARY) + " mcp --audit-log " +
                 quote(dir / "audit.jsonl") + " --config " + quote(dir / "config.yml") + " -- " +
                 cmd + " </dev/null 2>&1");
  };
  EXPECT_EQ(run("sh -c 'exit 7'").status, 7);
  auto r = run("/nonexistent/mcp-server");
  EXPECT_EQ(r.status, 127) << r.out;
  EXPECT_NE(r.out.find("not found"), std::string::npos) << r.out;
}

}  // namespace
