// A session's BPF wall as found in its pin directory (/sys/fs/bpf/acp/<session>), read
// without the skeleton or the process that loaded it: `acp status` works from any shell and
// for orphaned sessions whose acp process died (the pinned links kept the wall up).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "acp/kernel/endpoint.hpp"
#include "acp/kernel/session_maps.hpp"
#include "acp/util/result.hpp"
#include "acp/util/unique_fd.hpp"
#include "acp_abi.h"

namespace acp::kernel {

struct LinkInfo {
  uint32_t link_id = 0;
  uint32_t prog_id = 0;
  std::string prog_name;    // as the kernel knows it (truncated to 15 chars): "acp_connect4"
  std::string attach_type;  // libbpf_bpf_attach_type_str(): "cgroup_inet4_connect"
  uint64_t cgroup_id = 0;   // the cgroup's inode number; 0 once the cgroup is gone
  std::string pin_name;     // "link_connect4"
};

// {"pin", "link_id", "prog_id", "prog", "attach_type", "cgroup_id"}
nlohmann::json link_info_to_json(const LinkInfo& l);

class PinnedSession {
 public:
  // Opens every map_<name> pin in dir. Fails (naming the missing pin) when one is absent
  // (map_unix_allow may be: sessions pinned by an older acp have none). map_door_origin is
  // opened when there (a wall with the transparent door): map_fd("door_origin").
  static Result<PinnedSession> open(const std::string& dir);

  const std::string& dir() const { return dir_; }

  Result<std::vector<Endpoint>> allow_entries() const;
  // --allow-unix names, "/path" or "@abstract"; none when the session has no unix_allow map.
  Result<std::vector<std::string>> unix_allow_entries() const;
  Result<Counters> counters() const;
  Result<std::vector<acp_event>> recent_events() const;  // oldest first
  Result<uint64_t> lost_events() const;
  Result<acp_config> config() const;
  // mode: an enum acp_mode value as the map stores it (u32); anything else is refused.
  Status set_mode(uint32_t mode);
  // The link_* pins in dir, sorted by pin name.
  Result<std::vector<LinkInfo>> links() const;

  // The map's fd (owned by this object), -1 when unknown.
  int map_fd(std::string_view name) const;

 private:
  std::string dir_;
  std::map<std::string, UniqueFd, std::less<>> maps_;
};

// Whether the link pinned at path is a cgroup link, still attached (it has a program), to the
// cgroup with this id. Reads only the link's own info (BPF_OBJ_GET + BPF_OBJ_GET_INFO_BY_FD), so
// it needs no CAP_SYS_ADMIN.
bool pinned_link_attached_to(const std::string& path, uint64_t cgroup_id);

// Takes a pinned wall down: for each link_* pin, open it, bpf_link_detach() it (which
// detaches even while other fds to the link exist) and unlink it; then unlink the map_*
// pins and rmdir dir. Idempotent: missing pins or a missing dir are fine.
// Kill the session's processes first: after this their sockets reach anything.
Status detach_and_unpin(const std::string& dir);

}  // namespace acp::kernel
