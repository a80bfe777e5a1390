#include "acp/proxy/consent_gate.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include "consent_test_support.hpp"
#include "getrandom_failure_support.hpp"

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

Action connect_to(const std::string& host, uint16_t port = 443,
                  const std::string& method = "CONNECT") {
  Action a;
  a.host = host;
  a.port = port;
  a.method = method;
  a.session = "s1";
  return a;
}

PolicyDecision ask_rule(std::chrono::seconds timeout = std::chrono::seconds(120)) {
  PolicyDecision d;
  d.verdict = Verdict::Ask;
  d.rule_index = 2;
  d.rule_line = 9;
  d.rule_text = "{kind: http, host: \"*\"}";
  d.timeout = timeout;
  return d;
}

// A gate with a fake clock for grant expiry, and helpers that start asks on its io_context.
struct Fixture {
  TempDir dir;
  asio::io_context io;
  std::chrono::steady_clock::time_point clock = std::chrono::steady_clock::now();
  std::unique_ptr<ConsentGate> gate;

  explicit Fixture(std::string grants = "") {
    gate = std::make_unique<ConsentGate>(io, config(grants));
  }
  GateConfig config(std::string grants = "") {
    GateConfig cfg;
    cfg.session_id = "s1";
    cfg.grants_path = grants.empty() ? dir / "grants.json" : grants;
    cfg.now = [this] { return clock; };
    return cfg;
  }
  std::shared_ptr<std::optional<ConsentOutcome>> ask(const Action& a,
                                                     PolicyDecision d = ask_rule()) {
    auto out = std::make_shared<std::optional<ConsentOutcome>>();
    asio::co_spawn(
        io, [this, a, d, out]() -> asio::awaitable<void> { *out = co_await gate->ask(a, d); },
        asio::detached);
    pump(io);
    return out;
  }
  std::string only_pending_id() {
    auto p = gate->pending();
    EXPECT_EQ(p.size(), 1u);
    return p.empty() ? "" : p[0].id;
  }
  void approve(Scope scope, std::chrono::seconds d = std::chrono::seconds(0)) {
    Answer a;
    a.approve = true;
    a.scope = scope;
    a.duration = d;
    auto st = gate->answer(only_pending_id(), a);
    ASSERT_TRUE(st.ok()) << st.error().message();
    pump(io);
  }
};

// In a child: with getrandom failing, an ask gets no request id, so it is denied as an error
// and never pending (a human could not tell it apart). Exits 0 when so.
[[noreturn]] void ask_without_getrandom() {
  if (!acp::testing::block_getrandom()) ::_exit(10);
  const int code = [] {
    Fixture f;
    auto out = f.ask(connect_to("example.com"));
    if (!out->has_value()) return 11;
    const ConsentOutcome& o = **out;
    if (o.approved || o.decided_by != "error") return 12;
    if (o.reason.find("getrandom") == std::string::npos) return 13;
    if (!f.gate->pending().empty()) return 14;
    return 0;
  }();
  ::_exit(code);
}

TEST(ConsentGate, WithoutRandomnessAnAskIsDeniedNotPending) {
  EXPECT_EXIT(ask_without_getrandom(), ::testing::ExitedWithCode(0), "");
}

TEST(ConsentGate, IdenticalAsksCoalesceIntoOnePendingAndOneAnswerReleasesAll) {
  Fixture f;
  int changes = 0;
  f.gate->on_pending_change([&] { ++changes; });
  auto a = f.ask(connect_to("api.example.com"));
  auto b = f.ask(connect_to("api.example.com"));
  auto other = f.ask(connect_to("api.example.com", 443, "GET"));  // another method: its own
  ASSERT_EQ(f.gate->pending().size(), 2u);
  EXPECT_FALSE(a->has_value());
  EXPECT_FALSE(b->has_value());
  std::string id;
  for (const auto& p : f.gate->pending()) {
    if (p.action.method == "CONNECT") {
      EXPECT_EQ(p.waiters, 2);
      EXPECT_EQ(p.rule_text, "{kind: http, host: \"*\"}");
      EXPECT_EQ(p.session, "s1");
      EXPECT_EQ(p.id.size(), 8u);
      id = p.id;
    }
  }
  Answer ans;
  ans.approve = true;
  ASSERT_TRUE(f.gate->answer(id, ans).ok());
  pump(f.io);
  ASSERT_TRUE(a->has_value() && b->has_value());
  EXPECT_TRUE((*a)->approved);
  EXPECT_TRUE((*b)->approved);
  EXPECT_EQ((*a)->scope, "once");
  EXPECT_EQ((*a)->decided_by, "human");
  EXPECT_EQ((*a)->request_id, id);
  EXPECT_EQ((*b)->request_id, id);
  EXPECT_FALSE(other->has_value());  // a once-approval covers nothing else
  EXPECT_EQ(f.gate->pending().size(), 1u);
  EXPECT_EQ(changes, 3);  // two appeared, one went
}

// Issue 13: the human saw `GET /status` (2 waiters), approved once, and `GET /admin/delete-all`
// rode along. Two asks share a prompt only when everything shown and matched is equal.
TEST(ConsentGate, DifferentPathsFromTwoClientsAreTwoEntriesAndOneAnswerReleasesOnlyItsOwn) {
  Fixture f;
  Action status = connect_to("api.example", 80, "GET");
  status.path = "/status";
  status.client = "127.0.0.1";
  Action wipe = connect_to("api.example", 80, "GET");
  wipe.path = "/admin/delete-all";
  wipe.client = "127.0.0.2";
  auto a = f.ask(status);
  auto b = f.ask(wipe);
  auto pending = f.gate->pending();
  ASSERT_EQ(pending.size(), 2u);
  std::string status_id;
  for (const auto& p : pending) {
    EXPECT_EQ(p.waiters, 1);
    if (p.action.path == "/status") status_id = p.id;
  }
  ASSERT_FALSE(status_id.empty());
  Answer ans;
  ans.approve = true;
  ASSERT_TRUE(f.gate->answer(status_id, ans).ok());
  pump(f.io);
  ASSERT_TRUE(a->has_value());
  EXPECT_TRUE((*a)->approved);
  EXPECT_FALSE(b->has_value()) << "approving /status released /admin/delete-all";
  ASSERT_EQ(f.gate->pending().size(), 1u);
  EXPECT_EQ(f.gate->pending()[0].action.path, "/admin/delete-all");
  // Denying the other one denies it alone.
  Answer no;
  ASSERT_TRUE(f.gate->answer(f.gate->pending()[0].id, no).ok());
  pump(f.io);
  ASSERT_TRUE(b->has_value());
  EXPECT_FALSE((*b)->approved);
}

// The class, not the example: an ask that differs from a pending one in any single field of the
// Action, or in the rule that asked, is its own entry with its own answer.
TEST(ConsentGate, AnAskThatDiffersInAnyFieldOrRuleIsItsOwnEntry) {
  Action base;
  base.kind = "http";
  base.host = "api.example";
  base.port = 80;
  base.method = "GET";
  base.path = "/status?x=1";
  base.session = "s1";
  base.client = "127.0.0.1";
  const std::vector<std::pair<const char*, std::function<void(Action&)>>> changes = {
      {"kind", [](Action& a) { a.kind = "mcp"; }},
      {"host", [](Action& a) { a.host = "www.api.example"; }},
      {"port", [](Action& a) { a.port = 8080; }},
      {"method", [](Action& a) { a.method = "POST"; }},
      {"path", [](Action& a) { a.path = "/admin/delete-all"; }},
      {"query", [](Action& a) { a.path = "/status?x=2"; }},
      {"session", [](Action& a) { a.session = "s2"; }},
      {"client", [](Action& a) { a.client = "127.0.0.2"; }},
      {"name", [](Action& a) { a.name = "http:GET"; }},
      {"args", [](Action& a) { a.args = "{\"path\":\"/etc/shadow\"}"; }},
      {"tool", [](Action& a) { a.tool = "delete_file"; }},
      {"server", [](Action& a) { a.server = "files"; }},
  };
  for (const auto& [field, change] : changes) {
    Fixture f;
    Action other = base;
    change(other);
    auto a = f.ask(base);
    auto b = f.ask(other);
    ASSERT_EQ(f.gate->pending().size(), 2u) << field << " differs but the asks were coalesced";
    for (const auto& p : f.gate->pending())
      if (p.action == base) {
        Answer ans;
        ans.approve = true;
        ASSERT_TRUE(f.gate->answer(p.id, ans).ok());
      }
    pump(f.io);
    EXPECT_TRUE(a->has_value()) << field;
    EXPECT_FALSE(b->has_value()) << field << ": one approval released the other ask";
  }
  // The same request decided by another rule (another timeout, another line) is another ask.
  Fixture f;
  auto a = f.ask(base);
  PolicyDecision other_rule = ask_rule();
  other_rule.rule_index = 3;
  other_rule.rule_line = 12;
  other_rule.rule_text = "{kind: http, host: \"api.example\"}";
  auto b = f.ask(base, other_rule);
  EXPECT_EQ(f.gate->pending().size(), 2u);
  // And the identical ask still joins: one entry, two waiters.
  auto c = f.ask(base);
  int waiters = 0;
  for (const auto& p : f.gate->pending()) waiters = std::max(waiters, p.waiters);
  EXPECT_EQ(f.gate->pending().size(), 2u);
  EXPECT_EQ(waiters, 2);
}

TEST(ConsentGate, OnceIsNotRemembered) {
  Fixture f;
  auto a = f.ask(connect_to("x.example"));
  f.approve(Scope::Once);
  ASSERT_TRUE(a->has_value() && (*a)->approved);
  auto b = f.ask(connect_to("x.example"));
  EXPECT_FALSE(b->has_value());
  EXPECT_EQ(f.gate->pending().size(), 1u);
}

TEST(ConsentGate, DurationCoversTheWwwTwinUntilItExpires) {
  Fixture f;
  auto a = f.ask(connect_to("example.com"));
  f.approve(Scope::Duration, std::chrono::seconds(600));
  ASSERT_TRUE(a->has_value() && (*a)->approved);
  EXPECT_EQ((*a)->scope, "duration");

  auto same = f.ask(connect_to("example.com"));
  auto twin = f.ask(connect_to("www.example.com"));
  ASSERT_TRUE(same->has_value() && twin->has_value());
  EXPECT_TRUE((*same)->approved);
  EXPECT_EQ((*same)->scope, "grant:duration");
  EXPECT_TRUE((*twin)->approved);
  auto other_port = f.ask(connect_to("example.com", 8443));
  auto cousin = f.ask(connect_to("api.example.com"));
  EXPECT_FALSE(other_port->has_value());
  EXPECT_FALSE(cousin->has_value());

  f.clock += std::chrono::seconds(601);
  auto late = f.ask(connect_to("example.com"));
  EXPECT_FALSE(late->has_value());
}

TEST(ConsentGate, DurationDefaultsTo180Seconds) {
  Fixture f;
  auto a = f.ask(connect_to("www.example.org"));
  f.approve(Scope::Duration);
  auto twin = f.ask(connect_to("example.org"));
  EXPECT_TRUE(twin->has_value());
  f.clock += std::chrono::seconds(179);
  EXPECT_TRUE(f.ask(connect_to("example.org"))->has_value());
  f.clock += std::chrono::seconds(2);
  EXPECT_FALSE(f.ask(connect_to("example.org"))->has_value());
}

TEST(ConsentGate, SessionGrantLastsForTheGateButNotTheNextSession) {
  Fixture f;
  auto a = f.ask(connect_to("s.example"));
  f.approve(Scope::Session);
  f.clock += std::chrono::hours(100);
  auto b = f.ask(connect_to("s.example"));
  ASSERT_TRUE(b->has_value());
  EXPECT_EQ((*b)->scope, "grant:session");
  EXPECT_FALSE(f.ask(connect_to("www.s.example"))->has_value());  // no twin for the session

  ConsentGate next(f.io, f.config());
  std::optional<ConsentOutcome> out;
  asio::co_spawn(
      f.io,
      [&]() -> asio::awaitable<void> {
        out = co_await next.ask(connect_to("s.example"), ask_rule());
      },
      asio::detached);
  pump(f.io);
  EXPECT_FALSE(out.has_value());
}

TEST(ConsentGate, AlwaysIsPersistedRootOnlyAndReloadedByANewGate) {
  Fixture f;
  auto a = f.ask(connect_to("always.example"));
  f.approve(Scope::Always);
  ASSERT_TRUE(a->has_value() && (*a)->approved);
  std::string path = f.dir / "grants.json";
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto j = acp::consent::read_grants_file(path);
  ASSERT_TRUE(j.ok());
  ASSERT_EQ((*j)["grants"].size(), 1u);
  EXPECT_EQ((*j)["grants"][0]["host"], "always.example");

  asio::io_context io2;
  ConsentGate again(io2, f.config());
  std::optional<ConsentOutcome> out;
  asio::co_spawn(
      io2,
      [&]() -> asio::awaitable<void> {
        out = co_await again.ask(connect_to("always.example"), ask_rule());
      },
      asio::detached);
  pump(io2);
  ASSERT_TRUE(out.has_value());
  EXPECT_TRUE(out->approved);
  EXPECT_EQ(out->scope, "grant:always");

  // A grants file others can write is ignored: the human is asked again.
  ASSERT_EQ(::chmod(path.c_str(), 0666), 0);
  std::optional<ConsentOutcome> out2;
  asio::co_spawn(
      io2,
      [&]() -> asio::awaitable<void> {
        out2 = co_await again.ask(connect_to("always.example"), ask_rule());
      },
      asio::detached);
  pump(io2);
  EXPECT_FALSE(out2.has_value());
  ASSERT_TRUE(again.grants_error().has_value());
  EXPECT_NE(again.grants_error()->message().find("writable"), std::string::npos);
}

TEST(ConsentGate, TimeoutDeniesAndIsNeverRemembered) {
  Fixture f;
  std::optional<ConsentOutcome> first, second;
  asio::co_spawn(
      f.io,
      [&]() -> asio::awaitable<void> {
        first = co_await f.gate->ask(connect_to("slow.example"), ask_rule(std::chrono::seconds(0)));
        second =
            co_await f.gate->ask(connect_to("slow.example"), ask_rule(std::chrono::seconds(0)));
      },
      asio::detached);
  f.io.run();  // runs until both deadlines have passed
  ASSERT_TRUE(first.has_value() && second.has_value());
  EXPECT_FALSE(first->approved);
  EXPECT_EQ(first->decided_by, "timeout");
  EXPECT_NE(first->reason.find("timed out after 0 s"), std::string::npos) << first->reason;
  EXPECT_FALSE(second->approved);
  EXPECT_EQ(second->decided_by, "timeout");  // asked again: the timeout left no deny rule
  EXPECT_NE(first->request_id, second->request_id);
  EXPECT_TRUE(f.gate->pending().empty());
}

TEST(ConsentGate, DenyCarriesTheOperatorsReasonAndIsNotRemembered) {
  Fixture f;
  auto a = f.ask(connect_to("evil.example"));
  Answer ans;
  ans.approve = false;
  ans.reason = "not today";
  ASSERT_TRUE(f.gate->answer(f.only_pending_id(), ans).ok());
  pump(f.io);
  ASSERT_TRUE(a->has_value());
  EXPECT_FALSE((*a)->approved);
  EXPECT_EQ((*a)->reason, "denied by operator: not today");
  EXPECT_FALSE(f.ask(connect_to("evil.example"))->has_value());
}

TEST(ConsentGate, ALastingApprovalReleasesOtherPendingAsksItCovers) {
  Fixture f;
  auto get = f.ask(connect_to("api.example", 80, "GET"));
  auto post = f.ask(connect_to("api.example", 80, "POST"));
  ASSERT_EQ(f.gate->pending().size(), 2u);
  Answer ans;
  ans.approve = true;
  ans.scope = Scope::Session;
  ASSERT_TRUE(f.gate->answer(f.gate->pending()[0].id, ans).ok());
  pump(f.io);
  ASSERT_TRUE(get->has_value() && post->has_value());
  EXPECT_TRUE((*get)->approved && (*post)->approved);
  EXPECT_TRUE(f.gate->pending().empty());
}

TEST(ConsentGate, UnknownIdIsAnErrorAndShutdownDeniesWaiters) {
  Fixture f;
  EXPECT_FALSE(f.gate->answer("deadbeef", Answer{}).ok());
  auto a = f.ask(connect_to("x.example"));
  f.gate.reset();
  pump(f.io);
  ASSERT_TRUE(a->has_value());
  EXPECT_FALSE((*a)->approved);
  EXPECT_EQ((*a)->decided_by, "error");
}

}  // namespace

namespace observers {

// Records what the gate tells an observer; can answer from on_request (an instant channel).
struct Recorder : acp::consent::GateObserver {
  std::vector<std::string> requests;
  std::vector<std::pair<std::string, ConsentOutcome>> resolved;
  ConsentGate* answer_with = nullptr;
  void on_request(const acp::consent::PendingInfo& p) override {
    requests.push_back(p.id + " " + p.action.host);
    if (answer_with) {
      Answer a;
      a.approve = true;
      a.by = "recorder";
      ASSERT_TRUE(answer_with->answer(p.id, a).ok());
    }
  }
  void on_resolved(const acp::consent::PendingInfo& p, const ConsentOutcome& o) override {
    resolved.emplace_back(p.id, o);
  }
};

TEST(ConsentGateObservers, EveryObserverSeesEachNewRequestOnceAndHowItEnded) {
  Fixture f;
  Recorder r1, r2;
  f.gate->add_observer(&r1);
  f.gate->add_observer(&r2);
  auto a = f.ask(connect_to("api.example.com"));
  auto b = f.ask(connect_to("api.example.com"));  // joins: no second on_request
  ASSERT_EQ(r1.requests.size(), 1u);
  ASSERT_EQ(r2.requests.size(), 1u);
  const std::string id = f.only_pending_id();
  EXPECT_EQ(r1.requests[0], id + " api.example.com");
  f.approve(Scope::Once);
  ASSERT_EQ(r1.resolved.size(), 1u);
  ASSERT_EQ(r2.resolved.size(), 1u);
  EXPECT_EQ(r1.resolved[0].first, id);
  EXPECT_TRUE(r1.resolved[0].second.approved);
  EXPECT_EQ(r1.resolved[0].second.scope, "once");
  // The first answer wins: a second channel answering the same id is told it is gone.
  Answer late;
  late.approve = false;
  EXPECT_FALSE(f.gate->answer(id, late).ok());
  ASSERT_TRUE(a->has_value() && b->has_value());
  EXPECT_TRUE((*b)->approved);
  f.gate->remove_observer(&r1);
  f.gate->remove_observer(&r2);
}

TEST(ConsentGateObservers, TimeoutAndShutdownAreReportedAsTheirOutcome) {
  Fixture f;
  Recorder r;
  f.gate->add_observer(&r);
  auto a = f.ask(connect_to("slow.example.com"), ask_rule(std::chrono::seconds(0)));
  for (int i = 0; i < 100 && !a->has_value(); ++i) pump(f.io);
  ASSERT_TRUE(a->has_value());
  ASSERT_EQ(r.resolved.size(), 1u);
  EXPECT_FALSE(r.resolved[0].second.approved);
  EXPECT_EQ(r.resolved[0].second.decided_by, "timeout");
  auto b = f.ask(connect_to("other.example.com"));
  f.gate->shutdown("channel down");
  pump(f.io);
  ASSERT_EQ(r.resolved.size(), 2u);
  EXPECT_EQ(r.resolved[1].second.decided_by, "error");
  EXPECT_EQ(r.resolved[1].second.reason, "channel down");
  f.gate->remove_observer(&r);
}

TEST(ConsentGateObservers, AnObserverMayAnswerAtOnceAndLaterObserversAreNotAskedForIt) {
  Fixture f;
  Recorder first, second;
  first.answer_with = f.gate.get();
  f.gate->add_observer(&first);
  f.gate->add_observer(&second);
  auto a = f.ask(connect_to("api.example.com"));
  ASSERT_TRUE(a->has_value());
  EXPECT_TRUE((*a)->approved);
  EXPECT_TRUE(second.requests.empty());
  ASSERT_EQ(second.resolved.size(), 1u);  // but it is told how it ended
  EXPECT_TRUE(f.gate->pending().empty());
  f.gate->remove_observer(&first);
  f.gate->remove_observer(&second);
}

}  // namespace observers
