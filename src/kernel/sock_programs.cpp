#include "acp/kernel/sock_programs.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <utility>
#include <vector>

#include "acp/kernel/session_maps.hpp"
#include "acp_sock.skel.h"
#include "libbpf_log.hpp"

namespace acp::kernel {
namespace {

// The skeleton's programs and link slots, in kLinkNames order.
std::array<bpf_program*, kLinkNames.size()> programs(acp_sock* s) {
  return {s->progs.acp_connect4, s->progs.acp_connect6,    s->progs.acp_sendmsg4,
          s->progs.acp_sendmsg6, s->progs.acp_sock_create, s->progs.acp_egress};
}
std::array<bpf_link**, kLinkNames.size()> link_slots(acp_sock* s) {
  return {&s->links.acp_connect4, &s->links.acp_connect6,    &s->links.acp_sendmsg4,
          &s->links.acp_sendmsg6, &s->links.acp_sock_create, &s->links.acp_egress};
}

bpf_map* map_by_name(acp_sock* s, std::string_view name) {
  if (name == "allow_map") return s->maps.allow_map;
  if (name == "config_map") return s->maps.config_map;
  if (name == "counters") return s->maps.counters;
  if (name == "events") return s->maps.events;
  if (name == "recent") return s->maps.recent;
  if (name == "recent_head") return s->maps.recent_head;
  if (name == "lost_events") return s->maps.lost_events;
  return nullptr;
}

// libbpf 1.x returns -errno and also sets errno; prefer the return value.
int err_of(long rc) {
  return rc < 0 ? static_cast<int>(-rc) : errno;
}

}  // namespace

Result<SockPrograms> SockPrograms::load(const SockConfig& cfg) {
  detail::quiet_libbpf_once();
  if (cfg.mode != ACP_MODE_ENFORCE && cfg.mode != ACP_MODE_AUDIT)
    return make_error(
        "load BPF programs: mode " + std::to_string(cfg.mode) + " is not enforce (0) or audit (1)",
        EINVAL);
  acp_sock* skel = acp_sock::open();
  if (!skel) return errno_error("open BPF object acp_sock (set ACP_DEBUG=1 for libbpf's log)");
  SockPrograms progs(skel);  // destroys the skeleton on every early return below
  if (int rc = acp_sock::load(skel); rc != 0)
    return make_error(
        "load BPF programs acp_sock into the kernel (needs root or CAP_BPF+CAP_NET_ADMIN; "
        "run `acp doctor`, set ACP_DEBUG=1 for the verifier log)",
        err_of(rc));
  acp_config c{};
  c.mode = cfg.mode;
  c.session_id = cfg.session_id;
  if (auto st = write_config(bpf_map__fd(skel->maps.config_map), c); !st) return st.error();
  return progs;
}

SockPrograms::SockPrograms(SockPrograms&& o) noexcept : skel_(std::exchange(o.skel_, nullptr)) {}

SockPrograms& SockPrograms::operator=(SockPrograms&& o) noexcept {
  if (this != &o) {
    reset();
    skel_ = std::exchange(o.skel_, nullptr);
  }
  return *this;
}

SockPrograms::~SockPrograms() {
  reset();
}

// Destroys the links (closing a link fd detaches only an unpinned link) and the maps.
void SockPrograms::reset() {
  if (skel_) acp_sock::destroy(skel_);
  skel_ = nullptr;
}

Status SockPrograms::attach(int cgroup_fd) {
  if (!skel_) return make_error("attach BPF programs: not loaded", EINVAL);
  if (attached()) return make_error("attach BPF programs: already attached", EALREADY);
  auto progs = programs(skel_);
  auto slots = link_slots(skel_);
  for (size_t i = 0; i < progs.size(); i++) {
    bpf_link* link = bpf_program__attach_cgroup(progs[i], cgroup_fd);
    if (!link) {
      int err = errno;
      for (size_t j = 0; j < i; j++) {  // all or nothing
        bpf_link__destroy(*slots[j]);
        *slots[j] = nullptr;
      }
      return make_error(std::string("attach BPF program ") + kLinkNames[i] + " to cgroup fd " +
                            std::to_string(cgroup_fd),
                        err);
    }
    *slots[i] = link;
  }
  return {};
}

bool SockPrograms::attached() const {
  return skel_ && skel_->links.acp_connect4 != nullptr;
}

Status SockPrograms::pin(const std::string& dir) {
  if (!attached()) return make_error("pin BPF wall in " + dir + ": programs not attached", EINVAL);
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return errno_error("mkdir " + dir);

  std::vector<std::string> made;
  auto undo = [&made] {
    for (const auto& p : made) ::unlink(p.c_str());
  };
  // bpf_obj_pin on the fds rather than bpf_link__pin/bpf_map__pin: libbpf would remember the
  // paths, and a stale pin must never be reused by a later load.
  auto slots = link_slots(skel_);
  for (size_t i = 0; i < slots.size(); i++) {
    std::string path = dir + "/link_" + kLinkNames[i];
    if (bpf_obj_pin(bpf_link__fd(*slots[i]), path.c_str()) != 0) {
      int err = errno;
      undo();
      return make_error("pin BPF link " + path, err);
    }
    made.push_back(path);
  }
  for (const char* name : kMapNames) {
    std::string path = dir + "/map_" + name;
    if (bpf_obj_pin(map_fd(name), path.c_str()) != 0) {
      int err = errno;
      undo();
      return make_error("pin BPF map " + path, err);
    }
    made.push_back(path);
  }
  return {};
}

Status SockPrograms::allow(const Endpoint& ep) {
  if (!skel_) return make_error("allow " + to_string(ep) + ": BPF programs not loaded", EINVAL);
  return add_allow_entry(map_fd("allow_map"), ep);
}

Status SockPrograms::disallow(const Endpoint& ep) {
  if (!skel_) return make_error("disallow " + to_string(ep) + ": BPF programs not loaded", EINVAL);
  return remove_allow_entry(map_fd("allow_map"), ep);
}

Status SockPrograms::set_mode(acp_mode mode) {
  if (!skel_) return make_error("set mode: BPF programs not loaded", EINVAL);
  return write_mode(map_fd("config_map"), mode);
}

int SockPrograms::events_fd() const {
  return map_fd("events");
}

int SockPrograms::map_fd(std::string_view name) const {
  if (!skel_) return -1;
  bpf_map* m = map_by_name(skel_, name);
  return m ? bpf_map__fd(m) : -1;
}

}  // namespace acp::kernel
