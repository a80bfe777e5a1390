// The proxy's MCP hook with curl and raw sockets (no SDK): JSON-RPC bodies are read and each
// tools/call judged; a refused one is answered by the proxy and never reaches the origin; an
// allowed one, and everything that is not a tool call, reaches it byte for byte.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "acp/proxy/mcp.hpp"
#include "acp/proxy/proxy_server.hpp"
#include "proxy_test_support.hpp"

namespace {

using namespace acp;
using namespace acp::proxy;
using namespace acp::proxy::testing;
namespace fs = std::filesystem;
using json = nlohmann::json;

class ProxyMcpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/acp-proxy-mcp-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    judge_.decide = [](const Action& a) {
      bool deny = a.kind == "mcp" && a.tool == "delete_file";
      return Judgement{!deny, deny ? "rule 3 (line 7) denies mcp tool delete_file" : "ok", "req-0",
                       true};
    };
    ProxyConfig cfg;
    cfg.listen = {tcp::endpoint(net::ip::make_address("127.0.0.1"), 0)};
    cfg.session_id = "test-session";
    server_ = std::make_unique<ProxyServer>(io_, cfg, judge_);
    ASSERT_TRUE(server_->start().ok());
    port_ = server_->local_endpoints().at(0).port();
    thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    net::post(io_, [this] { server_->stop(); });
    judge_.release();
    net::post(io_, [this] { io_.stop(); });
    thread_.join();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  // POSTs `body` (from a file, so it is sent as is) to the origin's /sink through the proxy.
  CommandResult post(const std::string& body, const std::string& extra = "") {
    std::ofstream(dir_ + "/body", std::ios::binary) << body;
    return run_command("curl -sS --max-time 60 -x http://127.0.0.1:" + std::to_string(port_) +
                       " -H 'Content-Type: application/json' " + extra + " --data-binary @" + dir_ +
                       "/body -w '\\n%{http_code}' http://127.0.0.1:" +
                       std::to_string(origin_.port()) + "/sink 2>&1");
  }
  // What the origin's /sink answers for `body`, then curl's status line.
  static std::string sunk(const std::string& body) {
    return json{{"bytes", body.size()}, {"sum", sum(body)}}.dump() + "\n200";
  }
  static uint64_t sum(const std::string& s) {
    uint64_t n = 0;
    for (unsigned char c : s) n += c;
    return n;
  }
  std::vector<Action> mcp_actions() {
    std::vector<Action> out;
    for (const auto& a : judge_.actions())
      if (a.kind == "mcp") out.push_back(a);
    return out;
  }

  net::io_context io_;
  ScriptedJudge judge_{io_};
  Origin origin_;
  std::unique_ptr<ProxyServer> server_;
  std::thread thread_;
  uint16_t port_ = 0;
  std::string dir_;
};

TEST_F(ProxyMcpTest, AllowedToolCallReachesTheOriginByteForByte) {
  const std::string body =
      R"({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "hi", "a": 1}} })";
  auto r = post(body);
  EXPECT_EQ(r.out, sunk(body));
  auto m = mcp_actions();
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].server, "127.0.0.1");
  EXPECT_EQ(m[0].tool, "echo");
  EXPECT_EQ(m[0].args, R"({"a":1,"text":"hi"})");
  EXPECT_EQ(m[0].session, "test-session");
}

TEST_F(ProxyMcpTest, DeniedToolCallIsAnsweredByTheProxyAndNeverForwarded) {
  auto r = post(
      R"({"jsonrpc":"2.0","id":"x7","method":"tools/call","params":{"name":"delete_file","arguments":{"path":"/"}}})");
  ASSERT_GE(r.out.size(), 4u);
  EXPECT_EQ(r.out.substr(r.out.size() - 3), "200");
  auto reply = json::parse(r.out.substr(0, r.out.size() - 4));
  EXPECT_EQ(reply["id"], "x7");
  EXPECT_EQ(reply["error"]["code"], mcp::kCodeDenied);
  EXPECT_NE(reply["error"]["message"].get<std::string>().find("ACP denied"), std::string::npos);
  EXPECT_EQ(origin_.requests(), 0);
  EXPECT_EQ(server_->counters().denied, 1u);
}

TEST_F(ProxyMcpTest, TheConnectionStaysUsableAfterARefusal) {
  RawClient c(port_);
  const std::string denied =
      R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_file"}})";
  const std::string allowed = R"({"jsonrpc":"2.0","id":2,"method":"tools/list"})";
  const std::string url = "http://127.0.0.1:" + std::to_string(origin_.port()) + "/sink";
  auto request = [&](const std::string& b) {
    return "POST " + url + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
           "Content-Length: " + std::to_string(b.size()) + "\r\n\r\n" + b;
  };
  c.send(request(denied) + request(allowed));  // pipelined
  auto r1 = c.read_response();
  ASSERT_TRUE(r1);
  EXPECT_EQ(r1->result_int(), 200);
  EXPECT_EQ(json::parse(r1->body())["error"]["code"], mcp::kCodeDenied);
  auto r2 = c.read_response();
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->body(), json({{"bytes", allowed.size()}, {"sum", sum(allowed)}}).dump());
  EXPECT_EQ(origin_.requests(), 1);
}

TEST_F(ProxyMcpTest, ChunkedAndExpectContinueBodiesAreJudged) {
  auto denied =
      post(R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_file"}})",
           "-H 'Transfer-Encoding: chunked'");
  EXPECT_NE(denied.out.find("ACP denied"), std::string::npos) << denied.out;
  // Over 1 KiB, curl sends Expect: 100-continue and waits for it.
  std::string text(4000, 'a');
  const std::string body =
      R"({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":")" +
      text + "\"}}}";
  auto ok = post(body, "-H 'Transfer-Encoding: chunked'");
  EXPECT_EQ(ok.out, sunk(body));
  auto ok2 = post(body);
  EXPECT_EQ(ok2.out, sunk(body));
  EXPECT_EQ(origin_.requests(), 2);
  EXPECT_EQ(mcp_actions().size(), 3u);
}

TEST_F(ProxyMcpTest, WhatCannotBeJudgedIsRefusedWhenItLooksLikeMcp) {
  // Duplicate keys: two parsers could see two different tools.
  auto dup = post(
      R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"delete_file"}})");
  EXPECT_NE(dup.out.find(std::to_string(mcp::kCodeUninspectable)), std::string::npos) << dup.out;
  // Over the limit with the transport's headers: 413, not forwarded.
  std::string big =
      R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"t":")" +
      std::string(mcp::kMaxHttpBodyBytes, 'a') + "\"}}}";
  auto r = post(big, "-H 'Accept: application/json, text/event-stream'");
  EXPECT_EQ(r.out.substr(r.out.size() - 3), "413") << r.out.substr(0, 300);
  EXPECT_EQ(origin_.requests(), 0);
  // A large JSON POST without them (an LLM API call, say) goes through uninspected.
  auto llm = post(big);
  EXPECT_EQ(llm.out, sunk(big));
  // Not JSON-RPC at all: forwarded as is, nothing judged as mcp.
  const std::string api = R"({"model":"m","messages":[{"role":"user","content":"hi"}]})";
  EXPECT_EQ(post(api).out, sunk(api));
  EXPECT_TRUE(mcp_actions().empty());
}

TEST_F(ProxyMcpTest, AnAcceptHeaderSplitInTwoStillShowsTheTransport) {
  // The SDK servers read both lines (Node joins them): so does ACP.
  std::string big =
      R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_file","arguments":{"t":")" +
      std::string(mcp::kMaxHttpBodyBytes, 'a') + "\"}}}";
  auto r = post(big, "-H 'Accept: application/json' -H 'Accept: text/event-stream'");
  EXPECT_EQ(r.out.substr(r.out.size() - 3), "413") << r.out.substr(0, 300);
  EXPECT_EQ(origin_.requests(), 0);
}

TEST_F(ProxyMcpTest, WhereAnMcpRuleAppliesWhatCannotBeInspectedIsRefused) {
  judge_.decide = [](const Action& a) {
    bool deny = a.kind == "mcp" && a.tool == "delete_file";
    Judgement j{!deny, deny ? "denied" : "ok", "req-1", true};
    j.inside_mcp = a.kind == "http";  // a kind: mcp rule names this server
    return j;
  };
  const std::string call =
      R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_file"}})";
  auto status = [](const CommandResult& r) { return r.out.substr(r.out.size() - 3); };
  // No transport headers, and still refused: too large, compressed, another charset.
  std::string big =
      R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_file","arguments":{"t":")" +
      std::string(mcp::kMaxHttpBodyBytes, 'a') + "\"}}}";
  EXPECT_EQ(status(post(big)), "413");
  EXPECT_EQ(status(post(call, "-H 'Content-Encoding: gzip'")), "415");
  EXPECT_EQ(status(post(call, "-H 'Content-Encoding: identity' -H 'Content-Encoding: br'")), "415");
  EXPECT_EQ(status(post(call, "-H 'Content-Type: application/json; charset=utf-7'")), "415");
  // Whatever the method and Content-Type, the body is judged.
  auto plain = post(call, "-H 'Content-Type: text/plain'");
  EXPECT_NE(plain.out.find(std::to_string(mcp::kCodeDenied)), std::string::npos) << plain.out;
  auto put = post(call, "-X PUT");
  EXPECT_NE(put.out.find(std::to_string(mcp::kCodeDenied)), std::string::npos) << put.out;
  // What is not JSON cannot be read: refused.
  auto form = post("name=delete_file", "-H 'Content-Type: application/x-www-form-urlencoded'");
  EXPECT_NE(form.out.find(std::to_string(mcp::kCodeUninspectable)), std::string::npos) << form.out;
  EXPECT_EQ(origin_.requests(), 0);
  // Control: the allowed tool, sent the same way, arrives unchanged.
  const std::string echo =
      R"({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo"}})";
  EXPECT_EQ(post(echo, "-H 'Content-Type: text/plain'").out, sunk(echo));
  EXPECT_EQ(origin_.requests(), 1);
}

TEST(McpHeaders, CodingAndCharsetAreReadAsLists) {
  EXPECT_TRUE(mcp::identity_coding(""));
  EXPECT_TRUE(mcp::identity_coding("identity"));
  EXPECT_TRUE(mcp::identity_coding("Identity, identity"));
  EXPECT_FALSE(mcp::identity_coding("identity, gzip"));
  EXPECT_FALSE(mcp::identity_coding("br"));
  EXPECT_TRUE(mcp::utf8_charset("application/json"));
  EXPECT_TRUE(mcp::utf8_charset("application/json; charset=UTF-8"));
  EXPECT_TRUE(mcp::utf8_charset("application/json;charset=\"utf-8\""));
  EXPECT_FALSE(mcp::utf8_charset("application/json; charset=utf-7"));
  EXPECT_FALSE(mcp::utf8_charset("application/json, application/json; charset=utf-16le"));
  EXPECT_FALSE(mcp::utf8_charset("application/json; charset = latin1"));
}

}  // namespace
