// PodConfiner: attach + pin, adopt, replace, release. The order in each keeps the pod walled:
// a new wall is attached before an old one is detached.
#include "acp/k8s/pod_confiner.hpp"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>

#include "acp/cgroup/cgroup.hpp"
#include "acp/k8s/pod.hpp"
#include "acp/kernel/bpffs.hpp"
#include "acp/kernel/pinned_session.hpp"
#include "acp/util/unique_fd.hpp"

namespace acp::k8s {
namespace {

// The pod's uid as the 48-bit number stamped into its kernel events.
uint64_t uid_number(const std::string& uid) {
  uint64_t v = 0;
  int digits = 0;
  for (char c : uid) {
    if (c == '-') continue;
    v = (v << 4) | static_cast<uint64_t>(c <= '9' ? c - '0' : c - 'a' + 10);
    if (++digits == 12) break;
  }
  return v;
}

// What a pod's allow map holds: the node proxy, and its door's own endpoints (the wall leads
// connects there; the egress backstop passes only what the allow map holds, loopback aside,
// and a pod's door is not on its loopback).
std::vector<kernel::Endpoint> allow_list(const std::vector<kernel::Endpoint>& proxy,
                                         const PodDoor& door) {
  std::vector<kernel::Endpoint> out = proxy;
  auto add = [&](uint16_t port, bool v6, uint8_t l4) {
    if (port == 0) return;
    out.push_back(v6 ? kernel::endpoint_from_ip6(door.addr6, port, l4)
                     : kernel::endpoint_from_ip4(door.addr4, port, l4));
  };
  add(door.port4, false, ACP_PROTO_TCP);
  add(door.dns_port4, false, ACP_PROTO_UDP);
  add(door.port6, true, ACP_PROTO_TCP);
  add(door.dns_port6, true, ACP_PROTO_UDP);
  return out;
}

}  // namespace

const char* to_string(ConfineOutcome o) {
  switch (o) {
    case ConfineOutcome::Confined:
      return "confined";
    case ConfineOutcome::Adopted:
      return "adopted";
    case ConfineOutcome::Replaced:
      return "replaced";
    case ConfineOutcome::NoCgroup:
      return "no cgroup yet";
  }
  return "?";
}

std::string PodConfiner::pin_dir(const std::string& uid) const {
  return cfg_.bpffs_root + "/acp/" + kPodPinPrefix + uid;
}

Result<std::vector<std::string>> PodConfiner::pinned_uids() const {
  auto ids = kernel::list_session_pin_dirs(cfg_.bpffs_root);
  if (!ids) return ids.error();
  std::vector<std::string> out;
  const std::string prefix = kPodPinPrefix;
  for (const auto& id : *ids)
    if (id.rfind(prefix, 0) == 0 && valid_pod_uid(id.substr(prefix.size())))
      out.push_back(id.substr(prefix.size()));
  return out;
}

// Reads only the links' own info (BPF_OBJ_GET + BPF_OBJ_GET_INFO_BY_FD): unlike
// PinnedSession::links(), which opens each program by id for its name, this needs no
// CAP_SYS_ADMIN, so the DaemonSet's capabilities suffice to adopt. A wall with the door
// (its programs pinned) is whole only when the door is wanted, and one without it only when
// it is not: otherwise it is replaced.
bool PodConfiner::wall_is_whole(const std::string& dir, const std::string& cgroup_path,
                                bool door) const {
  if (!kernel::PinnedSession::open(dir)) return false;  // every map pinned
  struct stat st {};
  if (::stat(cgroup_path.c_str(), &st) != 0) return false;
  for (const char* n : kernel::kLinkNames)
    if (!kernel::pinned_link_attached_to(dir + "/link_" + n, static_cast<uint64_t>(st.st_ino)))
      return false;
  for (const char* n : kernel::kDoorLinkNames) {
    const std::string link = dir + "/link_" + n;
    if (!door) {
      if (::access(link.c_str(), F_OK) == 0) return false;
    } else if (!kernel::pinned_link_attached_to(link, static_cast<uint64_t>(st.st_ino))) {
      return false;
    }
  }
  return true;
}

Status PodConfiner::fix_wall(const std::string& dir, const PodDoor& door) const {
  auto pinned = kernel::PinnedSession::open(dir);
  if (!pinned) return pinned.error();
  const int fd = pinned->map_fd("allow_map");
  const auto allow = allow_list(cfg_.allow, door);
  // Add first: the pod never loses the door while the list is brought up to date.
  for (const auto& ep : allow)
    if (auto st = kernel::add_allow_entry(fd, ep); !st) return st;
  auto entries = kernel::read_allow_entries(fd);
  if (!entries) return entries.error();
  for (const auto& ep : *entries)
    if (std::find(allow.begin(), allow.end(), ep) == allow.end())
      if (auto st = kernel::remove_allow_entry(fd, ep); !st) return st;
  // The mode and this agent's door (its ports are new: the earlier agent's are closed); the
  // session id the wall's events carry stays.
  auto config = pinned->config();
  if (!config) return config.error();
  return kernel::write_config(pinned->map_fd("config_map"),
                              kernel::abi_config(sock_config(config->session_id, door)));
}

kernel::SockConfig PodConfiner::sock_config(uint64_t session_id, const PodDoor& door) const {
  return {.mode = cfg_.mode,
          .session_id = session_id,
          .door_port4 = door.port4,
          .door_port6 = door.port6,
          .dns_port4 = door.dns_port4,
          .dns_port6 = door.dns_port6,
          .door_addr4 = door.addr4,
          .door_addr6 = door.addr6};
}

Result<PodDoor> PodConfiner::door_of(const std::string& uid) const {
  if (!cfg_.door) return PodDoor{};
  return cfg_.door(uid, pin_dir(uid));
}

// Not the session builder (session_builder.hpp), and not its BpfWall: a pod's processes run
// already, so its allow entries (the node proxy, known up front) go in before the programs are
// attached, where a session attaches first and allows its door once the proxy is bound; and a
// pod has no record, cgroup, door or agent of ACP's making. The programs, their one attach
// call and their pins are the same (SockPrograms).
Result<kernel::SockPrograms> PodConfiner::load(const std::string& uid) const {
  auto door = door_of(uid);
  if (!door) return door.error();
  auto progs = kernel::SockPrograms::load(sock_config(uid_number(uid), *door));
  if (!progs) return progs.error();
  for (const auto& ep : allow_list(cfg_.allow, *door))
    if (auto st = progs->allow(ep); !st) return st.error();
  return progs;
}

Status PodConfiner::prepare(const std::string& uid) {
  if (!valid_pod_uid(uid)) return make_error("bad pod uid \"" + uid + "\"");
  if (prepared_.count(uid)) return {};
  auto progs = load(uid);
  if (!progs) return progs.error();
  prepared_.emplace(uid, std::move(*progs));
  return {};
}

Status PodConfiner::attach_new(const std::string& uid, const std::string& cgroup_path,
                               const std::string& dir) {
  auto cg = Cgroup::open(cgroup_path);
  if (!cg) return cg.error();
  std::optional<kernel::SockPrograms> progs;
  if (auto it = prepared_.find(uid); it != prepared_.end()) {
    progs.emplace(std::move(it->second));
    prepared_.erase(it);
  } else {
    auto loaded = load(uid);
    if (!loaded) return loaded.error();
    progs.emplace(std::move(*loaded));
  }
  if (auto st = progs->attach(cg->fd()); !st) return st;
  // The new wall stands (held by this process) before an old, incomplete one is taken down.
  if (auto st = kernel::detach_and_unpin(dir); !st) return st;
  auto made = kernel::session_pin_dir(kPodPinPrefix + uid, cfg_.bpffs_root);
  if (!made) return made.error();
  return progs->pin(*made);
}

Result<ConfineOutcome> PodConfiner::confine(const std::string& uid, std::optional<QosClass> qos,
                                            std::string* cgroup_path) {
  if (!valid_pod_uid(uid)) return make_error("bad pod uid \"" + uid + "\"");
  auto path = find_pod_cgroup(cfg_.cgroup_root, cfg_.driver, uid, qos);
  if (!path) return ConfineOutcome::NoCgroup;
  if (cgroup_path) *cgroup_path = *path;
  const std::string dir = pin_dir(uid);
  struct stat st {};
  const bool pinned = ::stat(dir.c_str(), &st) == 0;
  auto door = door_of(uid);
  if (!door) return make_error("the door of pod " + uid + ": " + door.error().message());
  if (pinned && wall_is_whole(dir, *path, door->on())) {
    if (auto s = fix_wall(dir, *door); !s) return s.error();
    return ConfineOutcome::Adopted;
  }
  if (auto s = attach_new(uid, *path, dir); !s)
    return make_error("confine pod " + uid + " (cgroup " + *path + "): " + s.error().message());
  return pinned ? ConfineOutcome::Replaced : ConfineOutcome::Confined;
}

Status PodConfiner::release(const std::string& uid) {
  if (!valid_pod_uid(uid)) return make_error("bad pod uid \"" + uid + "\"");
  drop_prepared(uid);
  return kernel::detach_and_unpin(pin_dir(uid));
}

Result<kernel::Counters> PodConfiner::counters(const std::string& uid) const {
  auto pinned = kernel::PinnedSession::open(pin_dir(uid));
  if (!pinned) return pinned.error();
  return pinned->counters();
}

}  // namespace acp::k8s
