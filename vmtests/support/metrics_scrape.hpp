// A /metrics endpoint as Prometheus' own client library reads it: scripts/check-metrics.py
// fetches it and parses it with prometheus_client (Debian's python3-prometheus-client), checks
// its shape (every sample in its family, counters ending in _total, histograms cumulative up
// to +Inf and agreeing with _count) and hands back the samples. Used by the daemon and node
// agent vmtests.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace acp::vmtest {

struct Scrape {
  std::string output;  // what the checker printed (JSON, or its error)
  nlohmann::json
      families;  // {name: {type, help}}; counters without _total, as the parser names them
  nlohmann::json samples;   // {"name{a=\"x\",b=\"y\"}": value}, labels sorted by name
  nlohmann::json problems;  // [] when the answer is well-formed
  bool ok() const { return problems.is_array() && problems.empty() && samples.is_object(); }
  // samples[key], or -1 when there is no such sample.
  double value(const std::string& key) const;
};

// Whether /usr/bin/python3 can import prometheus_client.
bool prometheus_parser_available();
Scrape scrape_metrics(uint16_t port, const std::string& path = "/metrics");

}  // namespace acp::vmtest
