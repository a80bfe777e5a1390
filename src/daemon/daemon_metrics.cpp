#include "acp/daemon/daemon_metrics.hpp"

#include "acp/kernel/event_reader.hpp"
#include "acp/util/prometheus_text.hpp"

namespace acp::daemon {

using util::MetricType;

void DaemonMetrics::count_event(const acp_event& e) {
  if (e.hook >= ACP_HOOK_MAX || e.verdict == ACP_VERDICT_ALLOW) return;
  ++denials[e.hook][e.verdict == ACP_VERDICT_AUDIT_DENY ? 1 : 0];
}

std::string render_daemon_metrics(const DaemonMetrics& m) {
  util::PrometheusText t;
  // Sessions.
  t.gauge("acp_daemon_sessions", "Sessions the daemon holds now (wall and door).",
          static_cast<double>(m.sessions));
  t.counter("acp_daemon_sessions_registered_total", "Sessions acp run registered.", m.registered);
  t.counter("acp_daemon_sessions_readopted_total",
            "Sessions of a previous daemon taken over at start.", m.readopted);
  t.counter("acp_daemon_sessions_ended_total", "Sessions taken down (their agent ended).", m.ended);
  t.counter("acp_daemon_register_failures_total",
            "Register requests refused (bad request, or the session could not be built).",
            m.register_failures);

  // Decisions.
  const auto& d = m.door.decisions;
  t.family("acp_decisions_total", MetricType::Counter,
           "Requests judged, by verdict (what happened) and decider (policy, human, grant: an "
           "earlier approval, timeout, error).");
  for (int allowed = 1; allowed >= 0; --allowed)
    for (size_t i = 0; i < consent::kDeciders; ++i)
      t.sample(d.count[allowed][i], {{"verdict", allowed ? "allow" : "deny"},
                                     {"decider", consent::to_string(consent::Decider(i))}});
  t.family("acp_decision_duration_seconds", MetricType::Histogram,
           "Time from a request's action to its verdict on disk: policy, the wait for a human, "
           "the audit sync.");
  for (size_t i = 0; i < consent::kDeciders; ++i)
    t.histogram(d.latency[i], {{"decider", consent::to_string(consent::Decider(i))}});
  t.gauge("acp_consent_asks_pending", "Asks waiting for a human now.",
          static_cast<double>(m.door.asks_pending));
  t.gauge("acp_consent_oldest_ask_age_seconds",
          "How long the oldest pending ask has waited (0 when none waits).",
          m.door.oldest_ask_seconds);

  // The proxies.
  const auto& p = m.door.proxy;
  t.counter("acp_proxy_connections_total", "Client connections accepted by the proxies.",
            p.connections);
  t.gauge("acp_proxy_connections_open", "Client connections open now.",
          static_cast<double>(p.open));
  t.counter("acp_proxy_requests_total", "Requests judged (HTTP requests, CONNECTs, tool calls).",
            p.requests);
  t.counter("acp_proxy_tunnels_total", "CONNECT tunnels established.", p.tunnels);
  t.counter("acp_proxy_forwarded_total", "Requests the proxies forwarded to their origin.",
            p.allowed);
  t.counter("acp_proxy_denied_total", "Requests refused with 403.", p.denied);
  t.counter("acp_proxy_errors_total",
            "Other refusals and broken exchanges (malformed requests, limits, upstream failures).",
            p.errors);
  t.counter("acp_proxy_foreign_clients_total",
            "Connections refused at accept: the client is not in the session's cgroup.", p.foreign);
  t.counter("acp_proxy_door_connections_total",
            "Connections the walls led to the transparent door (--door=transparent|both).", p.door);
  t.counter("acp_proxy_door_refused_total",
            "Of those, refused before judging (no original destination, a local one).",
            p.door_refused);
  t.counter("acp_proxy_dns_answered_total",
            "DNS queries of door sessions answered (a synthetic address, or no records).",
            p.dns_answered);
  t.counter("acp_proxy_dns_denied_total",
            "DNS queries of door sessions answered NXDOMAIN: names the policy denies everywhere.",
            p.dns_denied);
  t.gauge("acp_proxy_dns_names", "Names holding a synthetic address in door sessions now.",
          static_cast<double>(p.dns_names));
  t.family("acp_proxy_bytes_total", MetricType::Counter,
           "Bytes relayed, counted as each request or tunnel ends: up = client to origin, down = "
           "origin to client.");
  t.sample(p.bytes_up, {{"direction", "up"}});
  t.sample(p.bytes_down, {{"direction", "down"}});
  t.family("acp_proxy_request_duration_seconds", MetricType::Histogram,
           "Time from a request's head to its answer's status line (the origin's response, a "
           "tunnel's 200, a refusal); kind connect: CONNECTs and the transparent door.");
  t.histogram(m.door.latency.http, {{"kind", "http"}});
  t.histogram(m.door.latency.connect, {{"kind", "connect"}});

  // The audit log.
  const auto& a = m.door.audit;
  t.counter("acp_audit_records_total", "Audit lines written and synced.", a.records);
  t.counter("acp_audit_syncs_total", "Audit group commits (one write and one fdatasync each).",
            a.syncs);
  t.counter("acp_audit_failed_records_total",
            "Audit entries whose write or sync failed (their requests were denied).", a.failed);
  t.family("acp_audit_sync_duration_seconds", MetricType::Histogram,
           "Time of each audit group commit: write() and fdatasync().");
  t.histogram(a.sync_seconds);

  // The walls.
  t.family("acp_kernel_connects_total", MetricType::Counter,
           "connect()/sendmsg()/socket() attempts the walls' programs judged (BPF counters).");
  for (int verdict = 0; verdict < 2; ++verdict)
    for (int fam = 0; fam < ACP_FAM_MAX; ++fam)
      for (int pro = 0; pro < ACP_PRO_MAX; ++pro)
        t.sample(verdict ? m.kernel.denied[fam][pro] : m.kernel.allowed[fam][pro],
                 {{"verdict", verdict ? "deny" : "allow"},
                  {"family", kernel::counter_family_name(fam)},
                  {"protocol", kernel::counter_proto_name(pro)}});
  t.family("acp_kernel_denials_total", MetricType::Counter,
           "Attempts the walls refused (mode audit: would have refused), by hook, from their "
           "events.");
  for (int hook = 0; hook < ACP_HOOK_MAX; ++hook) {
    const std::string name = kernel::hook_name(static_cast<uint8_t>(hook));
    t.sample(m.denials[hook][0], {{"hook", name}, {"mode", "enforce"}});
    t.sample(m.denials[hook][1], {{"hook", name}, {"mode", "audit"}});
  }
  t.counter("acp_kernel_events_lost_total",
            "Wall events dropped because the ring buffer was full (not in "
            "acp_kernel_denials_total).",
            m.kernel_events_lost);
  return t.text();
}

}  // namespace acp::daemon
