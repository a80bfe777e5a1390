// Reading and writing one session's BPF maps by fd. The one implementation both the live
// loader (SockPrograms::map_fd) and the pinned reader (PinnedSession) use, so `acp status`
// from another shell sees exactly what the session's own process sees.
#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "acp/kernel/endpoint.hpp"
#include "acp/util/result.hpp"
#include "acp_abi.h"

namespace acp::kernel {

// The counters map summed over CPUs. Indexed [acp_family_idx][acp_proto_idx]; a mapped
// IPv4 destination counts as ACP_FAM_INET, sock_create refusals as ACP_PRO_OTHER.
struct Counters {
  uint64_t allowed[ACP_FAM_MAX][ACP_PRO_MAX] = {};
  uint64_t denied[ACP_FAM_MAX][ACP_PRO_MAX] = {};

  uint64_t total_allowed() const;
  uint64_t total_denied() const;
  Counters& operator+=(const Counters& o);
};

// The counters' indices by name, as counters_to_json and the daemon's metrics spell them:
// "inet", "inet6", "other", "unix"; "tcp", "udp", "other".
const char* counter_family_name(int fam);
const char* counter_proto_name(int proto);

// {"allowed": {"inet": {"tcp": N, "udp": N, "other": N}, "inet6": {...}, "other": {...}},
//  "denied": {...}, "total_allowed": N, "total_denied": N}
nlohmann::json counters_to_json(const Counters& c);

// The names of the maps as pinned (map_<name>) and as in the skeleton.
inline constexpr const char* kMapNames[] = {"allow_map",   "config_map", "counters",
                                            "events",      "recent",     "recent_head",
                                            "lost_events", "unix_allow"};

Result<std::vector<Endpoint>> read_allow_entries(int allow_map_fd);
Status add_allow_entry(int allow_map_fd, const Endpoint& ep);
// Removing an endpoint that is not there is not an error.
Status remove_allow_entry(int allow_map_fd, const Endpoint& ep);

// AF_UNIX names (--allow-unix) as the user writes them: "/path" or "@abstract" (a NUL in an
// abstract name as "\0"). parse_unix_name refuses an empty name, one longer than sun_path
// (108 bytes), a relative path (never matched: the kernel hook sees the name as given), and a
// filesystem path with a NUL in it.
Result<acp_unix_path> parse_unix_name(const std::string& name);
std::string unix_name_string(const acp_unix_path& p);
Result<std::vector<std::string>> read_unix_allow_entries(int unix_allow_fd);
Status add_unix_allow_entry(int unix_allow_fd, const std::string& name);

Result<Counters> read_counters(int counters_fd);
// Non-empty slots of the recent-events array, oldest first.
Result<std::vector<acp_event>> read_recent_events(int recent_fd);
Result<uint64_t> read_lost_events(int lost_events_fd);
Result<acp_config> read_config(int config_map_fd);

// The transparent door: where a connection the door led to the proxy was going. peer is the
// accepted connection's peer (getpeername() of the proxy's socket: the client's local address
// and port, IPv4 as ::ffff:a.b.c.d; proto TCP); door_origin_fd is the session's door_origin
// map (SockPrograms::map_fd("door_origin")). The entry exists from before the client's SYN
// until its socket closes. ENOENT when there is none (not led in by this session's wall, or
// already closed): the caller refuses the connection.
Result<Endpoint> original_destination(int door_origin_fd, const Endpoint& peer);
// Slot idx of a per-CPU array of u64 counters, summed over every possible CPU.
Result<uint64_t> read_percpu_sum(int fd, uint32_t idx);
Status write_config(int config_map_fd, const acp_config& cfg);
// Read-modify-write of the mode only; takes effect on the next connect() of every socket.
// The mode is the map's raw __u32 (enum acp_mode): a value that is neither is refused.
Status write_mode(int config_map_fd, uint32_t mode);

}  // namespace acp::kernel
