#include "acp/cgroup/mounts.hpp"

#include <fstream>
#include <sstream>

namespace acp {
namespace {

// /proc/self/mounts escapes space, tab, newline and backslash as \ooo.
std::string unescape_octal(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '7' && s[i + 2] >= '0' &&
        s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
      out.push_back(
          static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

template <typename F>
void for_each_mount(std::string_view text, F&& f) {
  std::istringstream in{std::string(text)};
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string dev, dir, type;
    if (!(fields >> dev >> dir >> type)) continue;
    if (f(unescape_octal(dir), type)) return;
  }
}

}  // namespace

std::optional<std::string> find_mount_point(std::string_view mounts_text, std::string_view fstype) {
  std::optional<std::string> found;
  for_each_mount(mounts_text, [&](const std::string& dir, const std::string& type) {
    if (type != fstype) return false;
    found = dir;
    return true;
  });
  return found;
}

bool is_mounted_as(std::string_view mounts_text, std::string_view path, std::string_view fstype) {
  bool found = false;
  for_each_mount(mounts_text, [&](const std::string& dir, const std::string& type) {
    found = dir == path && type == fstype;
    return found;
  });
  return found;
}

Result<std::string> read_mounts_table() {
  std::ifstream in("/proc/self/mounts");
  if (!in) return errno_error("read /proc/self/mounts");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Result<std::string> cgroup2_mount_point() {
  auto table = read_mounts_table();
  if (!table) return table.error();
  auto dir = find_mount_point(*table, "cgroup2");
  if (!dir)
    return make_error(
        "no cgroup2 filesystem in /proc/self/mounts: mount one (mount -t cgroup2 none "
        "/sys/fs/cgroup/unified) or boot with systemd.unified_cgroup_hierarchy=1");
  return *dir;
}

Result<std::vector<std::string>> cgroup_dir_candidates(const std::string& pid) {
  auto table = read_mounts_table();
  if (!table) return table.error();
  std::vector<std::string> roots;
  for_each_mount(*table, [&](const std::string& dir, const std::string& type) {
    if (type == "cgroup2") roots.push_back(dir);
    return false;
  });
  if (roots.empty()) return cgroup2_mount_point().error();
  const std::string file = "/proc/" + pid + "/cgroup";
  std::ifstream in(file);
  if (!in) return errno_error("read " + file);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("0::", 0) != 0) continue;
    const std::string rel = line.size() > 4 ? line.substr(3) : "";
    std::vector<std::string> out;
    for (const auto& r : roots) out.push_back(r + rel);
    return out;
  }
  return make_error(file + " has no cgroup v2 (0::) line");
}

Result<std::string> cgroup_dir_of(const std::string& pid) {
  auto all = cgroup_dir_candidates(pid);
  if (!all) return all.error();
  return all->front();
}

}  // namespace acp
