// What the agent is trying to do, as the proxy saw it, and what was decided about it.
// The proxy (proxy/server) builds an Action per request, the policy (proxy/policy) and the
// consent gate (proxy/consent) judge it, the audit log (proxy/audit) records both.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace acp {

struct Action {
  std::string kind = "http";  // "http" (plain and CONNECT); later "mcp"
  std::string host;           // normalized: lowercase, no trailing dot, IPv6 without brackets
  uint16_t port = 0;
  std::string method;   // "CONNECT", "GET", ...
  std::string path;     // origin-form path of a plain HTTP request; empty for CONNECT
  std::string session;  // ACP session id the request came from
  // The client's IP address as the proxy saw it (no port; IPv4-mapped shown as IPv4): how the
  // node agent's proxy tells which pod is asking.
  std::string client;
  // How the request reached the proxy: empty for the explicit door, "transparent" for a
  // connection the wall led in (docs/transparent.md); in the audit entry and the prompt.
  std::string via;
  // Non-network actions (upstream's exec wrapper, MCP): matched by name/args/tool/server.
  std::string name;
  std::string args;
  std::string tool;
  std::string server;
  // Every field: two asks are the same ask only when all of them are equal (the consent gate
  // coalesces on this; a field added here joins the comparison by itself).
  bool operator==(const Action&) const = default;
};

enum class Verdict { Allow, Deny, Ask };
const char* to_string(Verdict v);  // "allow" | "deny" | "ask"

// The policy's word on an Action: which rule decided and why.
struct PolicyDecision {
  Verdict verdict = Verdict::Deny;
  int rule_index = -1;                // 0-based index into rules; -1 = the policy default
  int rule_line = 0;                  // line of the rule in its file (0 for the default)
  std::string rule_text;              // the rule as written, for humans: {kind: http, host: "*.x"}
  std::chrono::seconds timeout{120};  // how long an `ask` waits for a human
  bool host_named = false;            // the deciding rule names this host literally (no glob):
                                      // required before the proxy connects to loopback etc.
  // Rules that judge more than host and port could apply to this http Action's host:port
  // (Policy::inside_rules): the proxy refuses what it cannot read there.
  bool inside_path = false;  // an http rule naming a path or a method
  bool inside_mcp = false;   // a kind: mcp rule whose server matches the host
  bool operator==(const PolicyDecision&) const = default;
};

// The final word on a request, after the policy and, for `ask`, a human.
struct Judgement {
  bool allowed = false;
  std::string reason;        // for the 403 body and the audit log
  std::string request_id;    // audit/consent id, echoed to the client in X-ACP-Request-Id
  bool host_named = false;   // copied from PolicyDecision
  bool inside_path = false;  // copied from PolicyDecision
  bool inside_mcp = false;   // copied from PolicyDecision
};

}  // namespace acp
