#include "acp/kernel/sock_programs.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "acp/kernel/session_maps.hpp"
#include "acp_decide.h"
#include "acp_sock.skel.h"
#include "acp_unix.skel.h"
#include "bpf_links.hpp"
#include "libbpf_log.hpp"

namespace acp::kernel {
namespace {

using detail::attach_all;

// The skeleton's programs and link slots, in kLinkNames order. With the door on, connect4/6
// and sendmsg4/6 are the acp_door_* variants (the others are not loaded), pinned under the
// same names.
std::array<bpf_program*, kLinkNames.size()> programs(acp_sock* s, bool door_on) {
  return {door_on ? s->progs.acp_door_connect4 : s->progs.acp_connect4,
          door_on ? s->progs.acp_door_connect6 : s->progs.acp_connect6,
          door_on ? s->progs.acp_door_sendmsg4 : s->progs.acp_sendmsg4,
          door_on ? s->progs.acp_door_sendmsg6 : s->progs.acp_sendmsg6,
          s->progs.acp_sock_create,
          s->progs.acp_egress};
}
std::array<bpf_link**, kLinkNames.size()> link_slots(acp_sock* s, bool door_on) {
  return {door_on ? &s->links.acp_door_connect4 : &s->links.acp_connect4,
          door_on ? &s->links.acp_door_connect6 : &s->links.acp_connect6,
          door_on ? &s->links.acp_door_sendmsg4 : &s->links.acp_sendmsg4,
          door_on ? &s->links.acp_door_sendmsg6 : &s->links.acp_sendmsg6,
          &s->links.acp_sock_create,
          &s->links.acp_egress};
}
// The plain and the door variant of each program kLinkNames holds a slot for.
using Progs = decltype(acp_sock::progs);
using ProgSlot = bpf_program* Progs::*;
constexpr std::array<std::pair<ProgSlot, ProgSlot>, 4> kVariants = {{
    {&Progs::acp_connect4, &Progs::acp_door_connect4},
    {&Progs::acp_connect6, &Progs::acp_door_connect6},
    {&Progs::acp_sendmsg4, &Progs::acp_door_sendmsg4},
    {&Progs::acp_sendmsg6, &Progs::acp_door_sendmsg6},
}};

std::array<bpf_program*, kDoorLinkNames.size()> door_programs(acp_sock* s) {
  return {s->progs.acp_door_sockops, s->progs.acp_getpeername4, s->progs.acp_getpeername6,
          s->progs.acp_recvmsg4, s->progs.acp_recvmsg6};
}
std::array<bpf_link**, kDoorLinkNames.size()> door_link_slots(acp_sock* s) {
  return {&s->links.acp_door_sockops, &s->links.acp_getpeername4, &s->links.acp_getpeername6,
          &s->links.acp_recvmsg4, &s->links.acp_recvmsg6};
}

bpf_map* map_by_name(acp_sock* s, std::string_view name) {
  if (name == "allow_map") return s->maps.allow_map;
  if (name == "config_map") return s->maps.config_map;
  if (name == "counters") return s->maps.counters;
  if (name == "events") return s->maps.events;
  if (name == "recent") return s->maps.recent;
  if (name == "recent_head") return s->maps.recent_head;
  if (name == "lost_events") return s->maps.lost_events;
  if (name == "unix_allow") return s->maps.unix_allow;
  if (name == "door_origin") return s->maps.door_origin;
  return nullptr;
}

// The attach types of the local-IPC programs (enum bpf_attach_type, Linux 6.7). Spelled out:
// the UAPI headers and libbpf (1.1) of Debian 12 predate them, and libbpf does not know the
// cgroup/connect_unix section names, so the loader sets type and attach type itself.
constexpr int kAttachUnixConnect = 49;  // BPF_CGROUP_UNIX_CONNECT
constexpr int kAttachUnixSendmsg = 50;  // BPF_CGROUP_UNIX_SENDMSG

std::array<bpf_program*, kUnixLinkNames.size()> unix_programs(acp_unix* u) {
  return {u->progs.acp_connect_unix, u->progs.acp_sendmsg_unix};
}
std::array<bpf_link**, kUnixLinkNames.size()> unix_link_slots(acp_unix* u) {
  return {&u->links.acp_connect_unix, &u->links.acp_sendmsg_unix};
}

// The maps acp_unix shares with acp_sock (acp_maps.bpf.h), by name.
bpf_map* shared_map(acp_unix* u, std::string_view name) {
  if (name == "allow_map") return u->maps.allow_map;
  if (name == "config_map") return u->maps.config_map;
  if (name == "unix_allow") return u->maps.unix_allow;
  if (name == "counters") return u->maps.counters;
  if (name == "events") return u->maps.events;
  if (name == "recent") return u->maps.recent;
  if (name == "recent_head") return u->maps.recent_head;
  if (name == "lost_events") return u->maps.lost_events;
  if (name == "egress_reported") return u->maps.egress_reported;
  return nullptr;
}

// libbpf 1.x returns -errno and also sets errno; prefer the return value.
int err_of(long rc) {
  return rc < 0 ? static_cast<int>(-rc) : errno;
}

}  // namespace

namespace {
bool wants_door(const SockConfig& cfg) {
  return cfg.door_port4 != 0 || cfg.door_port6 != 0;
}

Status check_mode(const SockConfig& cfg) {
  if (cfg.mode != ACP_MODE_ENFORCE && cfg.mode != ACP_MODE_AUDIT)
    return make_error(
        "load BPF programs: mode " + std::to_string(cfg.mode) + " is not enforce (0) or audit (1)",
        EINVAL);
  return {};
}

}  // namespace

acp_config abi_config(const SockConfig& cfg) {
  acp_config c{};
  c.mode = cfg.mode;
  c.session_id = cfg.session_id;
  c.door_port4 = cfg.door_port4;
  c.door_port6 = cfg.door_port6;
  c.dns_port4 = cfg.dns_port4;
  c.dns_port6 = cfg.dns_port6;
  c.door_addr4 = cfg.door_addr4;
  std::memcpy(c.door_addr6, cfg.door_addr6.data(), sizeof(c.door_addr6));
  return c;
}

namespace {

// preload()'s set, for the next load() with the same door. The daemon's one thread uses it.
std::mutex g_preloaded_mu;
std::optional<SockPrograms> g_preloaded;
}  // namespace

Status SockPrograms::preload(const SockConfig& cfg) {
  {
    std::lock_guard lk(g_preloaded_mu);
    if (g_preloaded && g_preloaded->door_on_ == wants_door(cfg)) return {};
  }
  auto loaded = load_fresh(cfg);
  if (!loaded) return loaded.error();
  std::lock_guard lk(g_preloaded_mu);
  g_preloaded.emplace(std::move(*loaded));
  return {};
}

std::optional<bool> SockPrograms::preloaded_door_on() {
  std::lock_guard lk(g_preloaded_mu);
  if (!g_preloaded) return std::nullopt;
  return g_preloaded->door_on_;
}

Result<SockPrograms> SockPrograms::load(const SockConfig& cfg) {
  if (auto st = check_mode(cfg); !st) return st.error();  // before a preloaded set is taken
  std::optional<SockPrograms> ready;
  {
    std::lock_guard lk(g_preloaded_mu);
    if (g_preloaded && g_preloaded->door_on_ == wants_door(cfg)) {
      ready.emplace(std::move(*g_preloaded));
      g_preloaded.reset();
    }
  }
  if (!ready) return load_fresh(cfg);
  if (auto st = write_config(ready->map_fd("config_map"), abi_config(cfg)); !st) return st.error();
  return std::move(*ready);
}

Result<SockPrograms> SockPrograms::load_fresh(const SockConfig& cfg) {
  detail::quiet_libbpf_once();
  if (auto st = check_mode(cfg); !st) return st.error();
  acp_sock* skel = acp_sock::open();
  if (!skel) return errno_error("open BPF object acp_sock (set ACP_DEBUG=1 for libbpf's log)");
  SockPrograms progs(skel);  // destroys the skeleton on every early return below
  progs.door_on_ = wants_door(cfg);
  // Door off: the wall is exactly what it was without it (none of the door's programs, the
  // connect4/6 without the redirect). Door on: the connect4/6 with it, and the door's others.
  for (bpf_program* p : door_programs(skel)) bpf_program__set_autoload(p, progs.door_on_);
  for (const auto& [plain, door] : kVariants) {
    bpf_program__set_autoload(skel->progs.*plain, !progs.door_on_);
    bpf_program__set_autoload(skel->progs.*door, progs.door_on_);
  }
  if (int rc = acp_sock::load(skel); rc != 0)
    return make_error(
        "load BPF programs acp_sock into the kernel (needs root or CAP_BPF+CAP_NET_ADMIN; "
        "run `acp doctor`, set ACP_DEBUG=1 for the verifier log)",
        err_of(rc));
  if (auto st = write_config(bpf_map__fd(skel->maps.config_map), abi_config(cfg)); !st)
    return st.error();
  // Refused without events in every session: glibc's nscd socket, which every program that
  // looks up a user or host probes and does without. Refused (not allowed) because nscd
  // resolves host names for its caller: a DNS channel out of the wall.
  for (const char* name : {"/var/run/nscd/socket", "/run/nscd/socket"}) {
    auto key = parse_unix_name(name);
    acp_allow_value quiet{ACP_UNIX_QUIET_DENY};
    if (!key ||
        bpf_map_update_elem(bpf_map__fd(skel->maps.unix_allow), &*key, &quiet, BPF_ANY) != 0)
      return errno_error(std::string("add the quiet refusal of ") + name + " to unix_allow");
  }
  progs.load_unix();
  return progs;
}

// The local-IPC programs, on this session's maps. Failing here is not an error of the wall:
// the IP programs hold either way; unix_why_ says what is not covered.
void SockPrograms::load_unix() {
  acp_unix* u = acp_unix::open();
  if (!u) {
    unix_why_ = std::string("open BPF object acp_unix: ") + std::strerror(errno);
    return;
  }
  auto progs = unix_programs(u);
  bpf_program__set_type(progs[0], BPF_PROG_TYPE_CGROUP_SOCK_ADDR);
  bpf_program__set_expected_attach_type(progs[0], static_cast<bpf_attach_type>(kAttachUnixConnect));
  bpf_program__set_type(progs[1], BPF_PROG_TYPE_CGROUP_SOCK_ADDR);
  bpf_program__set_expected_attach_type(progs[1], static_cast<bpf_attach_type>(kAttachUnixSendmsg));
  for (const char* name : {"allow_map", "config_map", "unix_allow", "counters", "events", "recent",
                           "recent_head", "lost_events", "egress_reported"}) {
    bpf_map* mine = shared_map(u, name);
    bpf_map* theirs = name == std::string_view("egress_reported") ? skel_->maps.egress_reported
                                                                  : map_by_name(skel_, name);
    if (int rc = bpf_map__reuse_fd(mine, bpf_map__fd(theirs)); rc != 0) {
      unix_why_ = std::string("share map ") + name + " with acp_unix: " + std::strerror(err_of(rc));
      acp_unix::destroy(u);
      return;
    }
  }
  if (int rc = acp_unix::load(u); rc != 0) {
    int err = err_of(rc);
    unix_why_ = std::string("load cgroup/connect_unix, sendmsg_unix: ") + std::strerror(err) +
                " (needs Linux 6.7+ with BTF at /sys/kernel/btf/vmlinux)";
    acp_unix::destroy(u);
    return;
  }
  unix_ = u;
}

SockPrograms::SockPrograms(SockPrograms&& o) noexcept
    : skel_(std::exchange(o.skel_, nullptr)),
      unix_(std::exchange(o.unix_, nullptr)),
      unix_why_(std::move(o.unix_why_)),
      door_on_(o.door_on_) {}

SockPrograms& SockPrograms::operator=(SockPrograms&& o) noexcept {
  if (this != &o) {
    reset();
    skel_ = std::exchange(o.skel_, nullptr);
    unix_ = std::exchange(o.unix_, nullptr);
    unix_why_ = std::move(o.unix_why_);
    door_on_ = o.door_on_;
  }
  return *this;
}

SockPrograms::~SockPrograms() {
  reset();
}

// Destroys the links (closing a link fd detaches only an unpinned link) and the maps.
void SockPrograms::reset() {
  if (unix_) acp_unix::destroy(unix_);
  unix_ = nullptr;
  if (skel_) acp_sock::destroy(skel_);
  skel_ = nullptr;
}

Status SockPrograms::attach(int cgroup_fd) {
  if (!skel_) return make_error("attach BPF programs: not loaded", EINVAL);
  if (attached()) return make_error("attach BPF programs: already attached", EALREADY);
  auto slots = link_slots(skel_, door_on_);
  if (auto st = attach_all(programs(skel_, door_on_), slots, kLinkNames, cgroup_fd); !st)
    return st.error();
  if (door_on_) {
    if (auto st =
            attach_all(door_programs(skel_), door_link_slots(skel_), kDoorLinkNames, cgroup_fd);
        !st) {
      for (bpf_link** slot : slots) {  // all or nothing: the wall without its door is not asked for
        bpf_link__destroy(*slot);
        *slot = nullptr;
      }
      return st.error();
    }
  }
  if (unix_) {
    auto uprogs = unix_programs(unix_);
    auto uslots = unix_link_slots(unix_);
    for (size_t i = 0; i < uprogs.size(); i++) {
      bpf_link* link = bpf_program__attach_cgroup(uprogs[i], cgroup_fd);
      if (!link) {
        // The kernel loaded them but will not link them here: the IP wall stands, local IPC
        // is reported as not walled.
        unix_why_ =
            std::string("attach BPF program ") + kUnixLinkNames[i] + ": " + std::strerror(errno);
        acp_unix::destroy(unix_);  // also destroys the links made so far
        unix_ = nullptr;
        break;
      }
      *uslots[i] = link;
    }
  }
  return {};
}

bool SockPrograms::attached() const {
  return skel_ && *link_slots(skel_, door_on_)[0] != nullptr;
}

Status SockPrograms::pin(const std::string& dir) {
  if (!attached()) return make_error("pin BPF wall in " + dir + ": programs not attached", EINVAL);
  std::vector<detail::PinObject> objects;
  auto slots = link_slots(skel_, door_on_);
  for (size_t i = 0; i < slots.size(); i++)
    objects.push_back({bpf_link__fd(*slots[i]), std::string("link_") + kLinkNames[i]});
  if (unix_) {
    auto uslots = unix_link_slots(unix_);
    for (size_t i = 0; i < uslots.size(); i++)
      objects.push_back({bpf_link__fd(*uslots[i]), std::string("link_") + kUnixLinkNames[i]});
  }
  if (door_on_) {
    auto dslots = door_link_slots(skel_);
    for (size_t i = 0; i < dslots.size(); i++)
      objects.push_back({bpf_link__fd(*dslots[i]), std::string("link_") + kDoorLinkNames[i]});
  }
  for (const char* name : kMapNames) objects.push_back({map_fd(name), std::string("map_") + name});
  // A daemon that re-adopts the session reopens the door on it (docs/daemon.md).
  if (door_on_) objects.push_back({map_fd("door_origin"), "map_door_origin"});
  return detail::pin_objects(dir, objects);
}

Status SockPrograms::allow(const Endpoint& ep) {
  if (!skel_) return make_error("allow " + to_string(ep) + ": BPF programs not loaded", EINVAL);
  return add_allow_entry(map_fd("allow_map"), ep);
}

Status SockPrograms::disallow(const Endpoint& ep) {
  if (!skel_) return make_error("disallow " + to_string(ep) + ": BPF programs not loaded", EINVAL);
  return remove_allow_entry(map_fd("allow_map"), ep);
}

Status SockPrograms::allow_unix(const std::string& name) {
  if (!skel_) return make_error("allow unix name " + name + ": BPF programs not loaded", EINVAL);
  return add_unix_allow_entry(map_fd("unix_allow"), name);
}

Status SockPrograms::set_mode(uint32_t mode) {
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
