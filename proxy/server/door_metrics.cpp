#include "acp/proxy/door_metrics.hpp"

#include <algorithm>

namespace acp::proxy {

DoorMetrics& DoorMetrics::operator+=(const DoorMetrics& o) {
  proxy.connections += o.proxy.connections;
  proxy.requests += o.proxy.requests;
  proxy.tunnels += o.proxy.tunnels;
  proxy.allowed += o.proxy.allowed;
  proxy.denied += o.proxy.denied;
  proxy.errors += o.proxy.errors;
  proxy.foreign += o.proxy.foreign;
  proxy.door += o.proxy.door;
  proxy.door_refused += o.proxy.door_refused;
  proxy.dns_answered += o.proxy.dns_answered;
  proxy.dns_denied += o.proxy.dns_denied;
  proxy.dns_names += o.proxy.dns_names;
  proxy.open += o.proxy.open;
  proxy.bytes_up += o.proxy.bytes_up;
  proxy.bytes_down += o.proxy.bytes_down;
  latency.http += o.latency.http;
  latency.connect += o.latency.connect;
  decisions += o.decisions;
  audit += o.audit;
  asks_pending += o.asks_pending;
  oldest_ask_seconds = std::max(oldest_ask_seconds, o.oldest_ask_seconds);
  return *this;
}

DoorMetrics DoorMetrics::counters_only() const {
  DoorMetrics m = *this;
  m.proxy.open = 0;
  m.proxy.dns_names = 0;
  m.asks_pending = 0;
  m.oldest_ask_seconds = 0;
  return m;
}

}  // namespace acp::proxy
