// Prometheus' text exposition format (version 0.0.4), written once for `acp daemon --metrics`
// and `acp node-agent`'s /metrics: "# HELP" and "# TYPE" once per family, its samples right
// after them, label values and help text escaped, histograms as cumulative _bucket{le=...}
// series ending in le="+Inf", then _sum and _count.
// https://prometheus.io/docs/instrumenting/exposition_formats/
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "acp/util/histogram.hpp"

namespace acp::util {

// The Content-Type of a /metrics answer in this format.
inline constexpr const char* kPrometheusContentType = "text/plain; version=0.0.4; charset=utf-8";

enum class MetricType { Counter, Gauge, Histogram };

// Label names and values, in the order written; values are escaped by the writer.
using Labels = std::vector<std::pair<std::string_view, std::string_view>>;

class PrometheusText {
 public:
  // Starts a family. Every sample() or histogram() until the next family() belongs to it, so a
  // family's samples are never split (the format requires them together). `name` must be a
  // valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*); a counter's ends in _total.
  void family(std::string_view name, MetricType type, std::string_view help);
  // A counter's or gauge's sample of the current family.
  void sample(double value, const Labels& labels = {});
  void sample(uint64_t value, const Labels& labels = {});
  // The current histogram family's series for `labels`: one _bucket per bound and +Inf
  // (cumulative), _sum, _count.
  void histogram(const HistogramSnapshot& h, const Labels& labels = {});

  // A family with one unlabelled sample.
  void counter(std::string_view name, std::string_view help, uint64_t value);
  void gauge(std::string_view name, std::string_view help, double value);

  const std::string& text() const { return out_; }

 private:
  void series(std::string_view suffix, const Labels& labels, std::string_view extra_name,
              std::string_view extra_value);
  std::string out_;
  std::string name_;
};

// For tests and callers that check their own names.
bool valid_metric_name(std::string_view name);
bool valid_label_name(std::string_view name);
// A label value inside its quotes: \ as \\, " as \", a newline as \n.
std::string escape_label_value(std::string_view v);
// A sample value: integers as integers, others in the shortest form that reads back the same
// double, +Inf, -Inf, NaN.
std::string format_sample_value(double v);

}  // namespace acp::util
