// Shared pieces of the real-kernel wall tests and the connect() bench: a session wall (scratch
// cgroup + the real SockPrograms, pinned as a session would be), a bare cgroup for controls,
// loopback servers standing in for the proxy, a test host in a network namespace, running a
// real client as an unprivileged user, and sysctls that are put back.
//
// Everything here cleans up after itself in its destructor: processes in the cgroups are
// killed, pins removed, cgroups removed, the netns and its veth deleted, sysctls restored.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "acp/cgroup/cgroup.hpp"
#include "acp/kernel/endpoint.hpp"
#include "acp/kernel/sock_programs.hpp"
#include "acp/util/result.hpp"
#include "acp/util/unique_fd.hpp"
#include "acp_abi.h"

namespace acp::vmtest {

inline constexpr uid_t kNobody = 65534;
inline constexpr gid_t kNogroup = 65534;

// A socket bound to addr:port (port 0: any free one). SOCK_STREAM sockets also listen.
struct BoundSocket {
  UniqueFd fd;
  uint16_t port = 0;
};
Result<BoundSocket> bind_socket(int type, const std::string& addr, uint16_t port = 0);

// The same free port on 127.0.0.1 and [::1], as the proxy listens: {v4, v6}.
Result<std::pair<BoundSocket, BoundSocket>> bind_loopback_pair(int type);

// Answers every TCP connection on its listeners with a fixed "HTTP/1.1 200 OK" (body "ok"),
// from one thread: the proxy stand-in and the loopback/netns servers that curl and urllib hit.
// UDP sockets handed to it are drained, so datagrams never pile up.
class Responder {
 public:
  Responder();
  ~Responder();
  Responder(const Responder&) = delete;
  Responder& operator=(const Responder&) = delete;
  // Takes the socket; may be called before or after start.
  void serve(BoundSocket s);
  // TCP connections accepted so far.
  uint64_t accepted() const { return accepted_; }

 private:
  void loop();
  UniqueFd wake_;  // eventfd: a new socket, or stop
  std::mutex mu_;
  std::vector<UniqueFd> socks_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> accepted_{0};
  std::thread thread_;
};

// A cgroup for one test, <cgroup2 root>/acp-vmt-<pid>-<n>: emptied (kill_all) and removed
// when destroyed.
class ScratchCgroup {
 public:
  static Result<std::unique_ptr<ScratchCgroup>> create();
  ~ScratchCgroup();
  Cgroup& cgroup() { return cg_; }
  const std::string& path() const { return cg_.path(); }
  int fd() const { return cg_.fd(); }

 private:
  explicit ScratchCgroup(Cgroup cg) : cg_(std::move(cg)) {}
  Cgroup cg_;
};

// Which backend builds a TestWall: the escape suite runs against each.
enum class WallBackend { kBpf, kIptables };
const char* backend_name(WallBackend b);
// True when the machine can build this backend's wall; *why says why not (the product's probes).
bool wall_backend_supported(WallBackend b, std::string* why);

// A session's wall as `acp run` builds it, before any process enters a scratch cgroup:
//  - bpf: SockPrograms loaded with the allow-list, attached, and pinned under
//    /sys/fs/bpf/acp/acpt-<pid>-<n>;
//  - iptables: the backend's chains (ACPT-<pid>-<n>, IPv4 and IPv6) jumped to from OUTPUT for
//    the cgroup, exactly as install_iptables_wall() makes them for a session.
// Destroyed in the product's order: processes killed, wall removed, cgroup removed.
class TestWall {
 public:
  static Result<std::unique_ptr<TestWall>> create(const std::vector<kernel::Endpoint>& allow,
                                                  acp_mode mode = ACP_MODE_ENFORCE,
                                                  WallBackend backend = WallBackend::kBpf);
  ~TestWall();
  const std::string& path() const { return cg_->path(); }
  Cgroup& cgroup() { return cg_->cgroup(); }
  WallBackend backend() const { return backend_; }
  // bpf only.
  kernel::SockPrograms& programs() { return *progs_; }
  const std::string& pin_dir() const { return pin_dir_; }
  uint64_t session_id() const { return session_id_; }
  // iptables only.
  const std::string& chain() const { return chain_; }

 private:
  TestWall(std::unique_ptr<ScratchCgroup> cg, WallBackend b) : cg_(std::move(cg)), backend_(b) {}
  std::unique_ptr<ScratchCgroup> cg_;
  WallBackend backend_;
  std::optional<kernel::SockPrograms> progs_;
  std::string pin_dir_;
  uint64_t session_id_ = 0;
  std::string chain_;
};

// What a client run printed (stdout and stderr interleaved) and how it ended.
struct RunResult {
  int code = -1;  // exit status as a shell reports it; -1 when it did not start
  std::string out;
  // The value of the last "key=value" line, "" when there is none.
  std::string value(const std::string& key) const;
  std::string result() const { return value("result"); }
};

// Runs argv in the cgroup, as uid/gid (nobody by default) with no_new_privs, env PATH, HOME,
// LC_ALL and `env`, through the launcher (acp run's own spawn_agent). Waits for the end.
// `bpf_only`: without the launcher's other layers (the socket-family seccomp filter, root's
// dropped capabilities and read-only mounts), to show what the BPF programs alone stop.
RunResult run_in(int cgroup_fd, const std::string& cgroup_path, std::vector<std::string> argv,
                 uid_t uid = kNobody, std::vector<std::string> env = {}, bool bpf_only = false);

// Sets /proc/sys/<name> (dots or slashes) and restores the old value when destroyed.
class SysctlOverride {
 public:
  static Result<std::unique_ptr<SysctlOverride>> set(const std::string& name,
                                                     const std::string& value);
  ~SysctlOverride();

 private:
  SysctlOverride(std::string path, std::string old)
      : path_(std::move(path)), old_(std::move(old)) {}
  std::string path_, old_;
};

// A test host in its own network namespace (acpt-<pid>), reached over a veth pair from the
// host: host side 10.200.N.1/30 and fd00:acb:N::1/64, test host 10.200.N.2 and fd00:acb:N::2.
// Deleting the netns removes both veth ends.
class NetnsHost {
 public:
  static Result<std::unique_ptr<NetnsHost>> create();
  ~NetnsHost();
  const std::string& addr4() const { return addr4_; }
  const std::string& addr6() const { return addr6_; }
  // The namespace's name, for `ip netns exec` (processes that serve inside it).
  const std::string& name() const { return name_; }
  // The host's end of the veth (10.200.N.1): where the test host reaches the host.
  const std::string& host_addr4() const { return host_addr4_; }
  // The host's end over IPv6 (fd00:acb:N::1).
  const std::string& host_addr6() const { return host_addr6_; }
  // A socket bound inside the namespace (made on a thread that joined it).
  Result<BoundSocket> bind(int type, const std::string& addr, uint16_t port = 0);
  // Runs fn on a thread that joined the namespace and waits for it: sockets fn makes live
  // in the namespace for good.
  Status run_inside(const std::function<void()>& fn);

 private:
  NetnsHost() = default;
  std::string name_, veth_host_, addr4_, addr6_, host_addr4_, host_addr6_;
  std::atomic<int>* live_ = nullptr;  // hosts of this process alive now
};

// Runs a shell command quietly; true when it exits 0.
bool sh(const std::string& cmd);

}  // namespace acp::vmtest
