#include "acp/proxy/consent_judge.hpp"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <optional>
#include <stdexcept>

#include "consent_test_support.hpp"
#include "getrandom_failure_support.hpp"

namespace {

namespace asio = boost::asio;
using acp::Action;
using acp::Judgement;
using acp::PolicyDecision;
using acp::Verdict;
using acp::audit::AuditLog;
using acp::testing::pump;
using acp::testing::read_lines;
using acp::testing::TempDir;
using nlohmann::json;

Action connect_to(const std::string& host) {
  Action a;
  a.host = host;
  a.port = 443;
  a.method = "CONNECT";
  a.session = "s1";
  return a;
}

PolicyDecision rule(Verdict v, int index = 2, int line = 14) {
  PolicyDecision d;
  d.verdict = v;
  d.rule_index = index;
  d.rule_line = line;
  d.rule_text = "{host: evil.com}";
  return d;
}

struct Fixture {
  TempDir dir;
  asio::io_context io;
  std::unique_ptr<AuditLog> audit;
  std::unique_ptr<acp::consent::ConsentGate> gate;
  std::unique_ptr<acp::consent::ConsentJudge> judge;
  std::string audit_path;

  explicit Fixture(std::function<PolicyDecision(const Action&)> policy) {
    audit_path = dir / "audit.jsonl";
    auto a = AuditLog::open(audit_path);
    if (!a.ok()) throw std::runtime_error(a.error().message());
    audit = std::move(*a);
    acp::consent::GateConfig cfg;
    cfg.session_id = "s1";
    cfg.grants_path = dir / "grants.json";
    gate = std::make_unique<acp::consent::ConsentGate>(io, cfg);
    judge = std::make_unique<acp::consent::ConsentJudge>(std::move(policy), *gate, *audit, "s1");
  }

  // Runs judge() and, the moment its Judgement exists, reads the last audit line.
  struct Seen {
    Judgement j;
    std::vector<std::string> lines_when_returned;
  };
  std::shared_ptr<std::optional<Seen>> run(const Action& a) {
    auto out = std::make_shared<std::optional<Seen>>();
    asio::co_spawn(
        io,
        [this, a, out]() -> asio::awaitable<void> {
          Judgement j = co_await judge->judge(a);
          *out = Seen{j, read_lines(audit_path)};
        },
        asio::detached);
    settle(*out);
    return out;
  }
  // Runs the io_context until `out` is set or nothing can set it soon: the audit line is
  // written on the log's writer thread and the judgement comes back here.
  template <typename T>
  void settle(const std::optional<T>& out) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    pump(io);
    while (!out.has_value() && std::chrono::steady_clock::now() < deadline) {
      io.restart();
      io.run_one_for(std::chrono::milliseconds(10));
    }
  }
};

TEST(ConsentJudge, PolicyAllowIsAuditedBeforeTheVerdict) {
  Fixture f([](const Action&) { return rule(Verdict::Allow, 0, 3); });
  auto s = f.run(connect_to("api.example"));
  ASSERT_TRUE(s->has_value());
  EXPECT_TRUE((*s)->j.allowed);
  ASSERT_EQ((*s)->lines_when_returned.size(), 1u);
  auto e = json::parse((*s)->lines_when_returned[0]);
  EXPECT_EQ(e["verdict"], "allow");
  EXPECT_EQ(e["decided_by"], "policy");
  EXPECT_EQ(e["session"], "s1");
  EXPECT_EQ(e["request_id"], (*s)->j.request_id);
  EXPECT_EQ(e["action"]["host"], "api.example");
  EXPECT_EQ(e["action"]["port"], 443);
  EXPECT_EQ(e["rule"]["index"], 0);
  EXPECT_EQ(e["rule"]["line"], 3);
  EXPECT_TRUE(e.contains("latency_ms"));
  EXPECT_TRUE(e.contains("timestamp"));
}

// In a child: with getrandom failing, a request the policy allows gets no audit id, so it is
// refused and audited as such rather than logged under an id that is not unique.
[[noreturn]] void judge_without_getrandom() {
  if (!acp::testing::block_getrandom()) ::_exit(10);
  const int code = [] {
    Fixture f([](const Action&) { return rule(Verdict::Allow); });
    auto seen = f.run(connect_to("example.com"));
    if (!seen->has_value()) return 11;
    const auto& [j, lines] = **seen;
    if (j.allowed) return 12;
    if (j.reason.find("getrandom") == std::string::npos) return 13;
    if (lines.empty() || json::parse(lines.back())["verdict"] != "deny") return 14;
    return 0;
  }();
  ::_exit(code);
}

TEST(ConsentJudge, WithoutRandomnessAnAllowedRequestIsRefused) {
  EXPECT_EXIT(judge_without_getrandom(), ::testing::ExitedWithCode(0), "");
}

TEST(ConsentJudge, PolicyDenyHasAReasonForHumans) {
  Fixture f([](const Action&) { return rule(Verdict::Deny); });
  auto s = f.run(connect_to("evil.com"));
  ASSERT_TRUE(s->has_value());
  EXPECT_FALSE((*s)->j.allowed);
  EXPECT_EQ((*s)->j.reason, "rule 3 (line 14) denies host evil.com:443");
  EXPECT_EQ(json::parse((*s)->lines_when_returned.back())["verdict"], "deny");
}

TEST(ConsentJudge, AskWaitsForTheHumanAndRecordsScopeAndId) {
  Fixture f([](const Action&) { return rule(Verdict::Ask); });
  auto s = f.run(connect_to("ask.example"));
  EXPECT_FALSE(s->has_value());
  EXPECT_TRUE(read_lines(f.audit_path).empty());  // nothing decided, nothing recorded yet
  auto p = f.gate->pending();
  ASSERT_EQ(p.size(), 1u);
  acp::consent::Answer a;
  a.approve = true;
  a.scope = acp::consent::Scope::Session;
  ASSERT_TRUE(f.gate->answer(p[0].id, a).ok());
  f.settle(*s);
  ASSERT_TRUE(s->has_value());
  EXPECT_TRUE((*s)->j.allowed);
  EXPECT_EQ((*s)->j.request_id, p[0].id);
  ASSERT_EQ((*s)->lines_when_returned.size(), 1u);
  auto e = json::parse((*s)->lines_when_returned[0]);
  EXPECT_EQ(e["decided_by"], "human");
  EXPECT_EQ(e["scope"], "session");
  EXPECT_EQ(e["request_id"], p[0].id);
  EXPECT_EQ(e["policy_verdict"], "ask");
}

TEST(ConsentJudge, APolicyThatThrowsDenies) {
  Fixture f([](const Action&) -> PolicyDecision { throw std::runtime_error("boom"); });
  auto s = f.run(connect_to("x.example"));
  ASSERT_TRUE(s->has_value());
  EXPECT_FALSE((*s)->j.allowed);
  EXPECT_EQ((*s)->j.reason, "policy error: boom");
  EXPECT_EQ(json::parse((*s)->lines_when_returned.back())["decided_by"], "error");
}

TEST(ConsentJudge, AnAuditLogThatCannotBeWrittenDenies) {
  Fixture f([](const Action&) { return rule(Verdict::Allow); });
  ASSERT_TRUE(f.judge->record_event({{"kind", "connect"}, {"comm", "curl"}}).ok());
  // record_event() is queued on the writer thread: wait for its line.
  for (int i = 0; i < 200 && read_lines(f.audit_path).empty(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_EQ(read_lines(f.audit_path).size(), 1u);
  struct stat before {};
  ASSERT_EQ(::stat(f.audit_path.c_str(), &before), 0);
  // In a child whose file size limit is the log's current size, every append fails (EFBIG).
  // fork() keeps only this thread: the child opens the log (and its writer thread) anew.
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    rlimit rl{static_cast<rlim_t>(before.st_size), static_cast<rlim_t>(before.st_size)};
    if (::setrlimit(RLIMIT_FSIZE, &rl) != 0) ::_exit(10);
    asio::io_context io;
    auto log = AuditLog::open(f.audit_path);
    if (!log) ::_exit(14);
    acp::consent::GateConfig cfg;
    cfg.session_id = "s1";
    cfg.grants_path = f.dir / "grants-child.json";
    acp::consent::ConsentGate gate(io, cfg);
    acp::consent::ConsentJudge judge([](const Action&) { return rule(Verdict::Allow); }, gate,
                                     **log, "s1");
    std::optional<Judgement> out;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> { out = co_await judge.judge(connect_to("api.example")); },
        asio::detached);
    for (int i = 0; i < 200 && !out; ++i) {
      io.restart();
      io.run_one_for(std::chrono::milliseconds(10));
    }
    if (!out) ::_exit(11);
    if (out->allowed) ::_exit(12);
    if (out->reason.rfind("audit log write failed: ", 0) != 0) ::_exit(13);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0);
  auto r = AuditLog::verify(f.audit_path);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->ok());
  EXPECT_EQ(r->lines_ok, 1u);
}

}  // namespace
