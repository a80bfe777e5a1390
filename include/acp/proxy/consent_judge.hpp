// The RequestJudge the proxy uses: the policy decides, `ask` goes to the consent gate, and the
// decision is in the audit log (written and flushed) before the verdict is returned. If the
// audit log cannot be written the request is denied: nothing leaves unrecorded.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "acp/proxy/audit_log.hpp"
#include "acp/proxy/consent_gate.hpp"
#include "acp/proxy/request_judge.hpp"
#include "acp/util/histogram.hpp"

namespace acp::consent {

// Who decided, as the audit line's decided_by and scope say: the policy; a human answering
// the ask; an earlier human approval that covers it (scope "grant:<scope>"); nobody in time;
// an error (policy, gate, request id).
enum class Decider { Policy, Human, Grant, Timeout, Error };
inline constexpr size_t kDeciders = 5;
const char* to_string(Decider d);  // "policy" | "human" | "grant" | "timeout" | "error"

// What a judge decided so far, by verdict (what happened: an audit failure turns an allow into
// a deny) and decider, and how long each decision took, audit sync included.
struct DecisionMetrics {
  std::array<std::array<uint64_t, kDeciders>, 2> count{};  // [allowed][decider]
  std::array<util::HistogramSnapshot, kDeciders> latency;
  DecisionMetrics& operator+=(const DecisionMetrics& o);
};

class ConsentJudge : public RequestJudge {
 public:
  using Policy = std::function<PolicyDecision(const Action&)>;
  ConsentJudge(Policy policy, ConsentGate& gate, audit::AuditLog& audit, std::string session_id);

  boost::asio::awaitable<Judgement> judge(Action action) override;

  // Any other event for the audit log (e.g. {"kind":"connect", pid, comm, dst...} for a
  // connect() the kernel refused); the session id is added. Queued on the audit log's writer
  // thread, so a storm of refused connects never stalls the proxy; a failed append is
  // reported on stderr (the refusal itself already happened in the kernel).
  Status record_event(nlohmann::json event);

  // Replaces the policy (SIGHUP reload). Runs on the io_context like judge().
  void set_policy(Policy p) { policy_ = std::move(p); }

  // Safe from any thread.
  DecisionMetrics metrics() const;

 private:
  void count(bool allowed, Decider d, std::chrono::steady_clock::duration took);

  Policy policy_;
  ConsentGate& gate_;
  audit::AuditLog& audit_;
  std::string session_;
  std::array<std::array<std::atomic<uint64_t>, kDeciders>, 2> decisions_{};
  std::array<util::Histogram, kDeciders> latency_;
};

// "rule 3 (line 14) denies host evil.com:443" / "the policy default denies ...": for humans.
std::string describe_policy_denial(const PolicyDecision& d, const Action& a);

}  // namespace acp::consent
