#include "acp/proxy/consent_gate.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "acp/proxy/audit_log.hpp"
#include "acp/proxy/display.hpp"
#include "acp/util/atomic_file.hpp"
#include "acp/util/json_text.hpp"
#include "acp/util/random_id.hpp"
#include "acp/util/scope_exit.hpp"
#include "acp/util/unique_fd.hpp"

namespace acp::consent {

namespace asio = boost::asio;
using std::chrono::steady_clock;
using std::chrono::system_clock;

struct ConsentGate::Pending {
  Pending(asio::io_context& io) : timer(io) {}
  std::string id;
  Action action;
  PolicyDecision decision;
  system_clock::time_point created, expires;
  asio::steady_timer timer;  // fires at the deadline; cancelled when answered
  int waiters = 0;
  std::optional<ConsentOutcome> outcome;
};

const char* to_string(Scope s) {
  switch (s) {
    case Scope::Once:
      return "once";
    case Scope::Duration:
      return "duration";
    case Scope::Session:
      return "session";
    case Scope::Always:
      return "always";
  }
  return "once";
}

bool parse_scope(const std::string& s, Scope& out) {
  for (Scope c : {Scope::Once, Scope::Duration, Scope::Session, Scope::Always}) {
    if (s == to_string(c)) {
      out = c;
      return true;
    }
  }
  return false;
}

nlohmann::json action_to_json(const Action& a) {
  nlohmann::json j{
      {"kind", a.kind}, {"host", a.host}, {"port", a.port}, {"method", a.method}, {"path", a.path}};
  if (!a.name.empty()) j["name"] = a.name;
  if (!a.args.empty()) j["args"] = a.args;
  if (!a.tool.empty()) j["tool"] = a.tool;
  if (!a.server.empty()) j["server"] = a.server;
  if (!a.via.empty()) j["via"] = a.via;
  return j;
}

nlohmann::json to_json(const PendingInfo& p) {
  auto secs = [](system_clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
  };
  auto left = std::chrono::duration_cast<std::chrono::seconds>(p.expires - system_clock::now());
  // `action` is the raw data, for programs; `summary` and `reach` are what a human reads (every
  // agent-controlled character visible), the same text on every channel.
  const auto reach = approval_reach(p.action, std::chrono::seconds(600));
  return {{"id", p.id},
          {"session", p.session},
          {"action", action_to_json(p.action)},
          {"summary", summary(p.action)},
          {"reach",
           {{"once", reach.once},
            {"duration", reach.duration},
            {"session", reach.session},
            {"always", reach.always}}},
          {"rule", p.rule_text},
          {"created", secs(p.created)},
          {"expires", secs(p.expires)},
          {"expires_in_s", std::max<long long>(0, left.count())},
          {"waiters", p.waiters}};
}

namespace {

std::string human_duration(std::chrono::seconds s) {
  auto n = s.count();
  if (n % 3600 == 0 && n >= 3600) return std::to_string(n / 3600) + " h";
  if (n % 60 == 0 && n >= 60) return std::to_string(n / 60) + " min";
  return std::to_string(n) + " s";
}

Status check_file_safe(const struct stat& st, const std::string& path) {
  if (!S_ISREG(st.st_mode)) return make_error("grants file " + path + " is not a regular file");
  if (st.st_uid != 0 && st.st_uid != geteuid())
    return make_error("grants file " + path + " is not owned by root: ignoring it (chown root " +
                      path + ")");
  if (st.st_mode & 022)
    return make_error("grants file " + path +
                      " is writable by group or others: ignoring it (chmod 600 " + path + ")");
  return {};
}

}  // namespace

Result<nlohmann::json> read_grants_file(const std::string& path) {
  nlohmann::json empty{{"version", 1}, {"grants", nlohmann::json::array()}};
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT) return empty;
    return errno_error("open grants file " + path);
  }
  UniqueFd ufd(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno_error("stat grants file " + path);
  if (auto s = check_file_safe(st, path); !s) return s.error();
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) return errno_error("read grants file " + path);
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > (8u << 20)) return make_error("grants file " + path + " is over 8 MiB");
  }
  if (text.empty()) return empty;
  auto j = acp::util::parse_json(text);
  if (j.is_discarded() || !j.is_object() || !j.contains("grants") || !j["grants"].is_array())
    return make_error("grants file " + path + " is not {\"version\":1,\"grants\":[...]}");
  return j;
}

ConsentGate::ConsentGate(asio::io_context& io, GateConfig cfg) : io_(io), cfg_(std::move(cfg)) {
  load_always_grants();
}

ConsentGate::~ConsentGate() {
  listeners_.clear();
  observers_.clear();  // they may be gone already; the waiters still get their denial
  shutdown("consent gate shut down");
}

void ConsentGate::on_pending_change(std::function<void()> cb) {
  listeners_.push_back(std::move(cb));
}

void ConsentGate::add_observer(GateObserver* o) {
  observers_.push_back(o);
}

void ConsentGate::remove_observer(GateObserver* o) {
  std::erase(observers_, o);
}

PendingInfo ConsentGate::info(const Pending& p) const {
  return {p.id, cfg_.session_id, p.action, p.decision.rule_text, p.created, p.expires, p.waiters};
}

void ConsentGate::notify() {
  for (auto& cb : listeners_) cb();
}

Result<std::string> ConsentGate::new_request_id() const {
  for (;;) {
    auto id = util::random_hex(4);
    if (!id || !pending_.count(*id)) return id;
  }
}

void ConsentGate::load_always_grants() {
  if (cfg_.grants_path.empty()) return;
  struct stat st {};
  FileStamp stamp;
  if (::stat(cfg_.grants_path.c_str(), &st) == 0)
    stamp = {static_cast<long long>(st.st_ino), static_cast<long long>(st.st_size),
             static_cast<long long>(st.st_ctim.tv_sec) * 1000000000LL + st.st_ctim.tv_nsec};
  if (stamp == grants_stamp_ && !grants_error_) return;
  grants_stamp_ = stamp;
  always_grants_.clear();
  grants_error_.reset();
  auto j = read_grants_file(cfg_.grants_path);
  if (!j) {
    grants_error_ = j.error();  // fail closed: no "always" grant counts; the human is asked
    return;
  }
  for (const auto& g : (*j)["grants"]) {
    if (!g.is_object() || !g.contains("host") || !g["host"].is_string()) continue;
    Grant gr;
    gr.kind = g.value("kind", std::string("http"));
    gr.host = g["host"].get<std::string>();
    gr.port = g.value("port", uint16_t{0});
    gr.server = g.value("server", std::string());
    gr.tool = g.value("tool", std::string());
    gr.scope = Scope::Always;
    always_grants_.push_back(std::move(gr));
  }
}

bool ConsentGate::covered(const Action& a, Scope& by) {
  auto now = cfg_.now();
  std::erase_if(grants_,
                [&](const Grant& g) { return g.scope == Scope::Duration && g.expires <= now; });
  auto host_match = [&](const Grant& g) {
    if (g.server != a.server || g.tool != a.tool) return false;  // MCP: per server and tool
    if (g.host == a.host) return true;
    return g.www_twin && ("www." + g.host == a.host || g.host == "www." + a.host);
  };
  for (const auto& g : grants_) {
    if (g.kind == a.kind && g.port == a.port && host_match(g)) {
      by = g.scope;
      return true;
    }
  }
  load_always_grants();
  for (const auto& g : always_grants_) {
    if (g.kind == a.kind && g.port == a.port && host_match(g)) {
      by = Scope::Always;
      return true;
    }
  }
  return false;
}

Status ConsentGate::persist_always_grant(const Action& a) {
  const std::string& path = cfg_.grants_path;
  if (path.empty()) return make_error("no grants file configured: cannot remember \"always\"");
  if (auto st = util::create_directories(std::filesystem::path(path).parent_path(), 0700); !st)
    return st;
  auto cur = read_grants_file(path);
  if (!cur) return cur.error();
  nlohmann::json j = std::move(*cur);
  j["version"] = 1;
  nlohmann::json grant{{"kind", a.kind},
                       {"host", a.host},
                       {"port", a.port},
                       {"created", audit::iso8601_now()},
                       {"session", cfg_.session_id}};
  if (a.kind == "mcp") {
    grant["server"] = a.server;
    grant["tool"] = a.tool;
  }
  j["grants"].push_back(std::move(grant));
  std::string text = j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  if (auto st = util::write_file_atomic(path, text, 0600); !st) return st;
  load_always_grants();
  return {};
}

void ConsentGate::add_grant(const Action& a, const Answer& ans) {
  Grant g{a.kind, a.host, a.port, a.server, a.tool, ans.scope, {}, false};
  if (ans.scope == Scope::Duration) {
    auto d = ans.duration.count() > 0 ? ans.duration : cfg_.default_duration;
    g.expires = cfg_.now() + d;
    g.www_twin = true;  // as upstream: approving example.com for a while covers www.example.com
  }
  if (ans.scope == Scope::Duration || ans.scope == Scope::Session) grants_.push_back(g);
}

void ConsentGate::resolve(const std::shared_ptr<Pending>& p, ConsentOutcome o) {
  o.request_id = p->id;
  p->outcome = std::move(o);
  pending_.erase(p->id);
  p->timer.cancel();
  notify();
  // A copy: an observer may add or remove observers while being told.
  auto observers = observers_;
  const PendingInfo pi = info(*p);
  for (auto* o : observers) o->on_resolved(pi, *p->outcome);
}

void ConsentGate::release_covered() {
  std::vector<std::shared_ptr<Pending>> all;
  for (auto& [id, p] : pending_) all.push_back(p);
  for (auto& p : all) {
    Scope by;
    if (covered(p->action, by))
      resolve(p, {true,
                  std::string("grant:") + to_string(by),
                  "human",
                  std::string("covered by a new ") + to_string(by) + " approval",
                  "",
                  {},
                  ""});
  }
}

Status ConsentGate::answer(const std::string& id, const Answer& a) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return make_error("unknown request id " + id, ENOENT);
  auto p = it->second;
  std::string by = a.by.empty() ? "operator" : a.by;
  if (!a.approve) {
    std::string reason = "denied by operator";
    if (!a.reason.empty()) reason += ": " + a.reason;
    resolve(p, {false, "", "human", reason, "", {}, by});
    return {};
  }
  if (a.scope == Scope::Always) {
    if (auto s = persist_always_grant(p->action); !s)
      return make_error("cannot remember \"always\" for " + p->action.host + ": " +
                        s.error().message());
  }
  add_grant(p->action, a);
  std::string reason = std::string("approved ") + to_string(a.scope) + " by " + by;
  if (a.scope == Scope::Duration)
    reason += " for " + human_duration(a.duration.count() > 0 ? a.duration : cfg_.default_duration);
  resolve(p, {true, to_string(a.scope), "human", reason, "", {}, by});
  if (a.scope != Scope::Once) release_covered();
  return {};
}

void ConsentGate::shutdown(const std::string& reason) {
  shut_down_ = true;
  shutdown_reason_ = reason;
  std::vector<std::shared_ptr<Pending>> all;
  for (auto& [id, p] : pending_) all.push_back(p);
  for (auto& p : all) resolve(p, {false, "", "error", reason, "", {}, ""});
}

std::vector<PendingInfo> ConsentGate::pending() const {
  std::vector<PendingInfo> out;
  for (const auto& [id, p] : pending_) out.push_back(info(*p));
  return out;
}

asio::awaitable<ConsentOutcome> ConsentGate::ask(const Action& action_ref,
                                                 const PolicyDecision& decision_ref) {
  Action action = action_ref;
  PolicyDecision decision = decision_ref;
  auto start = steady_clock::now();
  if (shut_down_) co_return ConsentOutcome{false, "", "error", shutdown_reason_, "", {}, ""};
  Scope by;
  if (covered(action, by))
    co_return ConsentOutcome{
        true,    std::string("grant:") + to_string(by),
        "human", std::string("covered by an earlier ") + to_string(by) + " approval",
        "",      {},
        ""};

  std::shared_ptr<Pending> p;
  for (auto& [id, q] : pending_) {
    // One prompt for two asks only when the human would see the same thing and the same rule
    // decided it: every field of both (Action's and PolicyDecision's operator==). Asks that
    // differ in anything, the path or the query say, each get their own answer.
    if (q->action == action && q->decision == decision) {
      p = q;
      break;
    }
  }
  if (!p) {
    auto id = new_request_id();
    if (!id)  // fail closed: no request the human could not tell apart from another
      co_return ConsentOutcome{false, "", "error", "consent request: " + id.error().message(),
                               "",    {}, ""};
    p = std::make_shared<Pending>(io_);
    p->id = std::move(*id);
    p->action = action;
    p->decision = decision;
    auto timeout = std::max(decision.timeout, std::chrono::seconds(0));
    p->created = system_clock::now();
    p->expires = p->created + timeout;
    p->timer.expires_after(timeout);
    pending_[p->id] = p;
    ++p->waiters;
    notify();
    auto observers = observers_;
    const PendingInfo pi = info(*p);
    for (auto* o : observers) {
      if (p->outcome) break;  // an observer already answered it
      o->on_request(pi);
    }
  } else {
    ++p->waiters;
  }
  auto waiter = util::on_scope_exit([p] { --p->waiters; });

  // Wait for the answer (the timer is cancelled) or the deadline (the timer fires).
  while (!p->outcome) {
    boost::system::error_code ec;
    co_await p->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (p->outcome) break;
    if (!ec) {
      auto secs = std::chrono::duration_cast<std::chrono::seconds>(p->expires - p->created);
      resolve(p, {false,
                  "",
                  "timeout",
                  "timed out after " + std::to_string(secs.count()) + " s: no human answered",
                  "",
                  {},
                  ""});
    }
    // A spurious cancel without an outcome: wait again.
  }
  ConsentOutcome o = *p->outcome;
  o.waited = std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - start);
  co_return o;
}

}  // namespace acp::consent
