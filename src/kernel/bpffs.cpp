#include "acp/kernel/bpffs.hpp"

#include <dirent.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <memory>

#include "acp/cgroup/mounts.hpp"

namespace acp::kernel {

Status ensure_bpffs(const std::string& mount_point) {
  auto table = read_mounts_table();
  if (!table) return table.error();
  if (is_mounted_as(*table, mount_point, "bpf")) return {};
  if (::mkdir(mount_point.c_str(), 0700) != 0 && errno != EEXIST)
    return errno_error("mkdir " + mount_point + " (the bpffs mount point)");
  if (::mount("bpf", mount_point.c_str(), "bpf", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0700") !=
      0)
    return errno_error("mount -t bpf bpf " + mount_point +
                       " (needs root; or mount it yourself: mount -t bpf bpf " + mount_point + ")");
  return {};
}

bool safe_pin_component(std::string_view id) {
  if (id.empty() || id.size() > 64 || id == "." || id == "..") return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

Result<std::string> session_pin_path(std::string_view session_id, const std::string& root) {
  if (!safe_pin_component(session_id))
    return make_error("session id \"" + std::string(session_id) +
                          "\": expected 1-64 characters of A-Z a-z 0-9 _ . -",
                      EINVAL);
  return root + "/acp/" + std::string(session_id);
}

Result<std::string> session_pin_dir(std::string_view session_id, const std::string& root) {
  auto path = session_pin_path(session_id, root);
  if (!path) return path.error();
  if (root == kBpffsMountPoint) {
    if (auto st = ensure_bpffs(root); !st) return st.error();
  }
  std::string base = root + "/acp";
  const std::string& dir = *path;
  // A session ending at the same moment may remove the empty base between the two mkdirs:
  // make it again.
  for (int attempt = 0;; ++attempt) {
    if (::mkdir(base.c_str(), 0700) != 0 && errno != EEXIST) return errno_error("mkdir " + base);
    if (::mkdir(dir.c_str(), 0700) == 0 || errno == EEXIST) return dir;
    if (errno != ENOENT || attempt == 3) return errno_error("mkdir " + dir);
  }
}

Result<std::vector<std::string>> list_session_pin_dirs(const std::string& root) {
  std::vector<std::string> out;
  std::string base = root + "/acp";
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(base.c_str()), ::closedir);
  if (!d) {
    if (errno == ENOENT) return out;
    return errno_error("open directory " + base);
  }
  errno = 0;
  while (dirent* e = ::readdir(d.get())) {
    std::string_view name = e->d_name;
    if (e->d_type == DT_DIR && safe_pin_component(name)) out.emplace_back(name);
  }
  if (errno != 0) return errno_error("read directory " + base);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace acp::kernel
