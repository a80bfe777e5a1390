// A session's wall, whatever builds it: the one interface the session builder
// (acp/session/session_builder.hpp) drives, in this order, before the agent exists:
//
//   build(spec)   raise the wall around the (still empty) session cgroup: nothing passes yet
//   pin()         make it outlive acp: a killed acp leaves the agent walled (fail-closed)
//   allow(eps)    open it for the door (the proxy's endpoints) and --allow entries
//
// and, only when a session fails before its agent starts, unpin() and remove() in reverse
// (after the cgroup's processes are gone). A complete session is taken down by
// teardown_session() (session_gc.hpp), the same code `acp gc` runs for an orphaned one.
//
// One implementation per backend (make_wall): bpf (cgroup BPF programs, pinned), iptables
// (per-session chains matching the cgroup), preload (LD_PRELOAD library: the agent's
// environment), none (nothing), and docker (docker_wall.hpp: a per-session --internal network
// whose firewall lets through only the door, which listens on that network's gateway).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "acp/backend/backend.hpp"
#include "acp/kernel/endpoint.hpp"
#include "acp/util/result.hpp"

namespace acp::backend {

struct WallSpec {
  std::string session_id;
  uint64_t session_number = 0;  // stamps the kernel's events (bpf)
  bool audit_only = false;      // report without blocking (bpf only)
  // The session cgroup; empty for a session without one (preload and none without root).
  std::string cgroup_path;
  int cgroup_fd = -1;
  std::string cgroup2_root;  // the cgroup2 mount (iptables matches paths relative to it)
  std::string pin_dir;       // bpf: <bpffs>/acp/<id>
  // AF_UNIX names the agent may reach (bpf; the other walls do not wall local IPC at all).
  std::vector<std::string> allow_unix;
  // preload: $ACP_PRELOAD_LIB, and the LD_PRELOAD the agent would inherit.
  std::optional<std::string> preload_library_override;
  std::optional<std::string> inherited_ld_preload;
  // bpf and iptables: the transparent door's listener ports (127.0.0.1, [::1]); 0 and 0: no
  // door, a refused TCP connect fails (docs/transparent.md).
  uint16_t door_port4 = 0;
  uint16_t door_port6 = 0;
  uint16_t dns_port4 = 0;  // the door's DNS responder (SockConfig::dns_port4/6)
  uint16_t dns_port6 = 0;
};

class Wall {
 public:
  virtual ~Wall() = default;
  virtual Kind kind() const = 0;
  // Raises the wall; nothing but what allow() adds will pass. Errors name what to do.
  virtual Status build(const WallSpec& spec) = 0;
  // Makes the wall outlive this process. Walls that outlive it anyway (iptables chains) or
  // that hold nothing in the kernel (preload, none) have nothing to do.
  virtual Status pin() { return {}; }
  virtual Status unpin() { return {}; }
  // Lets the agent reach these endpoints, before it exists. Called once, with all of them.
  virtual Status allow(const std::vector<kernel::Endpoint>& endpoints) = 0;
  // Takes the wall down (a failed session, before its agent ran). Idempotent.
  virtual Status remove() = 0;
  // What the agent's environment needs for this wall (preload: LD_PRELOAD and its allow list).
  virtual std::vector<std::pair<std::string, std::string>> agent_env() const { return {}; }
  // Why the agent can reach local IPC (unix sockets) despite this wall; empty when it cannot
  // (or, for none, when nothing is walled at all and the backend's own warning says so).
  virtual std::string unix_gap() const = 0;
  // The kernel's ring buffer of denied attempts (EventPump); -1 when this wall has none.
  virtual int events_fd() const { return -1; }
  // Where the door must listen for the agent to reach it; empty: loopback (127.0.0.1, ::1).
  virtual std::vector<std::string> door_addresses() const { return {}; }
  // The transparent door's original destinations (bpf: the door_origin map, read with
  // kernel::original_destination()); -1 when this wall leads nothing in.
  virtual int door_origin_fd() const { return -1; }
  // True when the door's original destinations come from conntrack instead (iptables: nat
  // REDIRECT rewrites the packets, not the client's socket, which keeps its original
  // destination; the proxy reads it with SO_ORIGINAL_DST on the accepted socket).
  virtual bool door_origin_from_conntrack() const { return false; }
  // docker: the door listens on the network's gateway, so it opens after build() made the
  // network; its port, for allow() to lead the bridge's other TCP there. The other walls take
  // their door in WallSpec.
  virtual void lead_to_door(uint16_t /*port*/) {}
};

// The wall of `kind`; docker is refused: its wall needs the docker CLI (make_docker_wall).
Result<std::unique_ptr<Wall>> make_wall(Kind kind);

struct DockerCli;
struct DockerNetwork;
// The docker backend's wall (docker_wall.hpp): build() creates the session's network, the door
// listens on its gateway (door_addresses), allow() installs the firewall that lets the bridge
// reach only the door's port, remove() takes the container and the network down, then the
// firewall (which stays when the container cannot be removed: fail-closed).
std::unique_ptr<Wall> make_docker_wall(const DockerCli& docker);
// The network a docker wall built; nullptr for another wall or before build().
const DockerNetwork* docker_network_of(const Wall& wall);

}  // namespace acp::backend
