// A consent channel: one way to reach a human (the web page, a webhook, Telegram, the
// operator's terminal). Any number run at once. The gate tells every channel about each new
// pending request and about how each one ended; a channel answers through
// ConsentGate::answer(). The first answer wins: a later answer gets "unknown request id", and
// every channel learns the result from on_resolved() (to update its page, edit its message).
// Everything runs on the gate's io_context. See docs/consent.md.
#pragma once

#include <string>

#include "acp/proxy/consent_gate.hpp"
#include "acp/util/result.hpp"

namespace acp::consent {

class Channel : public GateObserver {
 public:
  ~Channel() override = default;
  // "web", "webhook", "telegram", "prompt": for logs and the audit trail (Answer::by).
  virtual std::string name() const = 0;
  // Starts serving/polling. A channel that cannot start fails the session's start: the human
  // would otherwise never be asked. Called once, on the io_context, before any request.
  virtual Status start() = 0;
  // Stops every timer, socket and outstanding call; no callbacks after it returns.
  virtual void stop() = 0;
  // One line for `acp run`/`acp status` to print, e.g. "web: http://127.0.0.1:8444/?token=…".
  virtual std::string describe() const { return name(); }
};

}  // namespace acp::consent
