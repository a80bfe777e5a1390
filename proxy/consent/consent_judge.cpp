#include "acp/proxy/consent_judge.hpp"

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <exception>

#include "acp/util/random_id.hpp"

namespace acp::consent {

namespace asio = boost::asio;

namespace {

std::string rule_name(const PolicyDecision& d) {
  if (d.rule_index < 0) return "the policy default";
  std::string s = "rule " + std::to_string(d.rule_index + 1);
  if (d.rule_line > 0) s += " (line " + std::to_string(d.rule_line) + ")";
  return s;
}

std::string target(const Action& a) {
  if (a.kind != "http" || a.host.empty()) {
    std::string t = a.kind;
    if (!a.tool.empty()) t += " tool " + a.tool;
    if (!a.server.empty()) t += " on " + a.server;
    if (!a.name.empty()) t += " " + a.name;
    if (!a.host.empty()) t += " host " + a.host;
    return t;
  }
  bool v6 = a.host.find(':') != std::string::npos;
  return "host " + (v6 ? "[" + a.host + "]" : a.host) + ":" + std::to_string(a.port);
}

}  // namespace

const char* to_string(Decider d) {
  switch (d) {
    case Decider::Policy:
      return "policy";
    case Decider::Human:
      return "human";
    case Decider::Grant:
      return "grant";
    case Decider::Timeout:
      return "timeout";
    case Decider::Error:
      return "error";
  }
  return "error";
}

DecisionMetrics& DecisionMetrics::operator+=(const DecisionMetrics& o) {
  for (size_t v = 0; v < 2; ++v)
    for (size_t d = 0; d < kDeciders; ++d) count[v][d] += o.count[v][d];
  for (size_t d = 0; d < kDeciders; ++d) latency[d] += o.latency[d];
  return *this;
}

DecisionMetrics ConsentJudge::metrics() const {
  DecisionMetrics m;
  for (size_t v = 0; v < 2; ++v)
    for (size_t d = 0; d < kDeciders; ++d)
      m.count[v][d] = decisions_[v][d].load(std::memory_order_relaxed);
  for (size_t d = 0; d < kDeciders; ++d) m.latency[d] = latency_[d].snapshot();
  return m;
}

void ConsentJudge::count(bool allowed, Decider d, std::chrono::steady_clock::duration took) {
  const auto i = static_cast<size_t>(d);
  decisions_[allowed ? 1 : 0][i].fetch_add(1, std::memory_order_relaxed);
  latency_[i].observe(took);
}

std::string describe_policy_denial(const PolicyDecision& d, const Action& a) {
  return rule_name(d) + " denies " + target(a);
}

ConsentJudge::ConsentJudge(Policy policy, ConsentGate& gate, audit::AuditLog& audit,
                           std::string session_id)
    : policy_(std::move(policy)), gate_(gate), audit_(audit), session_(std::move(session_id)) {}

asio::awaitable<Judgement> ConsentJudge::judge(Action action) {
  auto start = std::chrono::steady_clock::now();
  Judgement j;
  PolicyDecision d;
  std::string decided_by = "policy", scope, error_reason;
  bool policy_ok = true;
  try {
    d = policy_(action);
  } catch (const std::exception& e) {
    policy_ok = false;
    error_reason = std::string("policy error: ") + e.what();
  } catch (...) {
    policy_ok = false;
    error_reason = "policy error";
  }
  j.host_named = d.host_named;
  j.inside_path = d.inside_path;
  j.inside_mcp = d.inside_mcp;

  if (!policy_ok) {
    j.allowed = false;
    j.reason = error_reason;
    decided_by = "error";
  } else if (d.verdict == Verdict::Allow) {
    j.allowed = true;
    j.reason = rule_name(d) + " allows " + target(action);
  } else if (d.verdict == Verdict::Deny) {
    j.allowed = false;
    j.reason = describe_policy_denial(d, action);
  } else {
    ConsentOutcome o;
    try {
      o = co_await gate_.ask(action, d);
    } catch (const std::exception& e) {
      o = {false, "", "error", std::string("consent gate error: ") + e.what(), "", {}, ""};
    }
    j.allowed = o.approved;
    j.reason = o.reason;
    j.request_id = o.request_id;
    decided_by = o.decided_by;
    scope = o.scope;
  }
  if (j.request_id.empty()) {
    // The id ties the audit entry to the agent's refusal page and the logs; without one the
    // request is refused rather than recorded under an id that is not unique.
    auto id = util::random_hex(4);
    if (id) {
      j.request_id = std::move(*id);
    } else {
      j.allowed = false;
      j.reason = "no request id: " + id.error().message();
      decided_by = "error";
    }
  }

  auto latency = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - start);
  nlohmann::json entry{
      {"kind", "request"},
      {"action", action_to_json(action)},
      {"verdict", j.allowed ? "allow" : "deny"},
      {"session", session_},
      {"request_id", j.request_id},
      {"rule", {{"index", d.rule_index}, {"line", d.rule_line}, {"text", d.rule_text}}},
      {"policy_verdict", policy_ok ? to_string(d.verdict) : "error"},
      {"scope", scope},
      {"decided_by", decided_by},
      {"latency_ms", latency.count()},
      {"reason", j.reason}};
  Status st = make_error("audit log append threw");
  try {
    st = co_await audit_.append_async(std::move(entry));
  } catch (const std::exception& e) {
    st = make_error(std::string("audit log append threw: ") + e.what());
  }
  if (!st) {
    // Fail closed: a request whose decision cannot be recorded does not leave.
    j.allowed = false;
    const int e = st.error().err;
    const bool full = e == ENOSPC || e == EDQUOT || e == EFBIG;
    j.reason = std::string("audit log write failed: ") + (full ? "the audit log is full: " : "") +
               st.error().message();
    // The operator must learn why everything is being denied, not only the agent.
    std::fprintf(stderr, "acp: %s (request denied)\n", j.reason.c_str());
  }
  const Decider decider = decided_by == "policy"          ? Decider::Policy
                          : decided_by == "timeout"       ? Decider::Timeout
                          : decided_by != "human"         ? Decider::Error
                          : scope.rfind("grant:", 0) == 0 ? Decider::Grant
                                                          : Decider::Human;
  count(j.allowed, decider, std::chrono::steady_clock::now() - start);
  co_return j;
}

Status ConsentJudge::record_event(nlohmann::json event) {
  if (!event.is_object()) return make_error("audit event is not a JSON object");
  event["session"] = session_;
  audit_.append_detached(std::move(event), [](const Error& e) {
    std::fprintf(stderr, "acp: audit log: kernel event not recorded: %s\n", e.message().c_str());
  });
  return {};
}

}  // namespace acp::consent
