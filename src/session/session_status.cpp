#include "acp/session/session_status.hpp"

#include <sys/stat.h>
#include <time.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "acp/backend/backend.hpp"
#include "acp/backend/command.hpp"
#include "acp/backend/docker_wall.hpp"
#include "acp/backend/iptables_wall.hpp"
#include "acp/cgroup/cgroup.hpp"
#include "acp/kernel/event_reader.hpp"
#include "acp/kernel/probe.hpp"
#include "acp/proxy/control.hpp"
#include "acp/proxy/display.hpp"
#include "acp/session/session_gc.hpp"

namespace acp {
namespace {

const char* kFamilies[ACP_FAM_MAX] = {"ipv4", "ipv6", "other", "unix"};
const char* kProtos[ACP_PRO_MAX] = {"tcp", "udp", "other"};

void read_pending(SessionStatus& st, bool ask_control);

SessionStatus read_one(const std::string& id, bool ask_control) {
  SessionStatus st;
  st.id = id;
  if (auto rec = read_session_record(kSessionRecordDir, id)) {
    st.record = *rec;
    st.orphaned = !session_owner_alive(*rec);
  } else {
    st.orphaned = true;
  }
  if (auto cg = Cgroup::open(cgroup_path_of(id))) {
    if (auto pop = cg->populated()) st.populated = *pop;
  }
  // Without a record, the pins say bpf; an id known from neither came from an ACP-<id> chain.
  struct stat pins_st {};
  const bool has_pins = ::stat((std::string(kBpfPinRoot) + "/" + id).c_str(), &pins_st) == 0;
  st.backend = st.record ? st.record->backend : has_pins ? "bpf" : "iptables";
  // Without a record and pins, an id came from an ACP-<id> chain, or from the docker wall.
  const std::string docker_chain = backend::docker_chain_name(id);
  if (!st.record && !has_pins) {
    auto ipt = backend::find_tool("iptables");
    auto r = ipt ? backend::run_command({*ipt, "-w", "-S", backend::session_chain_name(id)})
                 : Result<backend::CommandOutput>(make_error("no iptables"));
    if (!r || r->exit_code != 0) st.backend = "docker";
  }
  st.network_line = backend::mode_line(st.backend);
  if (st.backend != "bpf") {
    if (st.backend == "iptables" || st.backend == "docker") {
      const std::string chain =
          st.backend == "docker" ? docker_chain : backend::session_chain_name(id);
      for (const char* tool : {"iptables", "ip6tables"}) {
        auto path = backend::find_tool(tool);
        if (!path) continue;
        auto r = backend::run_command({*path, "-w", "-S", chain});
        if (!r || r->exit_code != 0) {
          st.problems.push_back(std::string(tool) + ": chain " + chain + " not found");
          continue;
        }
        std::istringstream in(r->out);
        std::string line;
        while (std::getline(in, line))
          if (line.rfind("-A ", 0) == 0) st.chain_rules.push_back(std::string(tool) + " " + line);
        // The transparent door's redirect (iptables backend), when the session has one.
        if (st.backend != "iptables") continue;
        auto nat = backend::run_command({*path, "-w", "-t", "nat", "-S", chain});
        if (!nat || nat->exit_code != 0) continue;
        std::istringstream nat_in(nat->out);
        while (std::getline(nat_in, line))
          if (line.rfind("-A ", 0) == 0)
            st.chain_rules.push_back(std::string(tool) + " -t nat " + line);
      }
    }
    read_pending(st, ask_control);
    return st;
  }
  auto pins = kernel::PinnedSession::open(std::string(kBpfPinRoot) + "/" + id);
  if (!pins) {
    st.problems.push_back("pins: " + pins.error().message());
    return st;
  }
  if (auto cfg = pins->config())
    st.mode = cfg->mode == ACP_MODE_AUDIT ? "audit" : "enforce";
  else
    st.problems.push_back("config: " + cfg.error().message());
  if (auto l = pins->links()) {
    st.programs = *l;
    for (const auto& p : st.programs)
      if (p.pin_name == "link_connect_unix" && p.prog_id != 0) st.unix_walled = true;
  } else
    st.problems.push_back("links: " + l.error().message());
  if (auto a = pins->allow_entries())
    st.allow = *a;
  else
    st.problems.push_back("allow map: " + a.error().message());
  if (auto u = pins->unix_allow_entries())
    st.allow_unix = *u;
  else
    st.problems.push_back("unix allow map: " + u.error().message());
  if (auto c = pins->counters())
    st.counters = *c;
  else
    st.problems.push_back("counters: " + c.error().message());
  if (auto r = pins->recent_events())
    st.recent_denied = *r;
  else
    st.problems.push_back("recent events: " + r.error().message());
  if (auto n = pins->lost_events()) st.lost_events = *n;
  read_pending(st, ask_control);
  return st;
}

void read_pending(SessionStatus& st, bool ask_control) {
  if (ask_control && st.record && !st.orphaned && !st.record->control.empty()) {
    auto r = consent::control_request(st.record->control, {{"op", "pending"}});
    if (r && r->value("ok", false) && (*r)["pending"].is_array())
      for (const auto& p : (*r)["pending"]) st.pending.push_back(p);
    else if (!r)
      st.problems.push_back("control socket: " + r.error().message());
    if (!r) return;
    auto stats = consent::control_request(st.record->control, {{"op", "stats"}});
    if (stats && stats->value("ok", false) && (*stats)["proxy"].is_object())
      st.proxy = (*stats)["proxy"];
  }
}

nlohmann::json counters_json(const kernel::Counters& c) {
  nlohmann::json j = nlohmann::json::object();
  for (int f = 0; f < ACP_FAM_MAX; ++f)
    for (int p = 0; p < ACP_PRO_MAX; ++p) {
      if (c.allowed[f][p] == 0 && c.denied[f][p] == 0) continue;
      j[std::string(kFamilies[f]) + "/" + kProtos[p]] = {{"allowed", c.allowed[f][p]},
                                                         {"denied", c.denied[f][p]}};
    }
  return j;
}

}  // namespace

MachineStatus gather_status() {
  MachineStatus m;
  std::string bpf_why, ipt_why;
  if (kernel::bpf_backend_supported(&bpf_why)) {
    m.network = "bpf";
  } else if (backend::iptables_backend_supported(&ipt_why)) {
    m.network = "iptables";
    m.why_not = "cgroup BPF: " + bpf_why;
  } else if (std::string docker_why; backend::docker_backend_supported(&docker_why)) {
    m.network = "docker";
    m.why_not = "cgroup BPF: " + bpf_why + "; iptables: " + ipt_why;
  } else {
    m.network = "none";
    m.why_not = "cgroup BPF: " + bpf_why + "; iptables: " + ipt_why + "; docker: " + docker_why;
  }
  m.network_line = backend::mode_line(m.network);
  for (const auto& id : known_session_ids()) m.sessions.push_back(read_one(id, true));
  return m;
}

SessionStatus read_session_status(const std::string& id, bool ask_control) {
  return read_one(id, ask_control);
}

nlohmann::json status_to_json(const MachineStatus& m) {
  nlohmann::json out{{"network", m.network}, {"sessions", nlohmann::json::array()}};
  if (!m.why_not.empty()) out["why"] = m.why_not;
  for (const auto& s : m.sessions) out["sessions"].push_back(session_status_to_json(s));
  return out;
}

nlohmann::json session_status_to_json(const SessionStatus& s) {
  // The record's fields as the record writes them (one serializer), then what status read
  // from the kernel and the machine, which wins where both say something.
  nlohmann::json j = s.record ? to_json(*s.record) : nlohmann::json::object();
  j["id"] = s.id;
  j["orphaned"] = s.orphaned;
  j["mode"] = s.mode;
  j["backend"] = s.backend;
  j["network"] = s.network_line;
  if (!s.chain_rules.empty()) j["iptables_rules"] = s.chain_rules;
  if (s.populated) j["populated"] = *s.populated;
  j["programs"] = nlohmann::json::array();
  for (const auto& p : s.programs)
    j["programs"].push_back({{"id", p.prog_id},
                             {"link_id", p.link_id},
                             {"name", p.prog_name},
                             {"attach_type", p.attach_type}});
  j["allow"] = nlohmann::json::array();
  for (const auto& a : s.allow) j["allow"].push_back(kernel::to_string(a));
  if (s.backend == "bpf") {
    j["unix_walled"] = s.unix_walled;
    j["allow_unix"] = s.allow_unix;
  }
  j["counters"] = counters_json(s.counters);
  j["recent_denied"] = nlohmann::json::array();
  for (const auto& e : s.recent_denied) j["recent_denied"].push_back(kernel::event_to_json(e));
  j["lost_events"] = s.lost_events;
  j["pending"] = s.pending;
  if (!s.proxy.is_null()) j["proxy_counters"] = s.proxy;
  if (!s.problems.empty()) j["problems"] = s.problems;
  return j;
}

void print_pending_and_problems(std::ostringstream& o, const SessionStatus& s);

std::string status_to_text(const MachineStatus& m) {
  std::ostringstream o;
  o << m.network_line << "\n";
  if (!m.why_not.empty()) o << "  unavailable here: " << m.why_not << "\n";
  if (m.sessions.empty()) {
    o << "No sessions.\n";
    return o.str();
  }
  for (const auto& s : m.sessions) {
    o << "\nSession " << s.id << (s.orphaned ? "  [ORPHANED: acp is gone, the wall holds]" : "")
      << "\n";
    if (s.record) {
      o << "  agent pid:  " << s.record->agent_pid << " (user " << s.record->user << ")\n";
      if (s.record->owner == "daemon")
        o << "  held by:    acp daemon (pid " << s.record->acp_pid << ")"
          << (s.orphaned ? ", gone: a restarted daemon re-adopts this session" : "") << "\n";
      std::string cmd;
      for (const auto& a : s.record->command) cmd += (cmd.empty() ? "" : " ") + a;
      o << "  command:    " << consent::visible(cmd) << "\n";
      if (!s.record->container.empty())
        o << "  container:  " << s.record->container << " (image " << s.record->image
          << ", network " << s.record->container << " " << s.record->subnet << ")\n";
      else
        o << "  cgroup:     " << s.record->cgroup
          << (s.populated ? (*s.populated ? "" : " (empty)") : " (gone)") << "\n";
      std::string px;
      for (const auto& p : s.record->proxy) px += (px.empty() ? "" : ", ") + p;
      o << "  proxy:      " << px << "\n";
      if (!s.record->policy.empty()) o << "  policy:     " << s.record->policy << "\n";
      if (!s.record->control.empty()) o << "  control:    " << s.record->control << "\n";
      if (!s.record->audit_log.empty()) o << "  audit log:  " << s.record->audit_log << "\n";
      for (const auto& c : s.record->channels) o << "  consent:    " << c << "\n";
      if (!s.record->task_limit.empty()) o << "  tasks:      " << s.record->task_limit << "\n";
    }
    o << "  " << s.network_line << "\n";
    if (s.backend != "bpf") {
      if (!s.chain_rules.empty()) o << "  iptables rules:\n";
      for (const auto& r : s.chain_rules) o << "    " << r << "\n";
      print_pending_and_problems(o, s);
      continue;
    }
    o << "  mode:       " << (s.mode.empty() ? "?" : s.mode) << "\n";
    o << "  programs:\n";
    for (const auto& p : s.programs)
      o << "    id " << p.prog_id << "  " << p.prog_name << "  " << p.attach_type << "\n";
    o << "  allow map:\n";
    for (const auto& a : s.allow) o << "    " << kernel::to_string(a) << "\n";
    o << "  local IPC:  "
      << (s.unix_walled ? "walled (AF_UNIX connect/sendmsg judged)"
                        : "NOT walled (no connect_unix program: kernel < 6.7 or no BTF)")
      << "\n";
    for (const auto& u : s.allow_unix) o << "    allowed unix: " << u << "\n";
    o << "  counters:   allowed / denied\n";
    bool any = false;
    for (int f = 0; f < ACP_FAM_MAX; ++f)
      for (int p = 0; p < ACP_PRO_MAX; ++p) {
        if (s.counters.allowed[f][p] == 0 && s.counters.denied[f][p] == 0) continue;
        any = true;
        o << "    " << kFamilies[f] << "/" << kProtos[p] << ": " << s.counters.allowed[f][p]
          << " / " << s.counters.denied[f][p] << "\n";
      }
    if (!any) o << "    (no attempts yet)\n";
    if (!s.recent_denied.empty()) {
      // The newest few; `acp status --json` has them all.
      constexpr size_t kShown = 8;
      const size_t skip = s.recent_denied.size() > kShown ? s.recent_denied.size() - kShown : 0;
      o << "  recent denied";
      if (skip) o << " (latest " << kShown << " of " << s.recent_denied.size() << ")";
      o << ":\n";
      for (size_t i = skip; i < s.recent_denied.size(); ++i)
        o << "    " << consent::visible(kernel::describe_event(s.recent_denied[i])) << "\n";
    }
    if (s.lost_events) o << "  events lost (ring buffer full): " << s.lost_events << "\n";
    print_pending_and_problems(o, s);
  }
  return o.str();
}

void print_pending_and_problems(std::ostringstream& o, const SessionStatus& s) {
  if (s.proxy.is_object())
    o << "  proxy:      " << s.proxy.value("requests", uint64_t{0}) << " requests, "
      << s.proxy.value("allowed", uint64_t{0}) << " allowed, "
      << s.proxy.value("denied", uint64_t{0}) << " denied; "
      << s.proxy.value("foreign_clients", uint64_t{0})
      << " connections refused (client not in this session)\n";
  if (s.record && s.record->door != "proxy") {
    o << "  door:       " << s.record->door << " (TCP connects the wall does not allow are led to "
      << "the proxy)";
    if (s.proxy.is_object())
      o << ": " << s.proxy.value("door_connections", uint64_t{0}) << " led in, "
        << s.proxy.value("door_refused", uint64_t{0})
        << " refused before judging (no original destination, or a local one); DNS: "
        << s.proxy.value("dns_answered", uint64_t{0}) << " names answered, "
        << s.proxy.value("dns_denied", uint64_t{0}) << " denied (NXDOMAIN), "
        << s.proxy.value("dns_names", uint64_t{0}) << " names held";
    o << "\n";
  }
  // Docker: the container's DNS is the session's responder on the gateway (no door).
  if (s.backend == "docker" && s.proxy.is_object())
    o << "  dns:        the container's, answered on the gateway: "
      << s.proxy.value("dns_answered", uint64_t{0}) << " names answered, "
      << s.proxy.value("dns_denied", uint64_t{0}) << " denied (NXDOMAIN), "
      << s.proxy.value("dns_names", uint64_t{0}) << " names held\n";
  if (!s.pending.empty()) {
    o << "  pending requests (acp approve ID / acp deny ID):\n";
    for (const auto& p : s.pending) {
      // The agent's text made visible, long requests cut with a note (acp/proxy/display.hpp).
      const std::string id = consent::visible(p.value("id", "?"));
      o << "    " << id << "  "
        << consent::clip(consent::visible(p.value("summary", "?")), 200, "acp pending " + id)
        << "\n";
    }
  }
  for (const auto& p : s.problems) o << "  problem: " << p << "\n";
}

}  // namespace acp
