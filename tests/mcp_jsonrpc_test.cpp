// What ACP reads in a JSON-RPC message and how it refuses: inspect(), the canonical form of
// tool arguments, judge_message() with a scripted judge, refusal replies, chunked bodies.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include "acp/proxy/mcp.hpp"

namespace {

using namespace acp;
using namespace acp::mcp;
using json = nlohmann::json;
using Kind = Inspection::Kind;

TEST(McpCanonicalJson, SortedKeysNoWhitespace) {
  auto j = json::parse(R"({ "b": 1, "a": {"d": [1, 2, {"z": true, "y": null}], "c": "x y"} })");
  EXPECT_EQ(canonical_json(j), R"({"a":{"c":"x y","d":[1,2,{"y":null,"z":true}]},"b":1})");
  EXPECT_EQ(canonical_json(json::parse(R"("a\u0001\"")")), R"("a\u0001\"")");
}

TEST(McpInspect, SingleToolCall) {
  auto in = inspect(
      R"({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"delete_file","arguments":{"path":"/etc/x","force":true}}})");
  ASSERT_EQ(in.kind, Kind::ToolCalls);
  EXPECT_FALSE(in.batch);
  ASSERT_EQ(in.calls.size(), 1u);
  EXPECT_EQ(in.calls[0].tool, "delete_file");
  EXPECT_EQ(in.calls[0].args, R"({"force":true,"path":"/etc/x"})");
  EXPECT_TRUE(in.calls[0].has_id);
  EXPECT_EQ(in.calls[0].id, 7);
  ASSERT_EQ(in.request_ids.size(), 1u);
}

TEST(McpInspect, ArgumentsAbsentAreAnEmptyObject) {
  auto in = inspect(R"({"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"t"}})");
  ASSERT_EQ(in.kind, Kind::ToolCalls);
  EXPECT_EQ(in.calls[0].args, "{}");
  EXPECT_EQ(in.calls[0].id, "a");
}

TEST(McpInspect, OtherMessagesPass) {
  EXPECT_EQ(inspect(R"({"jsonrpc":"2.0","id":1,"method":"tools/list"})").kind, Kind::NoToolCall);
  EXPECT_EQ(inspect(R"({"jsonrpc":"2.0","method":"notifications/initialized"})").kind,
            Kind::NoToolCall);
  EXPECT_EQ(inspect(R"({"jsonrpc":"2.0","id":1,"result":{}})").kind, Kind::NoToolCall);
  EXPECT_EQ(inspect(R"({"model":"x","messages":[]})").kind, Kind::NotJsonRpc);
  EXPECT_EQ(inspect(R"([1,2,3])").kind, Kind::NotJsonRpc);
  EXPECT_EQ(inspect("  \r\n").kind, Kind::NotJsonRpc);
}

TEST(McpInspect, ToolCallWithoutJsonrpcMemberIsStillJudged) {
  // A lenient server would run it: ACP judges by method, not by the envelope.
  auto in = inspect(R"({"id":1,"method":"tools/call","params":{"name":"x"}})");
  EXPECT_EQ(in.kind, Kind::ToolCalls);
}

TEST(McpInspect, BatchListsEveryCallAndEveryRequest) {
  auto in = inspect(R"([
    {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"a"}}},
    {"jsonrpc":"2.0","method":"notifications/progress"},
    {"jsonrpc":"2.0","id":2,"method":"tools/list"},
    {"jsonrpc":"2.0","method":"tools/call","params":{"name":"delete_file","arguments":{}}}
  ])");
  ASSERT_EQ(in.kind, Kind::ToolCalls);
  EXPECT_TRUE(in.batch);
  ASSERT_EQ(in.calls.size(), 2u);
  EXPECT_EQ(in.calls[0].index, 0u);
  EXPECT_EQ(in.calls[1].index, 3u);
  EXPECT_FALSE(in.calls[1].has_id);
  ASSERT_EQ(in.request_ids.size(), 2u);
  EXPECT_EQ(in.request_ids[1].first, 2u);
}

TEST(McpInspect, WhatCannotBeReadSafelyIsInvalid) {
  EXPECT_EQ(inspect("{not json").kind, Kind::Invalid);
  EXPECT_EQ(inspect("{\"a\":\"\xff\"}").kind, Kind::Invalid);  // not UTF-8
  // nlohmann's lexer ends its input at a NUL: the tools/call behind it would go unread.
  EXPECT_EQ(inspect(std::string("1\0{\"id\":1,\"method\":\"tools/call\"}", 32)).kind,
            Kind::Invalid);
  // Two parsers could keep different copies of a duplicated key.
  auto dup = inspect(
      R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"delete_file"}})");
  EXPECT_EQ(dup.kind, Kind::Invalid);
  EXPECT_NE(dup.reason.find("duplicate key \"name\""), std::string::npos) << dup.reason;
  EXPECT_EQ(inspect(R"({"id":1,"method":"tools/call","params":{"name":"a"},"method":"x"})").kind,
            Kind::Invalid);
  EXPECT_EQ(inspect(R"({"id":1,"method":"tools/call","params":[]})").kind, Kind::Invalid);
  EXPECT_EQ(inspect(R"({"id":1,"method":"tools/call","params":{"name":3}})").kind, Kind::Invalid);
  EXPECT_EQ(inspect(R"({"id":1,"method":"tools/call"})").kind, Kind::Invalid);
  std::string deep(200, '[');
  deep += std::string(200, ']');
  EXPECT_EQ(inspect(deep).kind, Kind::Invalid);
}

TEST(McpToolAction, KindMcpWithoutNetworkFields) {
  ToolCall c;
  c.tool = "echo";
  c.args = R"({"text":"hi"})";
  auto a = tool_action(c, "mcp.example.com", "s1");
  EXPECT_EQ(a.kind, "mcp");
  EXPECT_EQ(a.server, "mcp.example.com");
  EXPECT_EQ(a.tool, "echo");
  EXPECT_EQ(a.args, R"({"text":"hi"})");
  EXPECT_EQ(a.session, "s1");
  EXPECT_TRUE(a.host.empty());
  EXPECT_EQ(a.port, 0);
}

// judge_message on an io_context, with a judge that denies the tools named in `deny`.
Outcome judge_with(const Inspection& in, std::vector<std::string> deny,
                   std::vector<Action>* seen = nullptr) {
  boost::asio::io_context io;
  JudgeFn fn = [deny, seen](Action a) -> boost::asio::awaitable<Judgement> {
    if (seen) seen->push_back(a);
    bool denied = std::find(deny.begin(), deny.end(), a.tool) != deny.end();
    co_return Judgement{!denied, denied ? "rule 2 (line 5) denies mcp tool " + a.tool : "ok",
                        "id-" + a.tool, false};
  };
  auto fut =
      boost::asio::co_spawn(io, judge_message(in, "srv", "sess", fn), boost::asio::use_future);
  io.run();
  return fut.get();
}

TEST(McpJudge, AllowedCallsAreForwarded) {
  std::vector<Action> seen;
  auto out = judge_with(
      inspect(R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}})"), {},
      &seen);
  EXPECT_TRUE(out.forward);
  EXPECT_EQ(out.judged, 1u);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].server, "srv");
}

TEST(McpJudge, ADeniedCallGetsAJsonRpcErrorWithItsId) {
  auto out = judge_with(
      inspect(
          R"({"jsonrpc":"2.0","id":"abc","method":"tools/call","params":{"name":"delete_file"}})"),
      {"delete_file"});
  EXPECT_FALSE(out.forward);
  EXPECT_EQ(out.request_id, "id-delete_file");
  auto r = json::parse(out.reply);
  EXPECT_EQ(r["jsonrpc"], "2.0");
  EXPECT_EQ(r["id"], "abc");
  EXPECT_EQ(r["error"]["code"], kCodeDenied);
  EXPECT_GE(r["error"]["code"].get<int>(), -32099);
  EXPECT_LE(r["error"]["code"].get<int>(), -32000);
  std::string msg = r["error"]["message"];
  EXPECT_EQ(msg.rfind("ACP denied the tool call 'delete_file' on srv: rule 2", 0), 0u) << msg;
  EXPECT_EQ(r["error"]["data"]["acp"]["request_id"], "id-delete_file");
  EXPECT_FALSE(r.contains("result"));
}

TEST(McpJudge, ADeniedNotificationHasNoReply) {
  auto out = judge_with(
      inspect(R"({"jsonrpc":"2.0","method":"tools/call","params":{"name":"delete_file"}})"),
      {"delete_file"});
  EXPECT_FALSE(out.forward);
  EXPECT_TRUE(out.reply.empty());
}

TEST(McpJudge, ABatchWithOneDenialIsRefusedWhole) {
  std::vector<Action> seen;
  auto out = judge_with(inspect(R"([
    {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}},
    {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_file"}},
    {"jsonrpc":"2.0","method":"notifications/x"},
    {"jsonrpc":"2.0","id":3,"method":"tools/list"},
    {"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"never_judged"}}
  ])"),
                        {"delete_file"}, &seen);
  EXPECT_FALSE(out.forward);
  EXPECT_EQ(seen.size(), 2u);  // judging stops at the first denial
  auto r = json::parse(out.reply);
  ASSERT_TRUE(r.is_array());
  ASSERT_EQ(r.size(), 4u);  // one reply per request, none for the notification
  EXPECT_EQ(r[0]["id"], 1);
  EXPECT_EQ(r[0]["error"]["code"], kCodeBatchRefused);
  EXPECT_EQ(r[1]["id"], 2);
  EXPECT_EQ(r[1]["error"]["code"], kCodeDenied);
  EXPECT_EQ(r[2]["id"], 3);
  EXPECT_EQ(r[3]["id"], 4);
  EXPECT_EQ(r[3]["error"]["code"], kCodeBatchRefused);
}

TEST(McpJudge, InvalidMessagesAreRefusedWithoutAsking) {
  std::vector<Action> seen;
  auto out = judge_with(inspect("{\"id\":1,\"method\":\"tools/call\""), {}, &seen);
  EXPECT_FALSE(out.forward);
  EXPECT_TRUE(seen.empty());
  auto r = json::parse(out.reply);
  EXPECT_TRUE(r["id"].is_null());
  EXPECT_EQ(r["error"]["code"], kCodeUninspectable);
  auto dup = judge_with(
      inspect(R"({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"a","name":"b"}})"),
      {}, &seen);
  EXPECT_FALSE(dup.forward);
  EXPECT_TRUE(seen.empty());
}

TEST(McpDechunk, CompleteNeedMoreTooLargeBad) {
  std::string body;
  size_t used = 0;
  std::string raw = "4\r\n{\"a\"\r\n3;ext=1\r\n:1}\r\n0\r\nX-T: 1\r\n\r\nNEXT";
  ASSERT_EQ(dechunk(raw, body, used, 100), Dechunk::Complete);
  EXPECT_EQ(body, "{\"a\":1}");
  EXPECT_EQ(raw.substr(used), "NEXT");
  EXPECT_EQ(dechunk("4\r\n{\"a", body, used, 100), Dechunk::NeedMore);
  EXPECT_EQ(dechunk("4\r\n{\"a\"\r\n0\r\n", body, used, 100), Dechunk::NeedMore);
  EXPECT_EQ(dechunk("ff\r\n", body, used, 100), Dechunk::TooLarge);
  EXPECT_EQ(dechunk("zz\r\n", body, used, 100), Dechunk::Bad);
  EXPECT_EQ(dechunk("2\r\nabXY", body, used, 100), Dechunk::Bad);
  EXPECT_EQ(dechunk("ffffffffffffffffff\r\n", body, used, 100), Dechunk::Bad);
}

TEST(McpHttp, WhichRequestsAreRead) {
  EXPECT_TRUE(is_json_post("POST", "application/json"));
  EXPECT_TRUE(is_json_post("POST", "Application/JSON; charset=utf-8"));
  EXPECT_TRUE(is_json_post("POST", "application/vnd.api+json"));
  EXPECT_FALSE(is_json_post("GET", "application/json"));
  EXPECT_FALSE(is_json_post("POST", "text/plain"));
  EXPECT_TRUE(has_mcp_signs("application/json, text/event-stream", false, false));
  EXPECT_TRUE(has_mcp_signs("", true, false));
  EXPECT_FALSE(has_mcp_signs("application/json", false, false));
}

}  // namespace
