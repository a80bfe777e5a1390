// acp pending [--json|--full] [ID] | acp approve ID [--for=DURATION|--session|--always] |
// acp deny ID [--reason=TEXT]: answer the agents' pending requests through the sessions'
// control sockets (/run/acp/control.sock and control-<session>.sock; $ACP_RUN_DIR in tests).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "acp/cli/commands.hpp"
#include "acp/proxy/control.hpp"
#include "acp/proxy/display.hpp"

namespace acp::cli {
namespace {

using consent::control_request;

struct SessionPending {
  std::string socket;
  nlohmann::json reply;  // {"ok":true,"session":..,"pending":[...]}
};

// Asks every control socket for its pending requests. Stale sockets (nobody answers) are
// skipped; a refusal for lack of privilege is an error that names the fix.
bool gather(const char* cmd, std::vector<SessionPending>& out) {
  std::string dir = consent::control_run_dir();
  auto socks = consent::list_control_sockets(dir);
  bool denied = false;
  std::string last_error;
  for (const auto& s : socks) {
    auto r = control_request(s, {{"op", "pending"}});
    if (!r) {
      int e = r.error().err;
      if (e == EACCES || e == EPERM) denied = true;
      if (e != ECONNREFUSED && e != ENOENT) last_error = r.error().message();
      continue;
    }
    if (!r->value("ok", false)) {
      if (r->value("code", "") == "forbidden") denied = true;
      last_error = s + ": " + r->value("error", std::string("error"));
      continue;
    }
    out.push_back({s, *r});
  }
  if (out.empty()) {
    if (denied) {
      std::fprintf(stderr,
                   "acp %s: permission denied on the control socket in %s: only root may "
                   "answer requests (run: sudo acp %s ...)\n",
                   cmd, dir.c_str(), cmd);
    } else if (!last_error.empty()) {
      std::fprintf(stderr, "acp %s: %s\n", cmd, last_error.c_str());
    } else {
      std::fprintf(stderr,
                   "acp %s: no running session (no live control socket in %s; start one "
                   "with `sudo acp run -- CMD`)\n",
                   cmd, dir.c_str());
    }
    return false;
  }
  return true;
}

std::string expires_in(long long s) {
  if (s <= 0) return "now";
  char b[32];
  if (s >= 60)
    std::snprintf(b, sizeof b, "%lldm%02llds", s / 60, s % 60);
  else
    std::snprintf(b, sizeof b, "%llds", s);
  return b;
}

std::string host_port(const nlohmann::json& a) {
  std::string h = a.value("host", "");
  if (h.find(':') != std::string::npos) h = "[" + h + "]";
  return h + ":" + std::to_string(a.value("port", 0));
}

// Agent-chosen text goes to a terminal: every character visible (acp/proxy/display.hpp), and
// a long cell says how much it hides and how to see it all, never cut silently.
std::string cell(const std::string& s, size_t max = 40) {
  if (s.empty()) return "-";
  return consent::clip(consent::visible(s), max, "acp pending --full");
}

// Bytes are not columns: width counts UTF-8 characters (a lead byte each).
size_t width(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> w;
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) {
      if (w.size() <= i) w.push_back(0);
      w[i] = std::max(w[i], width(r[i]));
    }
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(w[i] - width(r[i]) + 2, ' ');
    }
    std::printf("%s\n", line.c_str());
  }
}

// The socket whose session holds request `id`, or empty (message printed).
std::string find_request(const char* cmd, const std::string& id) {
  std::vector<SessionPending> all;
  if (!gather(cmd, all)) return {};
  for (const auto& s : all)
    for (const auto& p : s.reply["pending"])
      if (p.value("id", "") == id) return s.socket;
  std::fprintf(stderr,
               "acp %s: unknown request id %s (it may have been answered or timed out; "
               "see `acp pending`)\n",
               cmd, id.c_str());
  return {};
}

int send_answer(const char* cmd, const std::string& sock, const nlohmann::json& req) {
  auto r = control_request(sock, req);
  if (!r) {
    std::fprintf(stderr, "acp %s: %s\n", cmd, r.error().message().c_str());
    return 1;
  }
  if (!r->value("ok", false)) {
    std::fprintf(stderr, "acp %s: %s\n", cmd, r->value("error", std::string("failed")).c_str());
    return 1;
  }
  return 0;
}

// acp pending: the requests of every session, as a table, in full, or as JSON.
int list_pending(bool json, bool full, const std::string& only) {
  std::vector<SessionPending> all;
  if (!gather("pending", all)) {
    return 1;
  }
  nlohmann::json merged = nlohmann::json::array();
  for (const auto& s : all)
    for (auto p : s.reply["pending"]) {
      if (!only.empty() && p.value("id", "") != only) continue;
      p["socket"] = s.socket;
      merged.push_back(p);
    }
  if (json) {
    std::printf("%s\n",
                merged.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return 0;
  }
  if (merged.empty() && !only.empty()) {
    std::fprintf(stderr,
                 "acp pending: unknown request id %s (it may have been answered or timed out; "
                 "see `acp pending`)\n",
                 consent::visible(only).c_str());
    return 1;
  }
  if (merged.empty()) {
    std::printf("No pending requests.\n");
    return 0;
  }
  if (full || !only.empty()) {
    // Nothing cut: the request as the prompt and the page show it, and what each answer covers.
    for (const auto& p : merged) {
      auto text = [&](const nlohmann::json& j, const char* k) {
        return consent::visible(j.is_object() ? j.value(k, std::string()) : std::string());
      };
      std::printf("request %s  session %s  expires in %s  waiting %d\n", text(p, "id").c_str(),
                  text(p, "session").c_str(), expires_in(p.value("expires_in_s", 0LL)).c_str(),
                  p.value("waiters", 0));
      std::printf("  wants:  %s\n", text(p, "summary").c_str());
      std::printf("  rule:   %s\n", text(p, "rule").c_str());
      if (p.contains("reach")) {
        const auto& r = p["reach"];
        std::printf("  acp approve ID:           %s\n", text(r, "once").c_str());
        std::printf("  acp approve ID --for=10m: %s\n", text(r, "duration").c_str());
        std::printf("  acp approve ID --session: %s\n", text(r, "session").c_str());
        std::printf("  acp approve ID --always:  %s\n", text(r, "always").c_str());
      }
    }
    return 0;
  }
  std::vector<std::vector<std::string>> rows{
      {"ID", "SESSION", "KIND", "HOST:PORT", "METHOD", "PATH", "RULE", "EXPIRES IN"}};
  for (const auto& p : merged) {
    const auto& a = p["action"];
    // An MCP tool call: its server, tool and arguments in the host, method and path columns.
    const bool mcp = a.value("kind", "") == "mcp";
    rows.push_back({cell(p.value("id", "")), cell(p.value("session", "")),
                    cell(a.value("kind", "")), cell(mcp ? a.value("server", "") : host_port(a), 60),
                    cell(a.value(mcp ? "tool" : "method", "")),
                    cell(a.value(mcp ? "args" : "path", ""), 80), cell(p.value("rule", ""), 60),
                    expires_in(p.value("expires_in_s", 0LL))});
  }
  print_table(rows);
  return 0;
}

void register_pending(CLI::App& app, int& exit_code) {
  auto* pending = app.add_subcommand("pending", "List the requests waiting for a human");
  auto json = std::make_shared<bool>(false);
  auto full = std::make_shared<bool>(false);
  auto only = std::make_shared<std::string>();
  pending->add_flag("--json", *json, "Machine-readable output");
  pending->add_flag("--full", *full,
                    "Each request in full (the table cuts long cells and says how much it cut)");
  pending->add_option("ID", *only, "Only this request, in full")->type_name(kRequestIdType);
  pending->callback(
      [json, full, only, &exit_code] { exit_code = list_pending(*json, *full, *only); });
}

void register_approve(CLI::App& app, int& exit_code) {
  auto* approve = app.add_subcommand("approve", "Approve a pending request (default: once)");
  auto id = std::make_shared<std::string>();
  auto for_d = std::make_shared<std::string>();
  auto session = std::make_shared<bool>(false);
  auto always = std::make_shared<bool>(false);
  approve->add_option("ID", *id, "Request id, from `acp pending`")
      ->type_name(kRequestIdType)
      ->required();
  auto* o_for = approve->add_option(
      "--for", *for_d,
      "Approve this host (and its www. twin) for DURATION: 90s, 10m, 1h, 1h30m (`--for=` alone: "
      "180s)");
  auto* o_session = approve->add_flag("--session", *session, "Approve for the rest of the session");
  auto* o_always =
      approve->add_flag("--always", *always, "Approve for good (persisted in the grants file)");
  o_for->excludes(o_session)->excludes(o_always);
  o_session->excludes(o_always);
  approve->callback([=, &exit_code] {
    nlohmann::json req{{"op", "approve"}, {"id", *id}, {"scope", "once"}};
    if (o_for->count() > 0) {
      req["scope"] = "duration";
      std::chrono::seconds d{0};
      if (!for_d->empty() && !consent::parse_duration(*for_d, d)) {
        std::fprintf(stderr,
                     "acp approve: --for=%s is not a duration: use e.g. 90s, 10m, 1h or 1h30m "
                     "(at most 366d)\n",
                     for_d->c_str());
        exit_code = 2;
        return;
      }
      req["duration_s"] = d.count();
    } else if (*session) {
      req["scope"] = "session";
    } else if (*always) {
      req["scope"] = "always";
    }
    auto sock = find_request("approve", *id);
    if (sock.empty()) {
      exit_code = 1;
      return;
    }
    exit_code = send_answer("approve", sock, req);
    if (exit_code == 0)
      std::printf("approved %s (%s)\n", id->c_str(), req["scope"].get<std::string>().c_str());
  });
}

void register_deny(CLI::App& app, int& exit_code) {
  auto* deny = app.add_subcommand("deny", "Deny a pending request");
  auto did = std::make_shared<std::string>();
  auto reason = std::make_shared<std::string>();
  deny->add_option("ID", *did, "Request id, from `acp pending`")
      ->type_name(kRequestIdType)
      ->required();
  deny->add_option("--reason", *reason, "Why: shown to the agent and kept in the audit log");
  deny->callback([=, &exit_code] {
    auto sock = find_request("deny", *did);
    if (sock.empty()) {
      exit_code = 1;
      return;
    }
    exit_code = send_answer("deny", sock, {{"op", "deny"}, {"id", *did}, {"reason", *reason}});
    if (exit_code == 0) std::printf("denied %s\n", did->c_str());
  });
}

}  // namespace

void register_consent(CLI::App& app, int& exit_code) {
  register_pending(app, exit_code);
  register_approve(app, exit_code);
  register_deny(app, exit_code);
}

}  // namespace acp::cli
