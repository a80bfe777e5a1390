// What `acp status` shows: for every session on this machine, read from its pins (the wall as
// the kernel enforces it) and its record (who and what). Works from any shell, for live and
// orphaned sessions alike.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "acp/kernel/pinned_session.hpp"
#include "acp/session/session_record.hpp"

namespace acp {

struct SessionStatus {
  std::string id;
  std::optional<SessionRecord> record;   // absent when only pins remain
  bool orphaned = false;                 // the acp process that ran it is gone
  std::string backend;                   // from the record ("bpf" when only pins remain)
  std::string network_line;              // backend::mode_line(backend)
  std::vector<std::string> chain_rules;  // iptables: the session's rules, `iptables -S` form
  std::optional<bool> populated;         // processes still in the cgroup
  std::string mode;                      // from the config map: "enforce" | "audit"
  std::vector<kernel::LinkInfo> programs;
  std::vector<kernel::Endpoint> allow;
  // Local IPC: whether the connect_unix program is pinned (AF_UNIX connect() judged), and the
  // names the agent may still reach (--allow-unix).
  bool unix_walled = false;
  std::vector<std::string> allow_unix;
  kernel::Counters counters;
  std::vector<acp_event> recent_denied;
  uint64_t lost_events = 0;
  std::vector<std::string> problems;  // what could not be read, and why
  // Requests waiting for a human, from the session's control socket (live sessions only):
  // objects as `acp pending --json` prints them.
  std::vector<nlohmann::json> pending;
  // The proxy's counters from the same socket ({"op":"stats"}): requests, allowed, denied,
  // foreign_clients (connections refused: client not in this session)...; null when unknown.
  nlohmann::json proxy;
};

struct MachineStatus {
  // The strongest backend `acp run --backend=auto` would pick here: "bpf", "iptables", or
  // "none" when neither works (then why_not says why).
  std::string network;
  std::string network_line;  // "Network: 🔒 Isolated (bpf)"
  std::string why_not;
  std::vector<SessionStatus> sessions;
};

MachineStatus gather_status();
// One session. `ask_control`: also ask its control socket for pending requests; false from the
// session's own event loop (the web page), which serves that socket and must not wait on it.
SessionStatus read_session_status(const std::string& id, bool ask_control = true);
nlohmann::json status_to_json(const MachineStatus& s);
// One session as status_to_json lists it.
nlohmann::json session_status_to_json(const SessionStatus& s);
std::string status_to_text(const MachineStatus& s);

}  // namespace acp
