#include "acp/cgroup/cgroup.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <thread>

namespace acp {
namespace {

using Clock = std::chrono::steady_clock;

Result<std::string> read_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return errno_error("open " + path);
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("read " + path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

Status write_file(const std::string& path, std::string_view data) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return errno_error("open " + path);
  ssize_t n;
  do {
    n = ::write(fd.get(), data.data(), data.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno_error("write '" + std::string(data) + "' to " + path);
  return {};
}

bool file_exists(const std::string& path) {
  return ::access(path.c_str(), F_OK) == 0;
}

Status check_cgroup2(int fd, const std::string& path) {
  struct statfs sfs {};
  if (::fstatfs(fd, &sfs) != 0) return errno_error("statfs " + path);
  if (sfs.f_type != CGROUP2_SUPER_MAGIC)
    return make_error(path +
                      " is not on a cgroup v2 filesystem: use a directory under the cgroup2 "
                      "mount point (see /proc/self/mounts)");
  return {};
}

// Child cgroup directories of `path`, full paths.
Result<std::vector<std::string>> child_cgroups(const std::string& path) {
  DIR* d = ::opendir(path.c_str());
  if (!d) return errno_error("open cgroup directory " + path);
  std::vector<std::string> out;
  while (dirent* e = ::readdir(d)) {
    std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    if (e->d_type == DT_DIR) out.push_back(path + "/" + std::string(name));
  }
  ::closedir(d);
  return out;
}

Status collect_procs(const std::string& path, std::vector<pid_t>& out, bool top) {
  auto text = read_file(path + "/cgroup.procs");
  if (!text) {
    // A descendant that vanished while we walked is simply empty now.
    if (!top && text.error().err == ENOENT) return {};
    return text.error();
  }
  const char* p = text->data();
  const char* end = p + text->size();
  while (p < end) {
    pid_t pid = 0;
    auto [next, ec] = std::from_chars(p, end, pid);
    if (ec == std::errc()) out.push_back(pid);
    p = next;
    while (p < end && (*p < '0' || *p > '9')) ++p;
  }
  auto kids = child_cgroups(path);
  if (!kids) return !top && kids.error().err == ENOENT ? Status{} : Status{kids.error()};
  for (const auto& k : *kids) {
    if (auto st = collect_procs(k, out, /*top=*/false); !st) return st;
  }
  return {};
}

std::string join_pids(const std::vector<pid_t>& pids) {
  std::string s;
  for (pid_t p : pids) {
    if (!s.empty()) s += ' ';
    s += std::to_string(p);
  }
  return s;
}

// Deepest first, so that each rmdir meets an empty directory.
void descendants_post_order(const std::string& path, std::vector<std::string>& out) {
  auto kids = child_cgroups(path);
  if (!kids) return;
  for (const auto& k : *kids) {
    descendants_post_order(k, out);
    out.push_back(k);
  }
}

Status rmdir_retrying(const std::string& path) {
  // EBUSY right after a kill: the last tasks are still leaving. 50 x 10 ms is plenty.
  for (int attempt = 0;; ++attempt) {
    if (::rmdir(path.c_str()) == 0 || errno == ENOENT) return {};
    if (errno != EBUSY || attempt >= 50) return errno_error("remove cgroup " + path);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace

Result<Cgroup> Cgroup::create(const std::string& path) {
  if (path.empty() || path.front() != '/')
    return make_error("cgroup path '" + path + "' is not absolute", EINVAL);
  // mkdir -p of the parents; the leaf is made below and must be new. A session ending at the
  // same moment may remove an empty parent in between: make it again.
  int made = -1;
  for (int attempt = 0; attempt < 4; ++attempt) {
    for (size_t pos = path.find('/', 1); pos != std::string::npos; pos = path.find('/', pos + 1)) {
      std::string parent = path.substr(0, pos);
      if (::mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST)
        return errno_error("create cgroup parent " + parent);
    }
    made = ::mkdir(path.c_str(), 0755);
    if (made == 0 || errno != ENOENT) break;
  }
  if (made != 0) {
    if (errno == EEXIST)
      return make_error("create cgroup " + path +
                            ": it already exists (another session with this id, or one left "
                            "behind: check `acp status`, clean up with `acp gc`)",
                        EEXIST);
    return errno_error("create cgroup " + path);
  }
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) {
    Error e = errno_error("open cgroup " + path);
    ::rmdir(path.c_str());
    return e;
  }
  if (auto st = check_cgroup2(fd.get(), path); !st) {
    fd.reset();
    ::rmdir(path.c_str());
    return st.error();
  }
  return Cgroup(path, std::move(fd), /*owned=*/true);
}

Result<Cgroup> Cgroup::open(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return errno_error("open cgroup " + path);
  if (auto st = check_cgroup2(fd.get(), path); !st) return st.error();
  return Cgroup(path, std::move(fd), /*owned=*/false);
}

Cgroup::Cgroup(Cgroup&& o) noexcept
    : path_(std::move(o.path_)), fd_(std::move(o.fd_)), owned_(std::exchange(o.owned_, false)) {}

Cgroup& Cgroup::operator=(Cgroup&& o) noexcept {
  if (this != &o) {
    drop();
    path_ = std::move(o.path_);
    fd_ = std::move(o.fd_);
    owned_ = std::exchange(o.owned_, false);
  }
  return *this;
}

Cgroup::~Cgroup() {
  drop();
}

void Cgroup::drop() {
  if (!owned_ || path_.empty()) return;
  fd_.reset();
  ::rmdir(path_.c_str());  // Fails (EBUSY) while populated: then it stays, by design.
  owned_ = false;
}

Result<std::vector<pid_t>> Cgroup::procs() const {
  std::vector<pid_t> out;
  if (auto st = collect_procs(path_, out, /*top=*/true); !st) return st.error();
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Result<bool> Cgroup::populated() const {
  auto text = read_file(path_ + "/cgroup.events");
  if (!text) return text.error();
  auto pos = text->find("populated ");
  if (pos == std::string::npos)
    return make_error("no 'populated' line in " + path_ + "/cgroup.events");
  return text->compare(pos + 10, 1, "1") == 0;
}

Status Cgroup::kill_all(std::chrono::milliseconds timeout, KillMethod method) {
  const auto deadline = Clock::now() + timeout;
  const std::string kill_file = path_ + "/cgroup.kill";
  const std::string freeze_file = path_ + "/cgroup.freeze";
  const bool use_kill_file = method == KillMethod::kAuto && file_exists(kill_file);

  // Watch cgroup.events so we wake as soon as "populated" drops; the short poll timeout below
  // bounds each wait anyway, so a missed event only costs a few milliseconds.
  UniqueFd ino(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (ino) ::inotify_add_watch(ino.get(), (path_ + "/cgroup.events").c_str(), IN_MODIFY);

  bool frozen = false;
  if (use_kill_file) {
    // The kernel kills the whole subtree and makes forks racing with it fail.
    if (auto st = write_file(kill_file, "1"); !st) return st;
  } else {
    // Frozen tasks cannot fork, but still die of SIGKILL: no new pid can slip past the sweep.
    if (auto st = write_file(freeze_file, "1"); !st) return st;
    frozen = true;
  }

  Status result;
  for (;;) {
    auto pop = populated();
    if (!pop) {
      result = pop.error();
      break;
    }
    if (!*pop) break;
    if (!use_kill_file) {
      auto pids = procs();
      if (!pids) {
        result = pids.error();
        break;
      }
      for (pid_t p : *pids) ::kill(p, SIGKILL);
    }
    auto now = Clock::now();
    if (now >= deadline) {
      auto left = procs();
      result = make_error("kill every process in cgroup " + path_ + ": still populated after " +
                              std::to_string(timeout.count()) + " ms, pids left: " +
                              (left ? join_pids(*left) : std::string("(unreadable)")),
                          ETIMEDOUT);
      break;
    }
    auto wait_ms = std::min<long>(
        20, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1);
    if (ino) {
      pollfd pfd{ino.get(), POLLIN, 0};
      if (::poll(&pfd, 1, static_cast<int>(wait_ms)) > 0) {
        char buf[4096];
        while (::read(ino.get(), buf, sizeof buf) > 0) {
        }
      }
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
    }
  }
  if (frozen) {
    // Thaw so that a later user of the cgroup (or its removal) does not meet a frozen tree.
    if (auto st = write_file(freeze_file, "0"); !st && result.ok()) result = st;
  }
  return result;
}

Status Cgroup::remove() {
  std::vector<std::string> dirs;
  descendants_post_order(path_, dirs);
  dirs.push_back(path_);
  fd_.reset();
  for (const auto& d : dirs) {
    if (auto st = rmdir_retrying(d); !st) {
      // Keep the handle usable: reopen so fd() stays valid for another attempt.
      fd_.reset(::open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      return st;
    }
  }
  owned_ = false;
  return {};
}

std::string session_cgroup_path(const std::string& cgroup2_root, std::string_view session_id) {
  std::string root = cgroup2_root;
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  if (root == "/") root.clear();
  return root + "/acp/" + std::string(session_id);
}

}  // namespace acp
