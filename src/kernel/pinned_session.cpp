#include "acp/kernel/pinned_session.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <linux/bpf.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

#include "libbpf_log.hpp"

namespace acp::kernel {
namespace {

// The entries of dir whose names start with prefix, sorted. A missing dir yields none.
Result<std::vector<std::string>> list_with_prefix(const std::string& dir, std::string_view prefix) {
  std::vector<std::string> out;
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
  if (!d) {
    if (errno == ENOENT) return out;
    return errno_error("open directory " + dir);
  }
  errno = 0;
  while (dirent* e = ::readdir(d.get())) {
    std::string_view name = e->d_name;
    if (name.substr(0, prefix.size()) == prefix) out.emplace_back(name);
  }
  if (errno != 0) return errno_error("read directory " + dir);
  std::sort(out.begin(), out.end());
  return out;
}

Result<LinkInfo> link_info(const std::string& dir, const std::string& pin_name) {
  std::string path = dir + "/" + pin_name;
  UniqueFd fd(bpf_obj_get(path.c_str()));
  if (!fd) return errno_error("open pinned BPF link " + path);
  bpf_link_info li{};
  uint32_t len = sizeof(li);
  if (bpf_obj_get_info_by_fd(fd.get(), &li, &len) != 0)
    return errno_error("read BPF link info of " + path);
  LinkInfo info;
  info.link_id = li.id;
  info.prog_id = li.prog_id;
  info.pin_name = pin_name;
  if (li.type == BPF_LINK_TYPE_CGROUP) {
    info.cgroup_id = li.cgroup.cgroup_id;
    const char* t = libbpf_bpf_attach_type_str(static_cast<bpf_attach_type>(li.cgroup.attach_type));
    // libbpf 1.1 predates the AF_UNIX attach types (Linux 6.7): name them as newer libbpf does.
    if (!t && li.cgroup.attach_type == 49) t = "cgroup_unix_connect";
    if (!t && li.cgroup.attach_type == 50) t = "cgroup_unix_sendmsg";
    info.attach_type = t ? t : "attach-type-" + std::to_string(li.cgroup.attach_type);
  } else {
    info.attach_type = "link-type-" + std::to_string(li.type);
  }
  // The program's name needs its own fd; a link detached by someone else has prog_id 0.
  if (li.prog_id != 0) {
    UniqueFd pfd(bpf_prog_get_fd_by_id(li.prog_id));
    if (!pfd) return errno_error("open BPF program id " + std::to_string(li.prog_id));
    bpf_prog_info pi{};
    uint32_t plen = sizeof(pi);
    if (bpf_obj_get_info_by_fd(pfd.get(), &pi, &plen) != 0)
      return errno_error("read BPF program info of id " + std::to_string(li.prog_id));
    info.prog_name = std::string(pi.name, strnlen(pi.name, sizeof(pi.name)));
  }
  return info;
}

}  // namespace

nlohmann::json link_info_to_json(const LinkInfo& l) {
  return {{"pin", l.pin_name},   {"link_id", l.link_id},         {"prog_id", l.prog_id},
          {"prog", l.prog_name}, {"attach_type", l.attach_type}, {"cgroup_id", l.cgroup_id}};
}

Result<PinnedSession> PinnedSession::open(const std::string& dir) {
  detail::quiet_libbpf_once();
  PinnedSession s;
  s.dir_ = dir;
  for (const char* name : kMapNames) {
    std::string path = dir + "/map_" + name;
    UniqueFd fd(bpf_obj_get(path.c_str()));
    // unix_allow is newer than the other maps: a session pinned by an older acp has none.
    if (!fd && errno == ENOENT && std::string_view(name) == "unix_allow") continue;
    if (!fd) return errno_error("open pinned BPF map " + path);
    s.maps_.emplace(name, std::move(fd));
  }
  // Only a wall with the transparent door has it.
  if (UniqueFd fd(bpf_obj_get((dir + "/map_door_origin").c_str())); fd)
    s.maps_.emplace("door_origin", std::move(fd));
  return s;
}

int PinnedSession::map_fd(std::string_view name) const {
  auto it = maps_.find(name);
  return it == maps_.end() ? -1 : it->second.get();
}

Result<std::vector<Endpoint>> PinnedSession::allow_entries() const {
  return read_allow_entries(map_fd("allow_map"));
}
Result<std::vector<std::string>> PinnedSession::unix_allow_entries() const {
  int fd = map_fd("unix_allow");
  if (fd < 0) return std::vector<std::string>{};
  return read_unix_allow_entries(fd);
}
Result<Counters> PinnedSession::counters() const {
  return read_counters(map_fd("counters"));
}
Result<std::vector<acp_event>> PinnedSession::recent_events() const {
  return read_recent_events(map_fd("recent"));
}
Result<uint64_t> PinnedSession::lost_events() const {
  return read_lost_events(map_fd("lost_events"));
}
Result<acp_config> PinnedSession::config() const {
  return read_config(map_fd("config_map"));
}
Status PinnedSession::set_mode(uint32_t mode) {
  return write_mode(map_fd("config_map"), mode);
}

Result<std::vector<LinkInfo>> PinnedSession::links() const {
  auto names = list_with_prefix(dir_, "link_");
  if (!names) return names.error();
  std::vector<LinkInfo> out;
  for (const auto& n : *names) {
    auto info = link_info(dir_, n);
    if (!info) return info.error();
    out.push_back(std::move(*info));
  }
  return out;
}

bool pinned_link_attached_to(const std::string& path, uint64_t cgroup_id) {
  UniqueFd fd(bpf_obj_get(path.c_str()));
  if (!fd) return false;
  bpf_link_info li{};
  uint32_t len = sizeof li;
  if (bpf_obj_get_info_by_fd(fd.get(), &li, &len) != 0) return false;
  return li.type == BPF_LINK_TYPE_CGROUP && li.prog_id != 0 && li.cgroup.cgroup_id == cgroup_id;
}

Status detach_and_unpin(const std::string& dir) {
  detail::quiet_libbpf_once();
  auto links = list_with_prefix(dir, "link_");
  if (!links) return links.error();
  for (const auto& n : *links) {
    std::string path = dir + "/" + n;
    UniqueFd fd(bpf_obj_get(path.c_str()));
    if (!fd) {
      if (errno == ENOENT) continue;
      return errno_error("open pinned BPF link " + path);
    }
    // Detach first, unlink second: a crash in between leaves a pin of a dead link, which a
    // rerun removes, never a live wall without its pin.
    if (bpf_link_detach(fd.get()) != 0 && errno != ENOLINK)
      return errno_error("detach BPF link " + path);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return errno_error("unlink " + path);
  }
  auto maps = list_with_prefix(dir, "map_");
  if (!maps) return maps.error();
  for (const auto& n : *maps) {
    std::string path = dir + "/" + n;
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return errno_error("unlink " + path);
  }
  if (::rmdir(dir.c_str()) != 0 && errno != ENOENT) return errno_error("rmdir " + dir);
  // The last session's pins gone: the parent (/sys/fs/bpf/acp) goes too; while another
  // session's directory is in it this fails harmlessly (session_pin_dir() copes with the race).
  if (auto slash = dir.rfind('/'); slash != std::string::npos && slash > 0)
    ::rmdir(dir.substr(0, slash).c_str());
  return {};
}

}  // namespace acp::kernel
