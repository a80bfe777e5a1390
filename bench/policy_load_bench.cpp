// Policy load and decide speed. PRODUCT.md: 100k policy hosts load in under 1 s.
// Prints the load time of 100k host rules (best and median of 5 runs; the YAML parse alone for
// comparison) and the decide() cost for an exact host, a suffix host and a miss.
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "acp/proxy/policy.hpp"
#include "acp/proxy/policy_yaml.hpp"

using Clock = std::chrono::steady_clock;

static double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// CPU time of this thread: on a busy machine, wall time counts other processes' turns too.
static double cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 100000;
  std::string yaml = "default: ask\nrules:\n";
  for (int i = 0; i < n; ++i) {
    // Mostly exact hosts, some `*.suffix` globs, as a large allow-list looks.
    if (i % 10 == 0)
      yaml += "  - match: { kind: http, host: \"*.zone" + std::to_string(i) + ".example.org\" }\n";
    else
      yaml += "  - match: { kind: http, host: \"host" + std::to_string(i) + ".example.com\" }\n";
    yaml += "    action: allow\n";
  }
  std::printf("policy: %d rules, %.1f MB of YAML\n", n, yaml.size() / 1e6);

  std::vector<double> times, cpu;
  for (int run = 0; run < 5; ++run) {
    auto t0 = Clock::now();
    double c0 = cpu_ms();
    auto p = acp::policy::Policy::parse(yaml, "bench.yml");
    cpu.push_back(cpu_ms() - c0);
    times.push_back(ms_since(t0));  // freeing the policy is not part of loading it
    if (!p) {
      std::fprintf(stderr, "load failed: %s\n", p.error().message().c_str());
      return 1;
    }
  }
  std::sort(times.begin(), times.end());
  std::sort(cpu.begin(), cpu.end());
  std::printf(
      "load %d host rules: best %.1f ms, median %.1f ms wall; best %.1f ms, median %.1f "
      "ms CPU (target < 1000 ms)\n",
      n, times.front(), times[times.size() / 2], cpu.front(), cpu[cpu.size() / 2]);

  // The same rules written in block style, unquoted, as hand-edited files often are.
  std::string block = "default: ask\nrules:\n";
  for (int i = 0; i < n; ++i) {
    block += "  - match:\n      kind: http\n      host: host" + std::to_string(i) +
             ".example.com\n    action: allow\n";
  }
  double block_wall = 1e9, block_cpu = 1e9;
  for (int run = 0; run < 3; ++run) {
    double c0 = cpu_ms();
    auto t1 = Clock::now();
    auto p = acp::policy::Policy::parse(block, "block.yml");
    block_cpu = std::min(block_cpu, cpu_ms() - c0);
    block_wall = std::min(block_wall, ms_since(t1));
    if (!p) return 1;
  }
  std::printf("load %d host rules, block style (%.1f MB): best %.1f ms wall, %.1f ms CPU\n", n,
              block.size() / 1e6, block_wall, block_cpu);

  auto t0 = Clock::now();
  auto doc = acp::policy::yaml::parse(yaml, "bench.yml");
  std::printf("YAML parse alone (libyaml, for comparison): %.1f ms\n", ms_since(t0));
  if (!doc) return 1;

  auto policy = acp::policy::Policy::parse(yaml, "bench.yml");
  acp::Action hit, suffix, miss;
  hit.host = "HOST" + std::to_string(n - 1) + ".example.com.";
  hit.port = 443;
  hit.method = "CONNECT";
  suffix = hit;
  suffix.host = "a.b.zone" + std::to_string(((n - 1) / 10) * 10) + ".example.org";
  miss = hit;
  miss.host = "nowhere.example.net";
  for (const auto& [label, action] :
       {std::pair{"exact host (last rule)", hit}, std::pair{"*.suffix host", suffix},
        std::pair{"no rule matches", miss}}) {
    const int iters = 200000;
    int allowed = 0;
    auto t1 = Clock::now();
    for (int i = 0; i < iters; ++i)
      allowed += policy->decide(action).verdict == acp::Verdict::Allow;
    std::printf("decide, %s: %.0f ns each (%s)\n", label, ms_since(t1) * 1e6 / iters,
                allowed ? "allow" : "default");
  }
  return 0;
}
