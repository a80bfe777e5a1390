// The consent gate: where an `ask` waits for a human. Single-threaded: every call runs on the
// io_context the gate was made with.
//
// ask() first looks for a live grant (duration grants, with the host's `www.` twin, as
// upstream; session grants; "always" grants persisted in the grants file). Otherwise the ask
// joins a pending request only when its Action and its PolicyDecision are equal in every field
// (what the human is shown and the rule that asked), or opens one of its own; every waiter of a
// pending request gets the same answer. No answer before the deadline (the rule's
// timeout) is a denial that is never remembered. See docs/consent.md.
#pragma once

#include <utility>  // before boost/asio/awaitable.hpp (Boost 1.74)

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "acp/proxy/action.hpp"
#include "acp/util/result.hpp"

namespace acp::consent {

inline constexpr const char* kDefaultGrantsPath = "/var/lib/acp/grants.json";

struct GateConfig {
  std::string session_id;
  std::string grants_path = kDefaultGrantsPath;  // "always" grants; empty: none persisted
  std::chrono::seconds default_duration{180};    // --for without a value; upstream's 3 minutes
  // The clock grants expire by. Tests replace it; pending deadlines use real timers.
  std::function<std::chrono::steady_clock::time_point()> now = [] {
    return std::chrono::steady_clock::now();
  };
};

enum class Scope { Once, Duration, Session, Always };
const char* to_string(Scope s);  // "once" | "duration" | "session" | "always"
// Parses the names above; false on anything else.
bool parse_scope(const std::string& s, Scope& out);

struct Answer {
  bool approve = false;
  Scope scope = Scope::Once;
  std::chrono::seconds duration{0};  // Scope::Duration; 0 = the gate's default_duration
  std::string reason;                // a denial's reason, for the agent and the audit log
  std::string by;                    // who answered, e.g. "control uid=0 pid=4242"
};

struct ConsentOutcome {
  bool approved = false;
  // The human's scope ("once", "duration", "session", "always") or, when an earlier grant
  // covered the action, "grant:<scope>". Empty for a denial.
  std::string scope;
  std::string decided_by;  // "human" | "timeout" | "error"
  std::string reason;
  std::string request_id;  // the pending request's id (empty when a grant answered at once)
  std::chrono::milliseconds waited{0};
  std::string answered_by;  // a human's answer: Answer::by (e.g. "web"); empty otherwise
};

struct PendingInfo {
  std::string id;
  std::string session;
  Action action;
  std::string rule_text;
  std::chrono::system_clock::time_point created;
  std::chrono::system_clock::time_point expires;
  int waiters = 0;
};
// {id, session, action{...}, summary, reach{once,duration,session,always}, rule, created, ...}:
// summary and reach (the 10-minute duration) as display.hpp makes them.
nlohmann::json to_json(const PendingInfo& p);
nlohmann::json action_to_json(const Action& a);  // {kind, host, port, method, path}

// Told about every pending request's life; channels (acp/proxy/channel.hpp) are observers.
// Called on the gate's io_context, after the gate's state changed; an observer may call
// ConsentGate::answer() from on_request() (e.g. a channel that answers at once).
class GateObserver {
 public:
  virtual ~GateObserver() = default;
  // A new pending request (not called for asks that join an existing one, nor for grants).
  virtual void on_request(const PendingInfo& p) = 0;
  // How it ended: approved or denied by a human (any channel), covered by a new grant,
  // timed out, or the gate shut down. `p` is the request as it was when it ended.
  virtual void on_resolved(const PendingInfo& p, const ConsentOutcome& o) = 0;
};

class ConsentGate {
 public:
  ConsentGate(boost::asio::io_context& io, GateConfig cfg);
  ~ConsentGate();  // pending waiters are released with a denial ("consent gate shut down")
  ConsentGate(const ConsentGate&) = delete;
  ConsentGate& operator=(const ConsentGate&) = delete;

  boost::asio::awaitable<ConsentOutcome> ask(const Action& action, const PolicyDecision& decision);

  std::vector<PendingInfo> pending() const;
  // Approves or denies pending request `id`. Errors: unknown id; an "always" grant that cannot
  // be written (the request then stays pending). An approval with a lasting scope also
  // releases every other pending request the new grant covers.
  Status answer(const std::string& id, const Answer& a);
  // Denies every pending request (decided_by "error") and refuses new asks: a channel is down.
  void shutdown(const std::string& reason);

  // Called (on the io_context) whenever a pending request appears or goes away.
  void on_pending_change(std::function<void()> cb);
  // Adds/removes an observer (not owned; remove it before it is destroyed).
  void add_observer(GateObserver* o);
  void remove_observer(GateObserver* o);

  const std::string& session_id() const { return cfg_.session_id; }
  const GateConfig& config() const { return cfg_; }
  // Why the grants file could not be read, if it could not (its grants are then ignored).
  const std::optional<Error>& grants_error() const { return grants_error_; }

  struct Pending;  // internal

 private:
  struct Grant {
    std::string kind, host;
    uint16_t port = 0;
    std::string server, tool;  // kind "mcp": a grant covers one tool on one server
    Scope scope = Scope::Session;
    std::chrono::steady_clock::time_point expires{};  // Duration only
    bool www_twin = false;
  };
  bool covered(const Action& a, Scope& by);
  void load_always_grants();
  Status persist_always_grant(const Action& a);
  void add_grant(const Action& a, const Answer& ans);
  void release_covered();
  void resolve(const std::shared_ptr<Pending>& p, ConsentOutcome o);
  void notify();
  PendingInfo info(const Pending& p) const;
  // 8 hex digits not used by a pending request; fails closed when the generator fails.
  Result<std::string> new_request_id() const;

  boost::asio::io_context& io_;
  GateConfig cfg_;
  std::vector<Grant> grants_;         // duration and session grants
  std::vector<Grant> always_grants_;  // from the grants file
  std::optional<Error> grants_error_;
  struct FileStamp {
    long long ino = -1, size = -1, ctime_ns = -1;  // ctime: chmod and chown count too
    bool operator==(const FileStamp&) const = default;
  } grants_stamp_;
  std::map<std::string, std::shared_ptr<Pending>> pending_;  // by id
  std::vector<std::function<void()>> listeners_;
  std::vector<GateObserver*> observers_;
  bool shut_down_ = false;
  std::string shutdown_reason_;
};

// Grants file helpers, shared with tests: the file is {"version":1,"grants":[{kind,host,port,
// created,by}]}, root-owned 0600, written atomically.
Result<nlohmann::json> read_grants_file(const std::string& path);

}  // namespace acp::consent
