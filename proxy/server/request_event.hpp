// Internal to proxy/server: one request's event (docs/proxy.md, "Counters and events") and
// what a refusal answers. Connection::refuse() is the one place that sends a Refusal, and it
// records it in the event (and the audit log) in the same step, so the answer the client got,
// the event and the audit entry cannot disagree.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "acp/proxy/action.hpp"
#include "acp/proxy/request_target.hpp"

namespace acp::proxy {

struct Refusal {
  Refusal(unsigned status, std::string error, std::string reason, std::string request_id = {},
          bool close = true)
      : status(status),
        error(std::move(error)),
        reason(std::move(reason)),
        request_id(std::move(request_id)),
        close(close) {}

  unsigned status = 0;
  std::string error;       // the JSON body's "error" (docs/proxy.md, "Refusals")
  std::string reason;      // its "reason", also the event's and the audit entry's
  std::string request_id;  // X-ACP-Request-Id, when a judgement gave one
  bool close = true;       // false only when the client asked for keep-alive and sent its body
  // False: the client already holds a "200 Connection Established" and speaks something ACP
  // cannot answer in. Nothing is sent, both sides are closed; the event keeps its 200.
  bool answer = true;
  nlohmann::json audit;  // null (a judgement already audited it), or the entry refuse() writes
};

class Connection;

class RequestEvent {
 public:
  using Clock = std::chrono::steady_clock;

  // Made once the request's head has arrived: the request's clock starts here.
  RequestEvent(uint64_t id, std::string_view client)
      : json_{{"event", "request"}, {"id", id}, {"client", std::string(client)}},
        start_(Clock::now()) {}

  // What the request is: method, host, port, path, tunnel, tls, mcp, bytes_up, bytes_down...
  template <class Value>
  void note(const char* key, Value&& value) {
    json_[key] = std::forward<Value>(value);
  }
  void target(const RequestTarget& t) {
    json_["host"] = t.host;
    json_["port"] = t.port;
  }
  void judged(const Judgement& j) {
    json_["request_id"] = j.request_id;
    json_["allowed"] = j.allowed;
  }
  // A status the client got that is no refusal: the origin's, a tunnel's 200, ACP's JSON-RPC
  // answer to a refused tools/call (with the judge's reason).
  void answered(unsigned status, std::string reason = {}) {
    json_["status"] = status;
    mark_answered();
    if (!reason.empty()) json_["reason"] = std::move(reason);
  }
  // The exchange broke before an answer (the client went away, TLS failed): `status` is what
  // the event keeps (0: nothing was answered).
  void broke(unsigned status, std::string reason) {
    json_["status"] = status;
    json_["reason"] = std::move(reason);
  }
  // A CONNECT, or a connection the transparent door led in: its answer opens a tunnel
  // (acp_proxy_request_duration_seconds{kind="connect"}).
  void opens_tunnel() { tunnel_ = true; }
  bool tunnel() const { return tunnel_; }
  Clock::time_point start() const { return start_; }
  // From the head to the answer's status line (the origin's, a tunnel's 200, a refusal);
  // nullopt when the exchange broke before any answer.
  std::optional<Clock::duration> time_to_answer() const { return time_to_answer_; }
  const nlohmann::json& json() const { return json_; }
  nlohmann::json& json() { return json_; }
  // Moves the event to whoever carries the exchange on (a parked tunnel, parked_tunnel.hpp):
  // this one is then left out of State::finish(), the new owner finishes it.
  RequestEvent take() {
    RequestEvent out = std::move(*this);
    handed_off_ = true;
    return out;
  }
  bool handed_off() const { return handed_off_; }

 private:
  friend class Connection;  // refuse(): the only writer of a refusal's status and reason
  void refused(const Refusal& r) {
    if (r.answer) json_["status"] = r.status;
    json_["reason"] = r.reason;
    mark_answered();
  }
  void mark_answered() {
    if (!time_to_answer_) time_to_answer_ = Clock::now() - start_;
  }

  nlohmann::json json_;
  Clock::time_point start_;
  std::optional<Clock::duration> time_to_answer_;
  bool tunnel_ = false;
  bool handed_off_ = false;
};

}  // namespace acp::proxy
