// Internal to the kernel layer: attaching a set of programs to a cgroup and pinning links and
// maps, each all or nothing. Used by every program set acp loads (SockPrograms, NodeGate).
#pragma once

#include <bpf/libbpf.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <string>
#include <vector>

#include "acp/util/result.hpp"

namespace acp::kernel::detail {

// Attaches progs to the cgroup (bpf_link, multi-attach) into slots, all or nothing; names are
// for the error.
template <size_t N>
Status attach_all(const std::array<bpf_program*, N>& progs, const std::array<bpf_link**, N>& slots,
                  const std::array<const char*, N>& names, int cgroup_fd) {
  for (size_t i = 0; i < N; i++) {
    bpf_link* link = bpf_program__attach_cgroup(progs[i], cgroup_fd);
    if (!link) {
      int err = errno;
      for (size_t j = 0; j < i; j++) {
        bpf_link__destroy(*slots[j]);
        *slots[j] = nullptr;
      }
      return make_error(std::string("attach BPF program ") + names[i] + " to cgroup fd " +
                            std::to_string(cgroup_fd),
                        err);
    }
    *slots[i] = link;
  }
  return {};
}

// One object to pin: its fd and its pin name ("link_connect4", "map_allow_map").
struct PinObject {
  int fd;
  std::string name;
};

// Pins each object as dir/<name>, creating dir (0700) when absent. All or nothing: on failure
// the pins made so far are removed again. bpf_obj_pin on the fds rather than
// bpf_link__pin/bpf_map__pin: libbpf would remember the paths, and a stale pin must never be
// reused by a later load.
Status pin_objects(const std::string& dir, const std::vector<PinObject>& objects);

}  // namespace acp::kernel::detail
