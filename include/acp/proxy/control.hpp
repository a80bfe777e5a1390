// The control socket: how `acp pending/approve/deny` (and later channels) reach a session's
// consent gate. AF_UNIX stream, root-only (socket 0600 in a root 0755 directory, and the
// peer's uid checked with SO_PEERCRED on every connection). The agent's cgroup cannot reach
// it either: unix sockets are outside the BPF connect hooks, but the agent is never root.
//
// Protocol: one JSON object per line each way (lines up to 64 KiB).
//   {"op":"pending"}                                  -> {"ok":true,"session":S,"pending":[...]}
//   {"op":"approve","id":ID,"scope":"once|duration|session|always","duration_s":N}
//                                                     -> {"ok":true,"id":ID,"scope":...}
//   {"op":"deny","id":ID,"reason":TEXT}               -> {"ok":true,"id":ID}
//   {"op":"ping"}                                     -> {"ok":true,"session":S}
//   {"op":"stats"}                                    -> {"ok":true,"session":S,"proxy":{...}}
//                                                        (the proxy's counters, for acp status)
// Any failure: {"ok":false,"error":"...","code":"unknown_id|bad_request|forbidden|failed"}.
#pragma once

#include <utility>  // before boost/asio (Boost 1.74)

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "acp/proxy/consent_gate.hpp"
#include "acp/util/result.hpp"

namespace acp::consent {

inline constexpr const char* kDefaultRunDir = "/run/acp";
inline constexpr size_t kMaxControlLine = 64 * 1024;

// The directory holding the control sockets: $ACP_RUN_DIR, else /run/acp.
std::string control_run_dir();

class ControlServer {
 public:
  // Binds `path` (e.g. /run/acp/control.sock). When a live server already answers there, binds
  // <dir>/control-<session>.sock instead; a stale socket file nobody answers is replaced. The
  // directory is created 0755 if missing. Serves on `io` until destroyed.
  static Result<std::unique_ptr<ControlServer>> start(boost::asio::io_context& io,
                                                      const std::string& path, ConsentGate& gate);
  ~ControlServer();  // closes the listener and unlinks the socket file
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  std::string path() const;
  // What {"op":"stats"} answers under "proxy"; unset: {"op":"stats"} is an unknown op.
  void set_stats(std::function<nlohmann::json()> stats);

  struct Impl;

 private:
  explicit ControlServer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

// Handles one request object against a gate (what the server does per line; also for tests
// and in-process channels). `peer` describes the requester for the audit trail.
nlohmann::json handle_control_request(ConsentGate& gate, const nlohmann::json& req,
                                      const std::string& peer);

// One request line as the server reads it (without its '\n'; a trailing '\r' is dropped):
// nullopt for an empty line (no reply), a bad_request reply for text that is not JSON, else
// handle_control_request's reply.
std::optional<nlohmann::json> handle_control_line(ConsentGate& gate, std::string_view line,
                                                  const std::string& peer);
// A reply as it goes on the wire: one line of JSON; invalid UTF-8 replaced, never thrown on.
std::string control_reply_text(const nlohmann::json& reply);

// Client side (blocking, 10 s timeout): sends one request line and reads one reply line.
// Errors: cannot connect (errno kept: ENOENT, ECONNREFUSED, EACCES), timeout, bad reply.
Result<nlohmann::json> control_request(const std::string& path, const nlohmann::json& req);

// "90s", "10m", "1h", "1h30m", "2d", or plain seconds ("300"). False on anything else or 0.
bool parse_duration(const std::string& text, std::chrono::seconds& out);

// control.sock first, then control-*.sock in name order; missing dir: empty.
std::vector<std::string> list_control_sockets(const std::string& dir = control_run_dir());

}  // namespace acp::consent
