// The Prometheus text writer and the latency histogram: escaping, cumulative buckets ending in
// +Inf, value formatting; and the output read back by a real parser (prometheus_client, when
// Debian's python3-prometheus-client is installed) through scripts/check-metrics.py.
#include "acp/util/prometheus_text.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "acp/util/histogram.hpp"

namespace {

using acp::util::Histogram;
using acp::util::HistogramSnapshot;
using acp::util::MetricType;
using acp::util::PrometheusText;

TEST(UtilPrometheusText, FamilyHasHelpAndTypeThenItsSamples) {
  PrometheusText t;
  t.family("acp_decisions_total", MetricType::Counter, "Decisions.");
  t.sample(uint64_t{3}, {{"verdict", "allow"}, {"decider", "policy"}});
  t.sample(uint64_t{0}, {{"verdict", "deny"}, {"decider", "human"}});
  t.gauge("acp_consent_asks_pending", "Asks waiting.", 2);
  EXPECT_EQ(t.text(),
            "# HELP acp_decisions_total Decisions.\n"
            "# TYPE acp_decisions_total counter\n"
            "acp_decisions_total{verdict=\"allow\",decider=\"policy\"} 3\n"
            "acp_decisions_total{verdict=\"deny\",decider=\"human\"} 0\n"
            "# HELP acp_consent_asks_pending Asks waiting.\n"
            "# TYPE acp_consent_asks_pending gauge\n"
            "acp_consent_asks_pending 2\n");
}

TEST(UtilPrometheusText, LabelValuesAndHelpAreEscaped) {
  EXPECT_EQ(acp::util::escape_label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
  PrometheusText t;
  t.family("x_total", MetricType::Counter, "back\\slash \"quoted\"\nsecond line");
  t.sample(uint64_t{1}, {{"pod", "we\"ird\\name\n"}});
  EXPECT_EQ(t.text(),
            "# HELP x_total back\\\\slash \"quoted\"\\nsecond line\n"
            "# TYPE x_total counter\n"
            "x_total{pod=\"we\\\"ird\\\\name\\n\"} 1\n");
}

TEST(UtilPrometheusText, ValuesAreShortestRoundTripOrSpecial) {
  using acp::util::format_sample_value;
  EXPECT_EQ(format_sample_value(0), "0");
  EXPECT_EQ(format_sample_value(42), "42");
  EXPECT_EQ(format_sample_value(0.1), "0.1");
  EXPECT_EQ(format_sample_value(0.000025), "2.5e-05");
  EXPECT_EQ(format_sample_value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(format_sample_value(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(format_sample_value(std::numeric_limits<double>::quiet_NaN()), "NaN");
}

TEST(UtilPrometheusText, NamesAreChecked) {
  EXPECT_TRUE(acp::util::valid_metric_name("acp_proxy_bytes_total"));
  EXPECT_TRUE(acp::util::valid_metric_name("ns:rule_x"));
  EXPECT_FALSE(acp::util::valid_metric_name("9lives"));
  EXPECT_FALSE(acp::util::valid_metric_name("acp-daemon"));
  EXPECT_FALSE(acp::util::valid_metric_name(""));
  EXPECT_TRUE(acp::util::valid_label_name("decider"));
  EXPECT_FALSE(acp::util::valid_label_name("a:b"));
  EXPECT_FALSE(acp::util::valid_label_name("__name__"));
}

TEST(UtilPrometheusText, HistogramBucketsAreCumulativeAndEndInInf) {
  const double bounds[] = {0.1, 1};
  Histogram h(bounds);
  h.observe(0.05);                                      // le 0.1
  h.observe(0.1);                                       // le 0.1: a bound is inclusive
  h.observe(0.5);                                       // le 1
  h.observe(7.0);                                       // +Inf only
  h.observe(std::numeric_limits<double>::quiet_NaN());  // dropped
  const HistogramSnapshot s = h.snapshot();
  EXPECT_EQ(s.counts, (std::vector<uint64_t>{2, 1, 1}));
  EXPECT_EQ(s.count(), 4u);
  EXPECT_DOUBLE_EQ(s.sum, 7.65);
  PrometheusText t;
  t.family("acp_x_seconds", MetricType::Histogram, "X.");
  t.histogram(s, {{"kind", "http"}});
  EXPECT_EQ(t.text(),
            "# HELP acp_x_seconds X.\n"
            "# TYPE acp_x_seconds histogram\n"
            "acp_x_seconds_bucket{kind=\"http\",le=\"0.1\"} 2\n"
            "acp_x_seconds_bucket{kind=\"http\",le=\"1\"} 3\n"
            "acp_x_seconds_bucket{kind=\"http\",le=\"+Inf\"} 4\n"
            "acp_x_seconds_sum{kind=\"http\"} 7.65\n"
            "acp_x_seconds_count{kind=\"http\"} 4\n");
}

TEST(UtilPrometheusText, AnEmptySnapshotHasEveryBucket) {
  PrometheusText t;
  t.family("acp_x_seconds", MetricType::Histogram, "X.");
  t.histogram(HistogramSnapshot{});
  EXPECT_NE(t.text().find("acp_x_seconds_bucket{le=\"2.5e-05\"} 0\n"), std::string::npos);
  EXPECT_NE(t.text().find("acp_x_seconds_bucket{le=\"300\"} 0\n"), std::string::npos);
  EXPECT_NE(t.text().find("acp_x_seconds_bucket{le=\"+Inf\"} 0\n"), std::string::npos);
}

TEST(UtilPrometheusText, SnapshotsAddBucketByBucket) {
  Histogram a, b;
  a.observe(0.002);
  b.observe(0.002);
  b.observe(400.0);
  HistogramSnapshot total;
  total += a.snapshot();
  total += b.snapshot();
  EXPECT_EQ(total.bounds.size(), acp::util::kLatencyBuckets.size());
  EXPECT_EQ(total.count(), 3u);
  EXPECT_EQ(total.counts.back(), 1u);
  EXPECT_DOUBLE_EQ(total.sum, 400.004);
}

TEST(UtilPrometheusText, ObservedFromAnotherThreadWhileRead) {
  Histogram h;
  std::thread writer([&] {
    for (int i = 0; i < 100000; ++i) h.observe(0.001);
  });
  uint64_t last = 0;
  for (int i = 0; i < 1000; ++i) {
    const uint64_t n = h.snapshot().count();
    EXPECT_GE(n, last);
    last = n;
  }
  writer.join();
  EXPECT_EQ(h.snapshot().count(), 100000u);
}

// The writer's output as a real parser reads it: names, label values with every escape, the
// histogram's buckets.
TEST(UtilPrometheusText, RealParserReadsItBack) {
  if (access("/usr/bin/python3", X_OK) != 0 ||
      std::system("/usr/bin/python3 -c 'import prometheus_client' 2>/dev/null") != 0)
    GTEST_SKIP() << "python3-prometheus-client is not installed (scripts/install-deps.sh)";
  PrometheusText t;
  t.family("acp_decisions_total", MetricType::Counter, "Decisions \"by\" verdict\\decider.");
  t.sample(uint64_t{5}, {{"verdict", "allow"}, {"decider", "policy"}});
  t.family("acp_node_pod_denied_connects", MetricType::Gauge, "Per pod.");
  t.sample(uint64_t{2}, {{"namespace", "ns"}, {"pod", "a\"b\\c\nd"}});
  t.family("acp_x_seconds", MetricType::Histogram, "X.");
  Histogram h;
  h.observe(0.003);
  h.observe(1000.0);
  t.histogram(h.snapshot());
  char path[] = "/tmp/acp-prom-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  std::ofstream(path) << t.text();
  const std::string cmd = std::string("/usr/bin/python3 ") + ACP_SOURCE_DIR +
                          "/scripts/check-metrics.py " + path + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = pclose(p);
  unlink(path);
  ASSERT_EQ(WEXITSTATUS(status), 0) << out << "\n" << t.text();
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["families"]["acp_decisions"]["type"], "counter");
  EXPECT_EQ(j["families"]["acp_decisions"]["help"], "Decisions \"by\" verdict\\decider.");
  EXPECT_EQ(j["samples"]["acp_decisions_total{decider=\"policy\",verdict=\"allow\"}"], 5);
  EXPECT_EQ(j["samples"]["acp_node_pod_denied_connects{namespace=\"ns\",pod=\"a\"b\\c\nd\"}"], 2)
      << out;
  EXPECT_EQ(j["families"]["acp_x_seconds"]["type"], "histogram");
  EXPECT_EQ(j["samples"]["acp_x_seconds_bucket{le=\"+Inf\"}"], 2);
  EXPECT_EQ(j["samples"]["acp_x_seconds_bucket{le=\"0.005\"}"], 1);
  EXPECT_EQ(j["samples"]["acp_x_seconds_count"], 2);
}

}  // namespace
