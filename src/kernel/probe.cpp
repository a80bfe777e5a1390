#include "acp/kernel/probe.hpp"

#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "acp/cgroup/mounts.hpp"
#include "acp/kernel/bpffs.hpp"
#include "acp/kernel/sock_programs.hpp"
#include "acp/util/unique_fd.hpp"
#include "libbpf_log.hpp"

#ifndef CAP_BPF
#define CAP_BPF 39
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

namespace acp::kernel {
namespace {

bool has_cap(const __user_cap_data_struct (&d)[2], int cap) {
  return (d[cap / 32].effective & (1u << (cap % 32))) != 0;
}

Feature probe_privileges() {
  Feature f{"privileges", false, true, "", ""};
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capget, &hdr, data) != 0) {
    f.detail = std::string("capget: ") + std::strerror(errno);
    f.remedy = "run acp as root (sudo)";
    return f;
  }
  bool sys_admin = has_cap(data, CAP_SYS_ADMIN), net_admin = has_cap(data, CAP_NET_ADMIN);
  bool bpf = has_cap(data, CAP_BPF) || sys_admin;  // before 5.8 CAP_SYS_ADMIN covered BPF
  std::string missing;
  if (!sys_admin) missing += " CAP_SYS_ADMIN";
  if (!net_admin) missing += " CAP_NET_ADMIN";
  if (!bpf) missing += " CAP_BPF";
  f.ok = missing.empty();
  std::string who = geteuid() == 0 ? "root" : "uid " + std::to_string(geteuid());
  f.detail = f.ok ? who + " with CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_BPF" : who + " lacks" + missing;
  f.remedy =
      "run acp as root (sudo acp ...): loading cgroup BPF programs, making cgroups and "
      "mounting bpffs need these capabilities";
  return f;
}

Feature probe_cgroup2(std::string* mount_point) {
  Feature f{"cgroup2", false, true, "", ""};
  auto mp = cgroup2_mount_point();
  if (!mp) {
    f.detail = mp.error().message();
    f.remedy =
        "mount cgroup v2: mount -t cgroup2 none /sys/fs/cgroup/unified (or boot with "
        "systemd.unified_cgroup_hierarchy=1)";
    return f;
  }
  f.ok = true;
  f.detail = "mounted at " + *mp;
  *mount_point = *mp;
  return f;
}

Feature probe_bpffs(bool privileged) {
  Feature f{"bpffs", false, true, "", ""};
  f.remedy = std::string("mount -t bpf bpf ") + kBpffsMountPoint +
             " (acp does it itself when run as root and the kernel has bpffs)";
  auto table = read_mounts_table();
  if (!table) {
    f.detail = table.error().message();
    return f;
  }
  if (is_mounted_as(*table, kBpffsMountPoint, "bpf")) {
    f.ok = true;
    f.detail = std::string("mounted at ") + kBpffsMountPoint;
    return f;
  }
  std::ifstream fs("/proc/filesystems");
  std::string line;
  bool known = false;
  while (std::getline(fs, line))
    if (line.size() >= 4 && line.compare(line.size() - 4, 4, "\tbpf") == 0) known = true;
  if (!known) {
    f.detail = "the kernel has no bpf filesystem (not in /proc/filesystems)";
    f.remedy = "use a kernel built with CONFIG_BPF_SYSCALL";
    return f;
  }
  f.ok = privileged;
  f.detail = std::string("not mounted at ") + kBpffsMountPoint +
             (privileged ? "; acp mounts it on first use" : "; mounting it needs root");
  return f;
}

Feature probe_btf() {
  Feature f{"BTF", false, false, "", ""};
  struct stat st {};
  f.ok = ::stat("/sys/kernel/btf/vmlinux", &st) == 0;
  f.detail = f.ok ? "/sys/kernel/btf/vmlinux present"
                  : "/sys/kernel/btf/vmlinux missing (not needed: the programs use no CO-RE)";
  f.remedy = "optional: a kernel with CONFIG_DEBUG_INFO_BTF=y helps debugging tools";
  return f;
}

Feature probe_prog_type(const char* name, bpf_prog_type type) {
  Feature f{std::string("prog type ") + name, false, true, "", ""};
  int rc = libbpf_probe_bpf_prog_type(type, nullptr);
  f.ok = rc == 1;
  f.detail = rc == 1   ? "supported"
             : rc == 0 ? "not supported by this kernel"
                       : std::string("probe failed: ") + std::strerror(-rc);
  f.remedy = "use a kernel with CONFIG_CGROUP_BPF=y (Linux 5.7 or later), or --backend=iptables";
  return f;
}

Feature probe_ringbuf() {
  Feature f{"map type ringbuf", false, true, "", ""};
  int rc = libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, nullptr);
  f.ok = rc == 1;
  f.detail = rc == 1   ? "supported"
             : rc == 0 ? "not supported by this kernel"
                       : std::string("probe failed: ") + std::strerror(-rc);
  f.remedy = "use Linux 5.8 or later, or --backend=iptables";
  return f;
}

// A scratch cgroup directly under the cgroup2 mount, removed by the destructor. Processes
// are reaped before it runs, but the kernel may report the cgroup busy for a moment after
// the last exit, so rmdir is retried briefly (cleanup, not ordering).
class ScratchCgroup {
 public:
  static Result<ScratchCgroup> make(const std::string& root) {
    static std::atomic<int> seq{0};
    ScratchCgroup c;
    c.path_ = root + "/acp-probe-" + std::to_string(getpid()) + "-" + std::to_string(seq++);
    if (::mkdir(c.path_.c_str(), 0755) != 0) {
      c.path_.clear();
      return errno_error("mkdir scratch cgroup " + root + "/acp-probe-*");
    }
    c.fd_ = UniqueFd(::open(c.path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!c.fd_) return errno_error("open scratch cgroup " + c.path_);
    return c;
  }
  ScratchCgroup(ScratchCgroup&& o) noexcept
      : path_(std::exchange(o.path_, {})), fd_(std::move(o.fd_)) {}
  ScratchCgroup& operator=(ScratchCgroup&&) = delete;
  ~ScratchCgroup() {
    fd_.reset();
    if (path_.empty()) return;
    for (int i = 0; i < 200; i++) {
      if (::rmdir(path_.c_str()) == 0 || errno != EBUSY) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  const std::string& path() const { return path_; }
  int fd() const { return fd_.get(); }

 private:
  ScratchCgroup() = default;
  std::string path_;
  UniqueFd fd_;
};

// clone3(CLONE_INTO_CGROUP) a child that blocks on a pipe, check from /proc that it started
// inside the cgroup, then kill it through cgroup.kill. Fills both features.
void probe_clone_and_kill(const ScratchCgroup& cg, const std::string& cg_root, Feature& clone_f,
                          Feature& kill_f) {
  std::string kill_path = cg.path() + "/cgroup.kill";
  struct stat st {};
  bool kill_present = ::stat(kill_path.c_str(), &st) == 0;

  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) {
    clone_f.detail = std::string("pipe: ") + std::strerror(errno);
    kill_f.detail = "not checked";
    return;
  }
  UniqueFd rd(pipefd[0]), wr(pipefd[1]);

  clone_args args{};
  args.flags = CLONE_INTO_CGROUP;
  args.exit_signal = SIGCHLD;
  args.cgroup = static_cast<uint64_t>(cg.fd());
  long pid = syscall(SYS_clone3, &args, sizeof(args));
  if (pid == 0) {
    // The child: only raw syscalls. It waits for EOF (parent closed the pipe, or died).
    char b;
    while (::read(rd.get(), &b, 1) < 0 && errno == EINTR) {
    }
    _exit(0);
  }
  if (pid < 0) {
    int err = errno;
    clone_f.detail = std::string("clone3(CLONE_INTO_CGROUP): ") + std::strerror(err) +
                     (err == ENOSYS || err == EINVAL || err == E2BIG ? " (unsupported)" : "");
    kill_f.ok = false;
    kill_f.detail =
        kill_present ? "cgroup.kill present; not exercised (no child)" : "cgroup.kill missing";
    return;
  }
  rd.reset();

  // Where did the child start? /proc/<pid>/cgroup: "0::/acp-probe-...".
  std::string want = "0::" + cg.path().substr(cg_root.size());
  std::ifstream in("/proc/" + std::to_string(pid) + "/cgroup");
  std::string line, found;
  while (std::getline(in, line))
    if (line.rfind("0::", 0) == 0) found = line;
  clone_f.ok = found == want;
  clone_f.detail = clone_f.ok ? "child started inside the scratch cgroup"
                              : "child started in \"" + found + "\", not \"" + want + "\"";

  bool killed_by_cgroup = false;
  if (kill_present) {
    std::ofstream k(kill_path);
    k << "1";
    k.flush();
    killed_by_cgroup = k.good();
  }
  wr.reset();  // if cgroup.kill did not work, EOF lets the child exit on its own
  int status = 0;
  while (::waitpid(static_cast<pid_t>(pid), &status, 0) < 0 && errno == EINTR) {
  }
  kill_f.ok =
      kill_present && killed_by_cgroup && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  kill_f.detail = !kill_present ? "cgroup.kill missing in " + cg.path()
                  : kill_f.ok   ? "writing cgroup.kill killed the scratch cgroup's child"
                                : "cgroup.kill present, but the child was not killed by it";
}

// Both features from one real load + attach: the IP wall (required) and the local-IPC programs
// (not required: without them the wall holds for the network, and AF_UNIX is not judged).
void probe_attach(const ScratchCgroup& cg, Feature& f, Feature& unix_f) {
  f.remedy =
      "needs cgroup BPF links (Linux 5.7+, CONFIG_CGROUP_BPF=y); set ACP_DEBUG=1 for "
      "libbpf's log, or use --backend=iptables";
  auto progs = SockPrograms::load({ACP_MODE_ENFORCE, 0});
  if (!progs) {
    f.detail = progs.error().message();
    unix_f.detail = "not checked: the IP wall did not load";
    return;
  }
  if (auto st = progs->attach(cg.fd()); !st) {
    f.detail = st.error().message();
    unix_f.detail = "not checked: the IP wall did not attach";
    return;
  }
  f.ok = true;
  f.detail = "loaded acp_sock and linked its 6 programs to a scratch cgroup";
  unix_f.ok = progs->unix_walled();
  unix_f.detail = unix_f.ok ? "loaded acp_unix and linked connect_unix, sendmsg_unix"
                            : progs->unix_why() +
                                  "; AF_UNIX connect()/sendmsg() are NOT judged: the agent "
                                  "can ask local daemons (docker.sock, D-Bus, tmux) to act "
                                  "for it";
  // progs goes out of scope: unpinned links detach
}

}  // namespace

std::vector<Feature> probe_kernel_features() {
  detail::quiet_libbpf_once();
  std::vector<Feature> out;
  out.push_back(probe_privileges());
  bool privileged = out.back().ok;
  std::string cg_root;
  out.push_back(probe_cgroup2(&cg_root));
  bool have_cgroup2 = out.back().ok;
  out.push_back(probe_bpffs(privileged));
  out.push_back(probe_btf());
  // Unprivileged, the kernel refuses every load with EPERM, which libbpf's probes report as
  // "unsupported": say "not checked" instead of blaming the kernel.
  auto not_checked = [](Feature f) {
    f.ok = false;
    f.detail = "not checked: needs root";
    f.remedy = "run acp doctor as root";
    return f;
  };
  size_t first_kernel_check = out.size();
  out.push_back(probe_prog_type("cgroup_sock_addr", BPF_PROG_TYPE_CGROUP_SOCK_ADDR));
  out.push_back(probe_prog_type("cgroup_sock", BPF_PROG_TYPE_CGROUP_SOCK));
  out.push_back(probe_ringbuf());
  if (!privileged)
    for (size_t i = first_kernel_check; i < out.size(); i++) out[i] = not_checked(out[i]);

  Feature attach{"attach cgroup programs", false, true, "", ""};
  Feature unix_wall{"local IPC wall (cgroup/connect_unix)", false, false, "", ""};
  unix_wall.remedy =
      "Linux 6.7+ with BTF (/sys/kernel/btf/vmlinux); until then run the agent as a user that "
      "owns no daemon sockets (see docs/security.md)";
  Feature clone{"clone3 into cgroup", false, true, "", ""};
  clone.remedy = "needs clone3 with CLONE_INTO_CGROUP (Linux 5.7+)";
  Feature kill{"cgroup.kill", false, true, "", ""};
  kill.remedy = "needs cgroup.kill (Linux 5.14+) to kill a whole session at once";
  if (!privileged) {
    attach = not_checked(attach);
    unix_wall = not_checked(unix_wall);
    clone = not_checked(clone);
    kill = not_checked(kill);
  } else if (!have_cgroup2) {
    attach.detail = clone.detail = kill.detail = unix_wall.detail = "not checked: no cgroup2";
    attach.remedy = clone.remedy = kill.remedy = out[1].remedy;
  } else if (auto cg = ScratchCgroup::make(cg_root); !cg) {
    attach.detail = clone.detail = kill.detail = unix_wall.detail = cg.error().message();
    attach.remedy = "make sure " + cg_root + " is writable by root";
  } else {
    probe_attach(*cg, attach, unix_wall);
    probe_clone_and_kill(*cg, cg_root, clone, kill);
  }
  out.push_back(std::move(attach));
  out.push_back(std::move(unix_wall));
  out.push_back(std::move(clone));
  out.push_back(std::move(kill));
  return out;
}

bool bpf_backend_supported(std::string* why) {
  static std::once_flag once;
  static bool supported = false;
  static std::string reason;
  std::call_once(once, [] {
    for (const auto& f : probe_kernel_features()) {
      if (f.required && !f.ok) {
        reason = f.name + ": " + f.detail;
        return;
      }
    }
    supported = true;
  });
  if (why) *why = reason;
  return supported;
}

}  // namespace acp::kernel
