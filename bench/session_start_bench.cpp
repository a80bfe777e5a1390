// How long a whole session takes to start and end around an agent that does nothing (issue 17,
// target 6): `acp run --user=nobody -- /bin/true` standalone and through a running `acp
// daemon`, beside what it replaces, `runuser -u nobody -- /bin/true` (the same user switch
// without a wall). The real binary each time, wall clock from spawn to exit: BTF and program
// loading, verification, cgroup, pins, proxy, audit log, agent, teardown. Needs root.
//
//   sudo build/bench/session_start_bench [--runs=20] [--gap-ms=300] [--acp=PATH]
//
// --gap-ms: a pause before each run (every way alike), as between sessions a person starts:
// the daemon verifies the next session's programs after each registration, and a session
// that arrives while it does waits for it.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "acp/backend/command.hpp"

namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

std::string arg(int argc, char** argv, const std::string& name, const std::string& fallback) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind(name + "=", 0) == 0) return a.substr(name.size() + 1);
  }
  return fallback;
}

struct Times {
  std::vector<double> ms;
  int failures = 0;
  double pct(double p) const {
    if (ms.empty()) return 0;
    std::vector<double> s = ms;
    std::sort(s.begin(), s.end());
    return s[std::min(s.size() - 1, static_cast<size_t>(p * static_cast<double>(s.size())))];
  }
};

int g_gap_ms = 300;

Times time_runs(const std::vector<std::string>& argv, int runs) {
  Times t;
  for (int i = 0; i < runs; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(g_gap_ms));
    const auto start = Clock::now();
    auto r = acp::backend::run_command(argv);
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    if (!r || r->exit_code != 0) {
      if (t.failures++ == 0)
        std::fprintf(stderr, "failed: %s\n",
                     r ? (r->err.empty() ? r->out : r->err).c_str() : r.error().message().c_str());
      continue;
    }
    t.ms.push_back(ms);
  }
  return t;
}

void row(const char* way, const Times& t, const Times& base) {
  std::printf("  %-34s %8.1f %8.1f %8.1f %6d", way, t.pct(0.5), t.pct(0.9), t.pct(1.0), t.failures);
  if (&t != &base && base.pct(0.5) > 0) std::printf("   %6.1fx", t.pct(0.5) / base.pct(0.5));
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (::geteuid() != 0) {
    std::fprintf(stderr, "session_start_bench: needs root (acp run builds a bpf wall)\n");
    return 2;
  }
  const int runs = std::max(1, std::atoi(arg(argc, argv, "--runs", "20").c_str()));
  const std::string acp = arg(argc, argv, "--acp", ACP_BINARY);
  g_gap_ms = std::max(0, std::atoi(arg(argc, argv, "--gap-ms", "300").c_str()));
  char tmpl[] = "/tmp/acp-start-bench.XXXXXX";
  if (!::mkdtemp(tmpl)) return 2;
  const std::string dir = tmpl;
  std::ofstream(dir + "/config.yml") << "channels:\n  web:\n    enabled: false\n";
  const std::string sock = dir + "/daemon.sock";
  const std::vector<std::string> common = {"--user=nobody", "--config=" + dir + "/config.yml",
                                           "--audit-log=" + dir + "/audit.jsonl"};
  auto acp_run = [&](const std::string& daemon) {
    std::vector<std::string> a = {acp, "run", "--daemon=" + daemon, "--daemon-socket=" + sock};
    a.insert(a.end(), common.begin(), common.end());
    a.insert(a.end(), {"--", "/bin/true"});
    return a;
  };
  auto runuser = acp::backend::find_tool("runuser");
  if (!runuser) {
    std::fprintf(stderr, "session_start_bench: runuser not found (util-linux)\n");
    return 2;
  }

  std::printf("%d runs each, %d ms apart; ms from spawn to exit\n", runs, g_gap_ms);
  std::printf("  %-34s %8s %8s %8s %6s   %s\n", "way", "p50", "p90", "max", "fails",
              "p50 / runuser");
  const Times bare = time_runs({*runuser, "-u", "nobody", "--", "/bin/true"}, runs);
  row("runuser -u nobody (no wall)", bare, bare);
  const Times standalone = time_runs(acp_run("never"), runs);
  row("acp run (standalone)", standalone, bare);

  // A daemon of the bench's own, on a private socket.
  pid_t daemon = ::fork();
  if (daemon == 0) {
    std::freopen((dir + "/daemon.log").c_str(), "w", stderr);
    ::execl(acp.c_str(), acp.c_str(), "daemon", ("--socket=" + sock).c_str(),
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  for (int i = 0; i < 100 && !fs::exists(sock); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (fs::exists(sock)) {
    const Times through = time_runs(acp_run("required"), runs);
    row("acp run (through acp daemon)", through, bare);
  } else {
    std::printf("  acp daemon did not start: see %s/daemon.log\n", dir.c_str());
  }
  if (daemon > 0) {
    ::kill(daemon, SIGTERM);
    int st = 0;
    ::waitpid(daemon, &st, 0);
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  // acp run makes /etc/acp/config.yml on first use; --config points elsewhere, so nothing is
  // left there by the bench.
  return 0;
}
