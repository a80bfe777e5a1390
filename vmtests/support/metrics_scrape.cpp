#include "support/metrics_scrape.hpp"

#include <cstdlib>

#include "support/run_fixture.hpp"

namespace acp::vmtest {

double Scrape::value(const std::string& key) const {
  if (!samples.is_object() || !samples.contains(key) || !samples[key].is_number()) return -1;
  return samples[key].get<double>();
}

bool prometheus_parser_available() {
  return std::system("/usr/bin/python3 -c 'import prometheus_client' >/dev/null 2>&1") == 0;
}

Scrape scrape_metrics(uint16_t port, const std::string& path) {
  Scrape s;
  auto r = run({"/usr/bin/python3", std::string(ACP_SOURCE_DIR) + "/scripts/check-metrics.py",
                "http://127.0.0.1:" + std::to_string(port) + path});
  s.output = r.out;
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    s.problems = nlohmann::json::array(
        {"the checker printed no JSON (status " + std::to_string(r.status) + ")"});
    return s;
  }
  s.families = j.value("families", nlohmann::json::object());
  s.samples = j.value("samples", nlohmann::json::object());
  s.problems = j.value("problems", nlohmann::json::array());
  return s;
}

}  // namespace acp::vmtest
