// A latency histogram with fixed buckets, in seconds (Prometheus' base unit): observed on one
// thread (the proxy's event loop, the audit log's writer) and read on another (a /metrics
// scrape) without locks: every bucket is a relaxed atomic counter.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace acp::util {

// The upper bounds of every ACP latency histogram: from 25 us (a cached policy decision, an
// audit group commit on a fast disk) to 5 minutes (a human answering an ask).
inline constexpr std::array<double, 22> kLatencyBuckets = {
    0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1,      0.25,    0.5,    1,       2.5,    5,     10,     30,    60,   120,   300};

// What a histogram held at one moment: per-bucket (not cumulative) counts, the last one for
// values above every bound (+Inf). A default one is an empty kLatencyBuckets histogram, so a
// series has all its buckets before its first observation.
struct HistogramSnapshot {
  std::vector<double> bounds{kLatencyBuckets.begin(), kLatencyBuckets.end()};  // +Inf left out
  std::vector<uint64_t> counts = std::vector<uint64_t>(kLatencyBuckets.size() + 1);
  double sum = 0;

  uint64_t count() const;
  // Adds `o` bucket by bucket. With other bounds, an empty snapshot takes o's; a non-empty one
  // keeps its own and ignores o (every ACP histogram uses kLatencyBuckets).
  HistogramSnapshot& operator+=(const HistogramSnapshot& o);
};

class Histogram {
 public:
  explicit Histogram(std::span<const double> bounds = kLatencyBuckets);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  // A value lands in the first bucket whose bound is >= it (Prometheus' "le"). NaN is dropped.
  void observe(double seconds);
  void observe(std::chrono::steady_clock::duration d) {
    observe(std::chrono::duration<double>(d).count());
  }
  HistogramSnapshot snapshot() const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1
  std::atomic<double> sum_{0};
};

}  // namespace acp::util
