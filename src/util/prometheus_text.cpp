#include "acp/util/prometheus_text.hpp"

#include <cassert>
#include <charconv>
#include <cmath>

namespace acp::util {

namespace {

bool name_char(char c, bool first, bool colon) {
  const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  if (alpha || (colon && c == ':')) return true;
  return !first && c >= '0' && c <= '9';
}

bool valid_name(std::string_view name, bool colon) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i)
    if (!name_char(name[i], i == 0, colon)) return false;
  return true;
}

// \ as \\, a newline as \n and, inside a label value's quotes, " as \" (help text keeps
// its quotes).
std::string escape(std::string_view v, bool quotes) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else if (c == '"' && quotes)
      out += "\\\"";
    else
      out += c;
  }
  return out;
}

const char* type_name(MetricType t) {
  switch (t) {
    case MetricType::Counter:
      return "counter";
    case MetricType::Gauge:
      return "gauge";
    case MetricType::Histogram:
      return "histogram";
  }
  return "untyped";
}

}  // namespace

bool valid_metric_name(std::string_view name) {
  return valid_name(name, true);
}

bool valid_label_name(std::string_view name) {
  // Names starting with __ are reserved for Prometheus itself.
  return valid_name(name, false) && name.substr(0, 2) != "__";
}

std::string escape_label_value(std::string_view v) {
  return escape(v, true);
}

std::string format_sample_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

void PrometheusText::family(std::string_view name, MetricType type, std::string_view help) {
  assert(valid_metric_name(name));
  name_ = name;
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  out_ += escape(help, false);
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type_name(type);
  out_ += '\n';
}

void PrometheusText::series(std::string_view suffix, const Labels& labels,
                            std::string_view extra_name, std::string_view extra_value) {
  out_ += name_;
  out_ += suffix;
  if (!labels.empty() || !extra_name.empty()) {
    out_ += '{';
    bool first = true;
    auto label = [&](std::string_view n, std::string_view v) {
      assert(valid_label_name(n));
      if (!first) out_ += ',';
      first = false;
      out_ += n;
      out_ += "=\"";
      out_ += escape_label_value(v);
      out_ += '"';
    };
    for (const auto& [n, v] : labels) label(n, v);
    if (!extra_name.empty()) label(extra_name, extra_value);
    out_ += '}';
  }
  out_ += ' ';
}

void PrometheusText::sample(double value, const Labels& labels) {
  series("", labels, {}, {});
  out_ += format_sample_value(value);
  out_ += '\n';
}

void PrometheusText::sample(uint64_t value, const Labels& labels) {
  series("", labels, {}, {});
  out_ += std::to_string(value);
  out_ += '\n';
}

void PrometheusText::histogram(const HistogramSnapshot& h, const Labels& labels) {
  uint64_t cumulative = 0;
  for (size_t i = 0; i < h.bounds.size(); ++i) {
    cumulative += i < h.counts.size() ? h.counts[i] : 0;
    series("_bucket", labels, "le", format_sample_value(h.bounds[i]));
    out_ += std::to_string(cumulative) + '\n';
  }
  const uint64_t total = h.count();
  series("_bucket", labels, "le", "+Inf");
  out_ += std::to_string(total) + '\n';
  series("_sum", labels, {}, {});
  out_ += format_sample_value(h.sum) + '\n';
  series("_count", labels, {}, {});
  out_ += std::to_string(total) + '\n';
}

void PrometheusText::counter(std::string_view name, std::string_view help, uint64_t value) {
  family(name, MetricType::Counter, help);
  sample(value);
}

void PrometheusText::gauge(std::string_view name, std::string_view help, double value) {
  family(name, MetricType::Gauge, help);
  sample(value);
}

}  // namespace acp::util
