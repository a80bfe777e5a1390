// Shared pieces of the `acp run` end-to-end vmtests (run_session_test, run_proxy_test): child
// processes with captured output, free loopback ports, python3 origins, policy files, the
// `acp run` command line and `acp pending --json` polling.
//
// RunFixture cleans up after itself in TearDown: the origins it started are stopped, a session
// of its own left behind by a failed test is ended (`acp gc --kill`), the tmp dir is removed.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace acp::vmtest {

// The start of a python agent that forges its IPv6 source (IPV6_FREEBIND needs no privilege):
// freebound(kind) makes a socket bound to 2001:db8::99, and q is a DNS query for exfi.test.
inline constexpr const char* kForgedIpv6Source =
    "import socket, struct, sys\n"
    "def freebound(kind):\n"
    "    s = socket.socket(socket.AF_INET6, kind)\n"
    "    s.setsockopt(socket.IPPROTO_IPV6, 78, 1)  # IPV6_FREEBIND\n"
    "    s.bind(('2001:db8::99', 0))\n"
    "    s.settimeout(2)\n"
    "    return s\n"
    "q = struct.pack('>HHHHHH', 9, 0x0100, 1, 0, 0, 0) + b'\\x04exfi\\x04test\\0' + "
    "struct.pack('>HH', 1, 1)\n";

// Everything readable from fd until EOF.
std::string read_all(int fd);
// The whole file ("" when it cannot be read).
std::string slurp(const std::string& path);

// A child process (in its own process group) with stdout and stderr captured, merged.
struct Proc {
  pid_t pid = -1;
  int out_fd = -1;       // the pipe, read by finish(); -1 when the output goes to log_file
  std::string log_file;  // where the output goes instead of a pipe (start's log_file)
  std::string out;
  int status = -1;

  // Without log_file the output goes to a pipe that nothing reads until finish(): a child that
  // writes more than the pipe holds (64 KiB) blocks in write(). A long-lived server that logs
  // every request (the test origins) must be given a log_file: an origin blocked on its log
  // stalls every request behind it (RunProxy.ReloadsUnderLoadDropNothing timed out after
  // ~1090 requests that way).
  static Proc start(const std::vector<std::string>& argv, const std::string& log_file = "");
  // Reaps without reading to EOF: the agent of a killed acp still holds the pipe open.
  int reap();
  // Reads until EOF, then reaps. Returns the exit status (128+sig when killed).
  int finish();
};

// Starts argv and waits for it; the output is in .out, the exit status in .status.
Proc run(const std::vector<std::string>& argv);

// A TCP port that is free on 127.0.0.1 at the time of the call.
uint16_t free_port();
// Whether something accepts TCP connections on addr:port (addr "127.0.0.1" or "::1").
bool port_answers(uint16_t port, const std::string& addr = "127.0.0.1");
// Whether ::1 can be bound here.
bool ipv6_loopback_available();

// Polls `pred` every 50 ms until it holds or `limit` has passed; returns whether it held. Bounds
// waits; never a timed assertion of how fast something is.
bool wait_until(const std::function<bool()>& pred, std::chrono::seconds limit);

// cmd in a mount namespace of its own where /etc/hosts is `hosts` (and /etc/resolv.conf is
// `resolv_conf` when given): names only that process (acp, whose proxy resolves them) knows.
std::vector<std::string> with_own_etc_files(const std::string& hosts,
                                            const std::vector<std::string>& cmd,
                                            const std::string& resolv_conf = "");
// How many lines of `text` contain `needle`.
size_t count_lines(const std::string& text, const std::string& needle);

class RunFixture : public ::testing::Test {
 protected:
  // Skips when not root or without cgroup BPF; makes the tmp dir (0755) with www/index.html
  // ("origin says hello"), starts one plain HTTP origin (origin_port_), picks proxy_port_.
  void SetUp() override;
  void TearDown() override;

  // A python3 http.server serving dir_/www on addr:port; waits until it answers. Stopped in
  // TearDown. Returns false when it did not start.
  bool start_origin(uint16_t port, const std::string& addr = "127.0.0.1");
  // The same over TLS with dir_/cert.pem (made on first use for CN/SAN 127.0.0.1 and ::1).
  bool start_tls_origin(uint16_t port, const std::string& addr = "127.0.0.1");
  std::string cert_path() const { return dir_ + "/cert.pem"; }

  std::string write_policy(const std::string& name, const std::string& yaml);
  // policy.yml: default deny, one http rule for 127.0.0.1:origin_port_ with action, timeout 20.
  std::string policy_for_origin(const std::string& action);
  // The `acp run --user=nobody --proxy-port --policy --audit-log --config --door [extra] -- cmd`
  // command line; --config is config() (the web page off) unless `extra` has a --config;
  // --door=proxy unless `extra` has a --door: most tests probe the wall with a direct connect()
  // and expect the kernel's EPERM, which the default door (both, on bpf) turns into a
  // connection led to the proxy. The door's own tests pass --door (run_transparent_test.cpp,
  // RunTransparent.TheDefaultDoorIsBothOnBpf without one).
  std::vector<std::string> acp_run(const std::string& policy, std::vector<std::string> cmd,
                                   std::vector<std::string> extra = {});
  std::string audit() const { return dir_ + "/audit.jsonl"; }
  // The test's acp config (SetUp: every channel off), so no test touches /etc/acp.
  std::string config() const { return dir_ + "/config.yml"; }
  std::string origin_url() const;
  // Pending requests across all sessions, from `acp pending --json` ([] when unreadable).
  nlohmann::json pending();
  // Polls pending() (up to ~10 s) for a first entry; its id, or "".
  std::string wait_for_pending_id();
  // The audit log's entries, parsed (lines that do not parse are skipped).
  std::vector<nlohmann::json> audit_entries();
  // Those of requests the transparent door led in ("via": "transparent") for host:port.
  std::vector<nlohmann::json> transparent_requests(const std::string& host, uint16_t port);

  std::string dir_;
  uint16_t origin_port_ = 0;
  uint16_t proxy_port_ = 0;
  Proc origin_;
  std::vector<Proc> extra_origins_;
  // Prepended to the command of the origins start_origin() and start_tls_origin() start, e.g.
  // {"ip", "netns", "exec", NAME} to serve inside a test host's namespace.
  std::vector<std::string> origin_wrapper_;
};

}  // namespace acp::vmtest
