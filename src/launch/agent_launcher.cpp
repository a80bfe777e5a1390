#include "acp/launch/agent_launcher.hpp"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <iterator>

#include "acp/launch/agent_env.hpp"
#include "acp/launch/socket_filter.hpp"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

namespace acp::launch {
namespace {

// Used when the agent's environment has no PATH (execvp would use confstr's, which is shorter).
constexpr const char* kDefaultPath = "/usr/local/bin:/usr/bin:/bin";

LaunchError launch_error(std::string context, int err, int exit_code) {
  LaunchError e;
  e.err = err;
  e.context = std::move(context);
  e.exit_code = exit_code;
  return e;
}

// The step of the child that failed, reported through the error pipe.
enum Stage : int {
  kStageCgroup = 1,
  kStageStdio,
  kStageGroups,
  kStageGid,
  kStageUid,
  kStageVerifyIds,
  kStageNoNewPrivs,
  kStageCgroupNs,
  kStageCaps,
  kStageMounts,
  kStageSeccomp,
  kStageTaskLimit,
  kStageExec,
};

struct ChildReport {
  int stage;
  int err;
};

// A path to cover in a root agent's mount namespace, as it was when the spawn was prepared.
struct HiddenPath {
  const char* path;
  bool dir;
};
// A file inside a covered directory that stays readable (the TLS trust bundle): the directories
// to make in the empty tmpfs, outermost first, then the file to bind back onto.
struct VisiblePath {
  const char* path;
  const char* const* dirs;
  size_t n_dirs;
};

// Everything the child needs, prepared before cloning: the child allocates nothing.
struct ChildPlan {
  const char* path;
  char* const* argv;
  char* const* envp;
  uid_t uid;
  gid_t gid;
  const gid_t* groups;
  size_t ngroups;
  bool set_groups;
  bool no_new_privs;
  int stdio[3];
  int report_fd;
  int procs_fd;  // fork fallback: cgroup.procs of the session cgroup, else -1
  // Root agents only: a private mount namespace where these are read-only / covered (a
  // directory by an empty tmpfs, a file or device node by /dev/null) / kept readable inside a
  // covered directory.
  const char* const* readonly_paths;
  size_t n_readonly;
  const HiddenPath* hidden;
  size_t n_hidden;
  const VisiblePath* visible;
  size_t n_visible;
  const sock_fprog* socket_filter;  // nullptr: none
  bool contain_root;
  uint64_t rlimit_nproc;  // 0: leave RLIMIT_NPROC as it is
};

// CAP_SETPCAP last: dropping it from the bounding set needs it. CAP_SYS_ADMIN: umount or
// remount what hides ACP's secrets, setns; CAP_DAC_READ_SEARCH: open_by_handle_at() reaches any
// inode of a filesystem, hidden or not; CAP_MKNOD: a new node for the disk under the tmpfs.
constexpr int kAgentDroppedCaps[] = {CAP_NET_RAW,      CAP_NET_ADMIN,       CAP_SYS_ADMIN,
                                     CAP_BPF,          CAP_PERFMON,         CAP_SYS_PTRACE,
                                     CAP_SYS_MODULE,   CAP_SYS_RAWIO,       CAP_SYS_BOOT,
                                     CAP_MAC_ADMIN,    CAP_MAC_OVERRIDE,    CAP_SYS_CHROOT,
                                     CAP_SYS_RESOURCE, CAP_LINUX_IMMUTABLE, CAP_DAC_READ_SEARCH,
                                     CAP_MKNOD,        CAP_SETPCAP};

// At most this many covered paths (ACP's directories and files, the block devices in /dev).
constexpr size_t kMaxHidden = 512;

// "/proc/self/fd/<fd>" into buf (at least 32 bytes), without allocating.
const char* proc_fd_path(char* buf, int fd) {
  static constexpr char kPrefix[] = "/proc/self/fd/";
  char digits[12];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + fd % 10);
    fd /= 10;
  } while (fd > 0);
  size_t i = 0;
  for (; kPrefix[i]; ++i) buf[i] = kPrefix[i];
  while (n > 0) buf[i++] = digits[--n];
  buf[i] = '\0';
  return buf;
}

[[noreturn]] void child_fail(const ChildPlan& p, int stage, int err) {
  ChildReport r{stage, err};
  ssize_t n;
  do {
    n = ::write(p.report_fd, &r, sizeof r);
  } while (n < 0 && errno == EINTR);
  int code = kExitLaunchFailed;
  if (stage == kStageExec) code = err == ENOENT ? kExitNotFound : kExitCannotExecute;
  ::_exit(code);
}

// Runs in the new process between clone and execve: raw syscalls only. After a raw clone3,
// glibc still believes the parent's other threads exist, so its set*id wrappers (which signal
// every thread) must not be used; SYS_set* act on this one thread, the only one there is.
// The steps of child_main, in order. Each runs in the child between clone/fork and execve: only
// async-signal-safe calls, no allocation; a failure reports its stage and exits (child_fail).

// Old kernels (no CLONE_INTO_CGROUP): join the cgroup first, before anything else runs here.
void child_join_cgroup(const ChildPlan& p) {
  if (p.procs_fd < 0) return;
  char buf[16];
  char* end = buf + sizeof buf;
  char* s = end;
  long pid = ::syscall(SYS_getpid);
  do {
    *--s = static_cast<char>('0' + pid % 10);
    pid /= 10;
  } while (pid > 0);
  if (::write(p.procs_fd, s, static_cast<size_t>(end - s)) < 0) child_fail(p, kStageCgroup, errno);
}

// Default dispositions; the parent blocked every signal around the clone so that none of its
// handlers can run here. Handlers would be reset by execve anyway, ignored signals would not.
void child_default_signals() {
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    struct sigaction sa {};
    sa.sa_handler = SIG_DFL;
    ::sigaction(sig, &sa, nullptr);  // fails harmlessly for glibc's reserved signals
  }
}

// Its own mount namespace, where what holds the wall up (the cgroup tree, the pins) and ACP's
// files are read-only and the control sockets are out of sight: root owns them all.
void child_readonly_mounts(const ChildPlan& p) {
  if (::syscall(SYS_unshare, CLONE_NEWNS) != 0) child_fail(p, kStageMounts, errno);
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0)
    child_fail(p, kStageMounts, errno);
  for (size_t i = 0; i < p.n_readonly; ++i) {
    const char* path = p.readonly_paths[i];
    if (::mount(path, path, nullptr, MS_BIND | MS_REC, nullptr) != 0) {
      if (errno == ENOENT) continue;
      child_fail(p, kStageMounts, errno);
    }
    if (::mount(nullptr, path, nullptr,
                MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
      child_fail(p, kStageMounts, errno);
  }
}

// ACP's secrets covered (a read-only tmpfs over a directory, /dev/null over a file), and the
// files that must stay readable inside them (the TLS trust bundle) bound back.
void child_cover_secrets(const ChildPlan& p) {
  // The files to keep readable are opened before what holds them is covered; mount() may
  // then bind them back from this namespace's own view (/proc/self/fd).
  int visible_fd[16];
  const size_t n_visible = p.n_visible < 16 ? p.n_visible : 16;
  for (size_t i = 0; i < n_visible; ++i)
    visible_fd[i] = ::open(p.visible[i].path, O_PATH | O_CLOEXEC);
  bool covered[kMaxHidden] = {};
  for (size_t i = 0; i < p.n_hidden; ++i) {
    const HiddenPath& h = p.hidden[i];
    const int r = h.dir ? ::mount("tmpfs", h.path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                                  "mode=0755,size=64k")
                        : ::mount("/dev/null", h.path, nullptr, MS_BIND, nullptr);
    if (r != 0) {
      if (errno == ENOENT) continue;  // inside a directory covered before it
      child_fail(p, kStageMounts, errno);
    }
    covered[i] = true;
    if (!h.dir && ::mount(nullptr, h.path, nullptr,
                          MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC, nullptr) != 0)
      child_fail(p, kStageMounts, errno);
  }
  for (size_t i = 0; i < n_visible; ++i) {
    if (visible_fd[i] < 0) continue;
    const VisiblePath& v = p.visible[i];
    for (size_t d = 0; d < v.n_dirs; ++d)
      if (::mkdir(v.dirs[d], 0755) != 0 && errno != EEXIST) child_fail(p, kStageMounts, errno);
    const int made = ::open(v.path, O_WRONLY | O_CREAT | O_CLOEXEC, 0444);
    if (made < 0) child_fail(p, kStageMounts, errno);
    ::close(made);
    char src[32];
    if (::mount(proc_fd_path(src, visible_fd[i]), v.path, nullptr, MS_BIND, nullptr) != 0 ||
        ::mount(nullptr, v.path, nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV,
                nullptr) != 0)
      child_fail(p, kStageMounts, errno);
    ::close(visible_fd[i]);
  }
  // The covering tmpfs read-only: nothing can be put where ACP's files were.
  for (size_t i = 0; i < p.n_hidden; ++i)
    if (covered[i] && p.hidden[i].dir &&
        ::mount(nullptr, p.hidden[i].path, nullptr,
                MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
      child_fail(p, kStageMounts, errno);
}

// Dropped from the bounding set, the capabilities that open doors around the wall cannot come
// back through execve.
void child_drop_caps(const ChildPlan& p) {
  for (int cap : kAgentDroppedCaps)
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL)
      child_fail(p, kStageCaps, errno);
  // The bounding set only limits what execve grants from the file; root's inheritable and
  // ambient sets pass through it. Both emptied, the dropped capabilities cannot come back.
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
    child_fail(p, kStageCaps, errno);
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (::syscall(SYS_capget, &hdr, data) != 0) child_fail(p, kStageCaps, errno);
  data[0].inheritable = data[1].inheritable = 0;
  if (::syscall(SYS_capset, &hdr, data) != 0) child_fail(p, kStageCaps, errno);
}

// stdio, the task limit, then groups, gid and uid, each verified in all three of its ids.
void child_set_identity(const ChildPlan& p) {
  for (int i = 0; i < 3; ++i) {
    if (p.stdio[i] >= 0 && p.stdio[i] != i && ::dup2(p.stdio[i], i) < 0)
      child_fail(p, kStageStdio, errno);
  }
  if (p.rlimit_nproc) {
    // Soft = hard: the agent cannot raise it back (no CAP_SYS_RESOURCE once it is not root).
    struct rlimit rl {
      p.rlimit_nproc, p.rlimit_nproc
    };
    if (::syscall(SYS_prlimit64, 0, RLIMIT_NPROC, &rl, nullptr) != 0)
      child_fail(p, kStageTaskLimit, errno);
  }
  if (p.set_groups && ::syscall(SYS_setgroups, p.ngroups, p.groups) != 0)
    child_fail(p, kStageGroups, errno);
  if (::syscall(SYS_setresgid, p.gid, p.gid, p.gid) != 0) child_fail(p, kStageGid, errno);
  if (::syscall(SYS_setresuid, p.uid, p.uid, p.uid) != 0) child_fail(p, kStageUid, errno);
  uid_t ru, eu, su;
  gid_t rg, eg, sg;
  if (::syscall(SYS_getresuid, &ru, &eu, &su) != 0 || ::syscall(SYS_getresgid, &rg, &eg, &sg) != 0)
    child_fail(p, kStageVerifyIds, errno);
  if (ru != p.uid || eu != p.uid || su != p.uid || rg != p.gid || eg != p.gid || sg != p.gid)
    child_fail(p, kStageVerifyIds, EPERM);
}

// No new privileges, the socket-family filter, and no ACP fd past execve.
void child_lock_down(const ChildPlan& p) {
  if (p.no_new_privs && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    child_fail(p, kStageNoNewPrivs, errno);
  // Socket families the BPF hooks never see (see socket_filter.hpp). Needs no-new-privileges
  // once the uid is no longer root.
  if (p.socket_filter && (p.no_new_privs || p.uid == 0) &&
      ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, p.socket_filter, 0, 0) != 0)
    child_fail(p, kStageSeccomp, errno);
  // No ACP fd (BPF maps, sockets, the audit log) may reach the agent. CLOEXEC rather than close
  // keeps the report pipe usable until execve succeeds.
  if (::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
    for (int fd = 3; fd < 65536; ++fd) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
}

[[noreturn]] void child_main(const ChildPlan& p) {
  child_join_cgroup(p);
  child_default_signals();
  if (::syscall(SYS_geteuid) == 0) {
    // A cgroup namespace rooted at the session cgroup: the kernel checks migrations against the
    // namespace root of the writer, so not even a root agent can move itself (or a child) out
    // of the session cgroup by writing to an ancestor's cgroup.procs.
    if (::syscall(SYS_unshare, CLONE_NEWCGROUP) != 0) child_fail(p, kStageCgroupNs, errno);
    // A root agent (--allow-root) keeps root's file access but not the capabilities that open
    // doors around the wall: packet and raw sockets (cgroup/sock_create only sees inet
    // sockets), network configuration, BPF and cgroup administration, ptrace of acp, modules.
    if (p.uid == 0 && p.contain_root) {
      child_readonly_mounts(p);
      child_cover_secrets(p);
      child_drop_caps(p);
    }
  }
  child_set_identity(p);
  child_lock_down(p);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execve(p.path, p.argv, p.envp);
  child_fail(p, kStageExec, errno);
}

const char* stage_name(int stage) {
  switch (stage) {
    case kStageCgroup:
      return "join the cgroup (write own pid to cgroup.procs)";
    case kStageStdio:
      return "redirect stdin/stdout/stderr";
    case kStageGroups:
      return "setgroups";
    case kStageGid:
      return "setresgid";
    case kStageUid:
      return "setresuid";
    case kStageVerifyIds:
      return "verify the new uid/gid";
    case kStageNoNewPrivs:
      return "prctl(PR_SET_NO_NEW_PRIVS)";
    case kStageCgroupNs:
      return "unshare(CLONE_NEWCGROUP)";
    case kStageCaps:
      return "drop capabilities from the bounding set";
    case kStageSeccomp:
      return "install the socket-family seccomp filter";
    case kStageTaskLimit:
      return "setrlimit(RLIMIT_NPROC)";
    case kStageMounts:
      return "make ACP's state read-only and its secrets hidden in the agent's mount namespace";
    default:
      return "start the agent";
  }
}

bool may_execute(const struct stat& st, uid_t uid, gid_t gid, const std::vector<gid_t>& groups) {
  if (uid == 0) return (st.st_mode & 0111) != 0;
  if (st.st_uid == uid) return (st.st_mode & S_IXUSR) != 0;
  if (st.st_gid == gid || std::find(groups.begin(), groups.end(), st.st_gid) != groups.end())
    return (st.st_mode & S_IXGRP) != 0;
  return (st.st_mode & S_IXOTH) != 0;
}

pid_t clone3_into_cgroup(int cgroup_fd, int* pidfd) {
  clone_args args{};
  args.flags = CLONE_PIDFD | CLONE_INTO_CGROUP;
  args.pidfd = reinterpret_cast<uint64_t>(pidfd);
  args.exit_signal = SIGCHLD;
  args.cgroup = static_cast<uint64_t>(cgroup_fd);
  return static_cast<pid_t>(::syscall(SYS_clone3, &args, sizeof args));
}

// Restores the caller's signal mask when the spawn returns, whichever way.
class BlockAllSignals {
 public:
  BlockAllSignals() {
    sigset_t all;
    sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &old_);
  }
  ~BlockAllSignals() { ::pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  BlockAllSignals(const BlockAllSignals&) = delete;
  BlockAllSignals& operator=(const BlockAllSignals&) = delete;

 private:
  sigset_t old_;
};

void reap(pid_t pid) {
  int st;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
}

// What a root agent's mount namespace covers, worked out before the clone (the child only
// mounts): the spec's hidden paths as they are now (missing ones skipped), every disk node in
// /dev (read raw, a disk gives up any file, hidden or not), and the visible files that
// sit inside a covered directory with the directories to remake for them.
struct CoverPlan {
  std::vector<std::pair<std::string, bool>> hidden;  // path, is a directory
  struct Visible {
    std::string path;
    std::vector<std::string> dirs;
  };
  std::vector<Visible> visible;
};

CoverPlan plan_cover(const AgentSpec& spec) {
  namespace fs = std::filesystem;
  CoverPlan c;
  std::vector<std::string> hidden_dirs;
  for (const auto& h : spec.hidden_paths) {
    struct stat st {};
    if (h.empty() || ::stat(h.c_str(), &st) != 0) continue;
    c.hidden.emplace_back(h, S_ISDIR(st.st_mode));
    if (S_ISDIR(st.st_mode)) hidden_dirs.push_back(fs::path(h).lexically_normal().string());
  }
  // Raw disk access: block devices, and the character devices that pass SCSI or NVMe reads
  // (/dev/sgN, /dev/ngNnM, /dev/bsg/*).
  auto disk_passthrough = [](const std::string& name) {
    return (name.rfind("sg", 0) == 0 || name.rfind("ng", 0) == 0) && name.size() > 2 &&
           name[2] >= '0' && name[2] <= '9';
  };
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/dev", ec)) {
    struct stat st {};
    if (::lstat(e.path().c_str(), &st) != 0) continue;
    if (S_ISBLK(st.st_mode) ||
        (S_ISCHR(st.st_mode) && disk_passthrough(e.path().filename().string())))
      c.hidden.emplace_back(e.path().string(), false);
  }
  if (struct stat st{}; ::lstat("/dev/bsg", &st) == 0 && S_ISDIR(st.st_mode))
    c.hidden.emplace_back("/dev/bsg", true);
  for (const auto& v : spec.visible_paths) {
    const fs::path file = fs::path(v).lexically_normal();
    for (const auto& d : hidden_dirs) {
      const fs::path dir(d);
      auto rel = file.lexically_relative(dir);
      if (rel.empty() || *rel.begin() == "..") continue;
      CoverPlan::Visible vis{file.string(), {}};
      fs::path at = dir;
      for (auto it = rel.begin(); std::next(it) != rel.end(); ++it) {
        at /= *it;
        vis.dirs.push_back(at.string());
      }
      c.visible.push_back(std::move(vis));
      break;
    }
  }
  return c;
}

}  // namespace

LaunchResult<std::string> resolve_command(const std::string& name, const std::string& path_env,
                                          uid_t uid, gid_t gid, const std::vector<gid_t>& groups) {
  auto cannot_execute = [&](const std::string& file, int err) {
    return launch_error(
        "cannot execute " + file + " as uid " + std::to_string(uid) + " (" + name + ")", err,
        kExitCannotExecute);
  };
  if (name.empty()) return launch_error("'': command not found", 0, kExitNotFound);
  if (name.find('/') != std::string::npos) {
    struct stat st {};
    if (::stat(name.c_str(), &st) != 0) {
      if (errno == ENOENT || errno == ENOTDIR)
        return launch_error(name + ": no such file", errno, kExitNotFound);
      return cannot_execute(name, errno);
    }
    if (S_ISDIR(st.st_mode)) return cannot_execute(name, EISDIR);
    if (!S_ISREG(st.st_mode) || !may_execute(st, uid, gid, groups))
      return cannot_execute(name, EACCES);
    return name;
  }
  std::string denied;  // the first match we may not execute: reported if nothing better turns up
  size_t start = 0;
  for (;;) {
    size_t colon = path_env.find(':', start);
    std::string dir = path_env.substr(start, colon == std::string::npos ? colon : colon - start);
    if (dir.empty()) dir = ".";  // POSIX: an empty PATH entry is the current directory
    std::string candidate = dir + "/" + name;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      if (may_execute(st, uid, gid, groups)) return candidate;
      if (denied.empty()) denied = candidate;
    }
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  if (!denied.empty()) return cannot_execute(denied, EACCES);
  return launch_error(name + ": command not found (searched the agent's PATH=" + path_env + ")", 0,
                      kExitNotFound);
}

namespace {

// Starts the child in the cgroup with every signal blocked: clone3(CLONE_INTO_CGROUP), or, on
// kernels without it, fork() with the child joining through cgroup.procs (opened here, into
// `procs_fd`, so that the child only has to write). The child runs child_main(plan) and never
// returns here.
SpawnResult start_child(const AgentSpec& spec, ChildPlan& plan, const std::string& where,
                        UniqueFd& procs_fd) {
  Agent agent;
  BlockAllSignals blocked;
  pid_t pid = -1;
  if (!spec.force_fork_fallback && spec.cgroup_fd >= 0) {
    int pidfd = -1;
    pid = clone3_into_cgroup(spec.cgroup_fd, &pidfd);
    if (pid == 0) child_main(plan);
    if (pid > 0) {
      agent.pidfd.reset(pidfd);
      agent.placed_by_clone3 = true;
    } else if (errno != ENOSYS && errno != E2BIG && errno != EINVAL) {
      return launch_error("start the agent in cgroup " + where + " (clone3)", errno,
                          kExitLaunchFailed);
    }
  }
  if (pid < 0) {
    if (spec.cgroup_fd >= 0) {
      procs_fd.reset(::openat(spec.cgroup_fd, "cgroup.procs", O_WRONLY | O_CLOEXEC));
      if (!procs_fd)
        return launch_error("open " + where + "/cgroup.procs", errno, kExitLaunchFailed);
      plan.procs_fd = procs_fd.get();
    }
    pid = ::fork();
    if (pid == 0) child_main(plan);
    if (pid < 0) return launch_error("start the agent (fork)", errno, kExitLaunchFailed);
    agent.pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));  // best effort
  }
  agent.pid = pid;
  return agent;
}

// Waits for the child's verdict on the report pipe: EOF when execve succeeded (the pipe is
// close-on-exec), else the stage that failed and its errno, which become the error (the child
// is reaped).
SpawnResult wait_for_exec(const AgentSpec& spec, Agent agent, const UniqueFd& report_r,
                          const std::string& path, const std::string& where) {
  ChildReport report{};
  ssize_t n;
  do {
    n = ::read(report_r.get(), &report, sizeof report);
  } while (n < 0 && errno == EINTR);
  if (n == 0) return agent;
  reap(agent.pid);
  if (n != static_cast<ssize_t>(sizeof report))
    return launch_error("start the agent: short report from the child", EIO, kExitLaunchFailed);
  if (report.stage == kStageExec) {
    return launch_error("execute " + path, report.err,
                        report.err == ENOENT ? kExitNotFound : kExitCannotExecute);
  }
  std::string what = stage_name(report.stage);
  if (report.stage == kStageCgroup) what += " of " + where;
  if (report.stage == kStageUid || report.stage == kStageVerifyIds)
    what += " to uid " + std::to_string(spec.uid);
  if (report.stage == kStageGid) what += " to gid " + std::to_string(spec.gid);
  return launch_error("start the agent: " + what, report.err, kExitLaunchFailed);
}

}  // namespace

SpawnResult spawn_agent(const AgentSpec& spec) {
  if (spec.argv.empty())
    return launch_error("start the agent: no command given", EINVAL, kExitLaunchFailed);
  if (spec.cgroup_fd < 0 && !spec.without_cgroup)
    return launch_error("start the agent: no cgroup to place it in", EINVAL, kExitLaunchFailed);
  const std::string where = spec.cgroup_path.empty() ? "the session cgroup" : spec.cgroup_path;

  auto path_env = env_lookup(spec.env, "PATH");
  auto path = resolve_command(spec.argv[0], path_env.value_or(kDefaultPath), spec.uid, spec.gid,
                              spec.groups);
  if (!path) return path.error();

  std::vector<char*> argv;
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& e : spec.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0)
    return launch_error("start the agent: create the report pipe", errno, kExitLaunchFailed);
  UniqueFd report_r(pipefd[0]), report_w(pipefd[1]);

  ChildPlan plan{};
  plan.path = path->c_str();
  plan.argv = argv.data();
  plan.envp = envp.data();
  plan.uid = spec.uid;
  plan.gid = spec.gid;
  plan.groups = spec.groups.data();
  plan.ngroups = spec.groups.size();
  // Only root may set groups; unprivileged (tests) keeps its own, and must target itself.
  plan.set_groups = ::geteuid() == 0;
  plan.no_new_privs = spec.no_new_privs;
  plan.stdio[0] = spec.stdin_fd;
  plan.stdio[1] = spec.stdout_fd;
  plan.stdio[2] = spec.stderr_fd;
  plan.report_fd = report_w.get();
  plan.procs_fd = -1;
  std::vector<const char*> readonly;
  for (const auto& r : spec.readonly_paths) readonly.push_back(r.c_str());
  plan.readonly_paths = readonly.data();
  plan.n_readonly = readonly.size();
  const CoverPlan cover = spec.uid == 0 && spec.contain_root ? plan_cover(spec) : CoverPlan{};
  if (cover.hidden.size() > kMaxHidden)
    return launch_error("start the agent: " + std::to_string(cover.hidden.size()) +
                            " paths to hide from a root agent, more than " +
                            std::to_string(kMaxHidden) + " (block devices in /dev?)",
                        E2BIG, kExitLaunchFailed);
  std::vector<HiddenPath> hidden;
  for (const auto& [path, dir] : cover.hidden) hidden.push_back({path.c_str(), dir});
  std::vector<std::vector<const char*>> visible_dirs;
  std::vector<VisiblePath> visible;
  for (const auto& v : cover.visible) {
    visible_dirs.emplace_back();
    for (const auto& d : v.dirs) visible_dirs.back().push_back(d.c_str());
  }
  for (size_t i = 0; i < cover.visible.size() && i < 16; ++i)
    visible.push_back(
        {cover.visible[i].path.c_str(), visible_dirs[i].data(), visible_dirs[i].size()});
  plan.hidden = hidden.data();
  plan.n_hidden = hidden.size();
  plan.visible = visible.data();
  plan.n_visible = visible.size();
  const std::vector<sock_filter> filter = agent_socket_filter();
  sock_fprog filter_prog{static_cast<unsigned short>(filter.size()),
                         const_cast<sock_filter*>(filter.data())};
  plan.socket_filter = spec.socket_filter ? &filter_prog : nullptr;
  plan.contain_root = spec.contain_root;
  plan.rlimit_nproc = spec.rlimit_nproc;

  UniqueFd procs_fd;  // the fork path's cgroup.procs, open until the child has joined
  auto agent = start_child(spec, plan, where, procs_fd);
  if (!agent) return agent.error();
  report_w.reset();  // else the read in wait_for_exec never sees EOF
  return wait_for_exec(spec, std::move(*agent), report_r, *path, where);
}

std::vector<std::string> agent_hidden_paths(const std::vector<std::string>& secret_paths) {
  std::vector<std::string> out = {"/etc/acp", "/var/lib/acp", "/run/acp"};
  out.insert(out.end(), secret_paths.begin(), secret_paths.end());
  return out;
}

Result<int> wait_agent(Agent& agent) {
  if (agent.pid <= 0) return make_error("wait for the agent: it was already reaped", ECHILD);
  int st = 0;
  for (;;) {
    if (::waitpid(agent.pid, &st, 0) >= 0) break;
    if (errno != EINTR)
      return errno_error("wait for the agent (pid " + std::to_string(agent.pid) + ")");
  }
  agent.pid = -1;
  return exit_status_code(st);
}

int exit_status_code(int wstatus) {
  if (WIFEXITED(wstatus)) return WEXITSTATUS(wstatus);
  if (WIFSIGNALED(wstatus)) return 128 + WTERMSIG(wstatus);
  if (WIFSTOPPED(wstatus)) return 128 + WSTOPSIG(wstatus);
  return kExitLaunchFailed;
}

Status forward_signal(const Agent& agent, int sig) {
  if (agent.pidfd) {
    if (::syscall(SYS_pidfd_send_signal, agent.pidfd.get(), sig, nullptr, 0) == 0) return {};
    if (errno != ENOSYS) return errno_error("send signal " + std::to_string(sig) + " to the agent");
  }
  if (agent.pid <= 0) return make_error("send a signal to the agent: it has ended", ESRCH);
  if (::kill(agent.pid, sig) != 0)
    return errno_error("send signal " + std::to_string(sig) + " to the agent (pid " +
                       std::to_string(agent.pid) + ")");
  return {};
}

}  // namespace acp::launch
