// The owner of one session's BPF wall: the acp_sock skeleton (bpf/acp_sock.bpf.c), its six
// cgroup programs and their links, and, where the kernel has cgroup/connect_unix (6.7+, with
// BTF), the acp_unix skeleton (bpf/acp_unix.bpf.c): two more programs on the same maps that
// judge AF_UNIX connect()/sendmsg() (local IPC). One instance per session: each has its own
// maps.
//
// Lifecycle (the caller's order matters for the fail-closed guarantee):
//   auto progs = SockPrograms::load({.mode = ACP_MODE_ENFORCE, .session_id = id});
//   progs->allow(proxy_v4); progs->allow(proxy_v6);
//   progs->attach(cgroup_fd);
//   progs->pin(session_pin_dir(id));      // BEFORE any agent process runs in the cgroup
//   ... start the agent ...
// Pinned links keep the programs attached after this object, or the whole acp process, is
// gone: if acp crashes the wall stays and the proxy is gone (fail-closed). Destroying a
// SockPrograms that was never pinned detaches everything. Taking a pinned wall down is
// detach_and_unpin() (pinned_session.hpp), after the session's processes are killed.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "acp/kernel/endpoint.hpp"
#include "acp/util/result.hpp"
#include "acp_abi.h"

struct acp_sock;  // the generated skeletons (acp_sock.skel.h, acp_unix.skel.h: build tree only)
struct acp_unix;

namespace acp::kernel {

struct SockConfig {
  uint32_t mode = ACP_MODE_ENFORCE;  // enum acp_mode
  uint64_t session_id = 0;           // stamps every event
  // The transparent door (acp_config, docs/architecture.md): the proxy's transparent listener
  // on 127.0.0.1 and on [::1]. Both 0 (the default): off, a refused TCP connect() fails with
  // EPERM and the door programs are neither loaded nor attached.
  uint16_t door_port4 = 0;
  uint16_t door_port6 = 0;
  // The session's DNS responder beside the door (acp_config.dns_port4/6): UDP to port 53 is led
  // there. Only with the door.
  uint16_t dns_port4 = 0;
  uint16_t dns_port6 = 0;
  // Where the door and the DNS listen (acp_config.door_addr4/6, network byte order): zero, the
  // session's loopback; the node agent's pods, the node address they reach.
  uint32_t door_addr4 = 0;
  std::array<uint8_t, 16> door_addr6{};
};

// The config map's one value for cfg, as load() writes it (and the node agent, for a wall it
// adopts).
acp_config abi_config(const SockConfig& cfg);

// The programs in attach order, with the names their link pins take (link_<name>). "egress" is
// the cgroup_skb/egress backstop for accepted (inbound) connections, see docs/bpf.md.
inline constexpr std::array<const char*, 6> kLinkNames = {"connect4", "connect6",    "sendmsg4",
                                                          "sendmsg6", "sock_create", "egress"};
// The local-IPC programs (acp_unix), pinned as link_<name> too when the kernel has them.
inline constexpr std::array<const char*, 2> kUnixLinkNames = {"connect_unix", "sendmsg_unix"};
// The transparent door's programs (sock_ops publishes the original destination, getpeername4/6
// return it to the agent, recvmsg4/6 show the DNS responder's replies as from the address the
// agent asked), pinned as link_<name> too when the door is on.
inline constexpr std::array<const char*, 5> kDoorLinkNames = {
    "door_sockops", "getpeername4", "getpeername6", "recvmsg4", "recvmsg6"};

class SockPrograms {
 public:
  // Opens and loads the programs (verifier included) and writes config_map. Nothing is
  // attached yet. The allow map starts empty: until allow() adds the proxy, nothing passes.
  // The local-IPC programs are loaded too when this kernel can; when it cannot, the IP wall
  // still loads and unix_walled() is false with unix_why() saying why.
  // A set loaded ahead by preload() with the same door on or off is taken instead (its
  // config_map written for cfg): verification is most of what a session start costs.
  static Result<SockPrograms> load(const SockConfig& cfg);
  // Loads one set ahead of time for this process's next load() with the door as in cfg (the
  // daemon does, after each session it builds). A set that was never attached holds nothing of
  // anyone: its allow maps are empty, its counters and events zero. One is kept at most.
  static Status preload(const SockConfig& cfg);
  // Whether a preloaded set waits, and whether its door is on.
  static std::optional<bool> preloaded_door_on();

  SockPrograms(SockPrograms&& o) noexcept;
  SockPrograms& operator=(SockPrograms&& o) noexcept;
  SockPrograms(const SockPrograms&) = delete;
  SockPrograms& operator=(const SockPrograms&) = delete;
  ~SockPrograms();

  // Attaches all six programs to the cgroup through bpf_links (multi-attach: other
  // programs on the same cgroup keep running). All or nothing. Then the two local-IPC
  // programs, when loaded: if the kernel refuses those links, the IP wall stays attached and
  // unix_walled() turns false (unix_why() says why). Every caller that builds a wall (acp run,
  // the daemon, the node agent) gets them through this one call.
  Status attach(int cgroup_fd);
  bool attached() const;
  // Whether AF_UNIX connect()/sendmsg() are judged (the acp_unix programs are loaded, and
  // attached once attach() ran), and if not, why.
  bool unix_walled() const { return unix_ != nullptr; }
  const std::string& unix_why() const { return unix_why_; }
  // Whether the transparent door is on (SockConfig.door_port4/6 not both 0): its programs are
  // loaded, and attached with the others. map_fd("door_origin") is what the proxy reads
  // (original_destination(), session_maps.hpp).
  bool door_on() const { return door_on_; }

  // Pins each link as dir/link_<name> and each map as dir/map_<name>; creates dir (0700)
  // when absent. All or nothing: on failure the pins made so far are removed again.
  Status pin(const std::string& dir);

  Status allow(const Endpoint& ep);
  Status disallow(const Endpoint& ep);
  // Lets the agent connect (or send) to this AF_UNIX name: a path, or "@name" for an abstract
  // one (see parse_unix_name). Works whether or not unix_walled().
  Status allow_unix(const std::string& name);
  // mode: an enum acp_mode value as the map stores it (u32); anything else is refused.
  Status set_mode(uint32_t mode);

  // The ring buffer of denied attempts (for EventReader). Owned by this object.
  int events_fd() const;
  // A map's fd by its name in kMapNames (or "door_origin"), -1 when unknown. Owned by this
  // object.
  int map_fd(std::string_view name) const;

 private:
  static Result<SockPrograms> load_fresh(const SockConfig& cfg);
  explicit SockPrograms(acp_sock* skel) : skel_(skel) {}
  void reset();
  void load_unix();

  acp_sock* skel_ = nullptr;
  acp_unix* unix_ = nullptr;
  std::string unix_why_;
  bool door_on_ = false;
};

}  // namespace acp::kernel
