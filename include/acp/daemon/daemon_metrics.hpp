// `acp daemon --metrics=ADDR:PORT`: what the daemon serves at /metrics, in Prometheus' text
// format (acp/util/prometheus_text.hpp). Totals over the daemon's life: a session that ends
// leaves its counts behind, so every counter only grows while the daemon runs. Every name is in
// docs/daemon.md ("Metrics"); tests/daemon_metrics_test.cpp checks that they agree.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "acp/kernel/session_maps.hpp"
#include "acp/proxy/door_metrics.hpp"
#include "acp_abi.h"

namespace acp::daemon {

struct DaemonMetrics {
  uint64_t sessions = 0;  // held now
  uint64_t registered = 0, readopted = 0, ended = 0, register_failures = 0;
  proxy::DoorMetrics door;  // every session's door, summed
  kernel::Counters kernel;  // every session's wall (the BPF counters), summed
  uint64_t kernel_events_lost = 0;
  // Refused attempts by hook, from the walls' events: [hook][0 enforce, 1 audit mode].
  std::array<std::array<uint64_t, 2>, ACP_HOOK_MAX> denials{};

  void count_event(const acp_event& e);
};

std::string render_daemon_metrics(const DaemonMetrics& m);

}  // namespace acp::daemon
