// The RequestJudge the proxy uses: the policy decides, `ask` goes to the consent gate, and the
// decision is in the audit log (written and flushed) before the verdict is returned. If the
// audit log cannot be written the request is denied: nothing leaves unrecorded.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "acp/proxy/audit_log.hpp"
#include "acp/proxy/consent_gate.hpp"
#include "acp/proxy/request_judge.hpp"

namespace acp::consent {

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

 private:
  Policy policy_;
  ConsentGate& gate_;
  audit::AuditLog& audit_;
  std::string session_;
};

// "rule 3 (line 14) denies host evil.com:443" / "the policy default denies ...": for humans.
std::string describe_policy_denial(const PolicyDecision& d, const Action& a);

}  // namespace acp::consent
