#include "acp/launch/task_limit.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace acp::launch {
namespace {

bool has_word(const std::string& text, const std::string& word) {
  std::istringstream in(text);
  for (std::string w; in >> w;)
    if (w == word) return true;
  return false;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Status write_file(const std::string& path, const std::string& value) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno_error("open " + path);
  ssize_t n = ::write(fd, value.data(), value.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(value.size()))
    return make_error("write \"" + value + "\" to " + path, n < 0 ? err : EIO);
  return {};
}

}  // namespace

uint64_t count_user_tasks(uid_t uid) {
  uint64_t n = 0;
  DIR* d = ::opendir("/proc");
  if (!d) return 0;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream in(std::string("/proc/") + e->d_name + "/status");
    bool mine = false;
    for (std::string line; std::getline(in, line);) {
      unsigned long real = 0;
      if (std::sscanf(line.c_str(), "Uid: %lu", &real) == 1) mine = real == uid;
      unsigned long threads = 0;
      if (mine && std::sscanf(line.c_str(), "Threads: %lu", &threads) == 1) n += threads;
    }
  }
  ::closedir(d);
  return n;
}

Result<TaskLimit> apply_task_limit(const std::string& cgroup_root, const std::string& cgroup_path,
                                   uid_t uid, uint64_t max_tasks) {
  TaskLimit t;
  // No session cgroup (the rootless preload backend): only RLIMIT_NPROC can bound it.
  if (!cgroup_path.empty() && has_word(read_file(cgroup_root + "/cgroup.controllers"), "pids")) {
    // Enable pids from the root down to the session cgroup's parent, then set the limit.
    std::string dir = cgroup_root;
    std::string rest = cgroup_path.substr(cgroup_root.size());
    for (size_t pos = 0;;) {
      if (auto st = write_file(dir + "/cgroup.subtree_control", "+pids"); !st) {
        if (!has_word(read_file(dir + "/cgroup.subtree_control"), "pids")) return st.error();
      }
      size_t next = rest.find('/', pos + 1);
      if (next == std::string::npos) break;
      dir = cgroup_root + rest.substr(0, next);
      pos = next;
    }
    if (auto st = write_file(cgroup_path + "/pids.max", std::to_string(max_tasks)); !st)
      return st.error();
    t.kind = TaskLimit::Kind::kPidsMax;
    t.value = max_tasks;
    t.description = "pids.max=" + std::to_string(max_tasks) + " (cgroup v2)";
    return t;
  }
  if (uid == 0) {
    t.description =
        "none: cgroup v2 has no pids controller here and RLIMIT_NPROC does not apply to root";
    return t;
  }
  const uint64_t existing = count_user_tasks(uid);
  t.kind = TaskLimit::Kind::kRlimitNproc;
  t.value = existing + max_tasks;
  t.description = "RLIMIT_NPROC=" + std::to_string(t.value) + " (uid " + std::to_string(uid) +
                  ": " + std::to_string(existing) + " tasks at start + " +
                  std::to_string(max_tasks) + "; cgroup v2 has no pids controller here)";
  return t;
}

}  // namespace acp::launch
