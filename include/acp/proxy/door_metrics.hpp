// What one session's door has counted: its consent proxy (connections, requests, bytes, time
// to answer), its judge (decisions by verdict and decider), its audit log (records, group
// commits and their sync time) and its consent gate (asks waiting now). `acp daemon --metrics`
// adds them up over its sessions (docs/daemon.md, "Metrics").
#pragma once

#include <cstdint>

#include "acp/proxy/audit_log.hpp"
#include "acp/proxy/consent_judge.hpp"
#include "acp/proxy/proxy_server.hpp"

namespace acp::proxy {

struct DoorMetrics {
  ProxyCounters proxy;
  ProxyLatency latency;
  consent::DecisionMetrics decisions;
  audit::AuditLog::Stats audit;
  // Gauges: asks waiting for a human now, and how long the oldest has waited.
  uint64_t asks_pending = 0;
  double oldest_ask_seconds = 0;

  // Counters and histograms add up; of the gauges, open connections and asks add up and the
  // oldest ask is the older one.
  DoorMetrics& operator+=(const DoorMetrics& o);
  // The same without the gauges: what an ended session leaves to the daemon's totals.
  DoorMetrics counters_only() const;
};

}  // namespace acp::proxy
