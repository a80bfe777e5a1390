// The consent gate with MCP tool calls: asks coalesce only when server, tool and arguments are
// the same, and a grant covers one tool on one server (never every MCP call).
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include "acp/proxy/consent_gate.hpp"
#include "consent_test_support.hpp"

namespace {

namespace asio = boost::asio;
using acp::Action;
using acp::PolicyDecision;
using acp::Verdict;
using acp::consent::Answer;
using acp::consent::ConsentGate;
using acp::consent::ConsentOutcome;
using acp::consent::GateConfig;
using acp::consent::Scope;
using acp::testing::pump;
using acp::testing::TempDir;

Action tool(const std::string& server, const std::string& name, const std::string& args = "{}") {
  Action a;
  a.kind = "mcp";
  a.server = server;
  a.tool = name;
  a.args = args;
  a.session = "s1";
  return a;
}

struct Fixture {
  TempDir dir;
  asio::io_context io;
  std::unique_ptr<ConsentGate> gate;
  Fixture() {
    GateConfig cfg;
    cfg.session_id = "s1";
    cfg.grants_path = dir / "grants.json";
    gate = std::make_unique<ConsentGate>(io, cfg);
  }
  std::shared_ptr<std::optional<ConsentOutcome>> ask(const Action& a) {
    PolicyDecision d;
    d.verdict = Verdict::Ask;
    auto out = std::make_shared<std::optional<ConsentOutcome>>();
    asio::co_spawn(
        io, [this, a, d, out]() -> asio::awaitable<void> { *out = co_await gate->ask(a, d); },
        asio::detached);
    pump(io);
    return out;
  }
  void approve_first(Scope scope) {
    Answer ans;
    ans.approve = true;
    ans.scope = scope;
    ASSERT_TRUE(gate->answer(gate->pending().at(0).id, ans).ok());
    pump(io);
  }
};

TEST(ConsentMcp, OnlyIdenticalToolCallsCoalesce) {
  Fixture f;
  auto a = f.ask(tool("files", "delete_file", R"({"path":"/a"})"));
  auto b = f.ask(tool("files", "delete_file", R"({"path":"/a"})"));
  auto c = f.ask(tool("files", "delete_file", R"({"path":"/b"})"));
  auto d = f.ask(tool("other", "delete_file", R"({"path":"/a"})"));
  auto e = f.ask(tool("files", "echo", R"({"path":"/a"})"));
  EXPECT_EQ(f.gate->pending().size(), 4u);
  f.gate->shutdown("test over");
  pump(f.io);
}

TEST(ConsentMcp, ASessionGrantCoversOneToolOnOneServer) {
  Fixture f;
  auto a = f.ask(tool("files", "delete_file", R"({"path":"/a"})"));
  f.approve_first(Scope::Session);
  ASSERT_TRUE(a->has_value() && (*a)->approved);
  auto same_tool = f.ask(tool("files", "delete_file", R"({"path":"/other"})"));
  ASSERT_TRUE(same_tool->has_value());
  EXPECT_EQ((*same_tool)->scope, "grant:session");
  EXPECT_FALSE(f.ask(tool("files", "write_file"))->has_value());
  EXPECT_FALSE(f.ask(tool("shell", "delete_file"))->has_value());
  f.gate->shutdown("test over");
  pump(f.io);
}

TEST(ConsentMcp, AnAlwaysGrantIsPersistedWithServerAndTool) {
  Fixture f;
  auto a = f.ask(tool("files", "delete_file"));
  f.approve_first(Scope::Always);
  ASSERT_TRUE(a->has_value() && (*a)->approved);
  auto j = acp::consent::read_grants_file(f.dir / "grants.json");
  ASSERT_TRUE(j.ok());
  ASSERT_EQ((*j)["grants"].size(), 1u);
  EXPECT_EQ((*j)["grants"][0]["server"], "files");
  EXPECT_EQ((*j)["grants"][0]["tool"], "delete_file");
  // A new gate (the next session) reads it back: this tool is covered, another is not.
  GateConfig cfg;
  cfg.session_id = "s2";
  cfg.grants_path = f.dir / "grants.json";
  ConsentGate next(f.io, cfg);
  std::optional<ConsentOutcome> covered, other;
  PolicyDecision d;
  d.verdict = Verdict::Ask;
  asio::co_spawn(
      f.io,
      [&]() -> asio::awaitable<void> {
        covered = co_await next.ask(tool("files", "delete_file"), d);
      },
      asio::detached);
  asio::co_spawn(
      f.io,
      [&]() -> asio::awaitable<void> { other = co_await next.ask(tool("files", "rm_rf"), d); },
      asio::detached);
  pump(f.io);
  ASSERT_TRUE(covered.has_value());
  EXPECT_TRUE(covered->approved);
  EXPECT_FALSE(other.has_value());
  next.shutdown("test over");
  f.gate->shutdown("test over");
  pump(f.io);
}

}  // namespace
