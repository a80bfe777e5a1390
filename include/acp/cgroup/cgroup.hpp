// One cgroup v2 directory: the session's wall. The agent is cloned straight into it (its fd
// is the CLONE_INTO_CGROUP target and the BPF attach point), and at the end every process in
// it is killed before the wall comes down.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "acp/util/result.hpp"
#include "acp/util/unique_fd.hpp"

namespace acp {

// Move-only owner of one cgroup v2 directory.
//
// A Cgroup made by create() owns its directory: the destructor removes it, best effort, when it
// is empty (a destructor never kills; call kill_all() and remove() for that). release() disowns
// it, e.g. to leave a session's cgroup behind on purpose. A Cgroup made by open() does not own
// the directory (looking at an existing session must not delete it), but remove() still works.
class Cgroup {
 public:
  // How kill_all() empties the cgroup. kAuto uses cgroup.kill when the kernel has it (5.14+)
  // and falls back to kFreezeAndSignal; tests force the fallback to cover it on new kernels.
  enum class KillMethod { kAuto, kFreezeAndSignal };

  // Makes `path` (mkdir -p of the parents with mode 0755; the leaf must not exist yet, so two
  // sessions never share a cgroup) and checks that it is on a cgroup2 filesystem.
  static Result<Cgroup> create(const std::string& path);
  // Opens an existing cgroup v2 directory without owning it.
  static Result<Cgroup> open(const std::string& path);

  Cgroup(Cgroup&& o) noexcept;
  Cgroup& operator=(Cgroup&& o) noexcept;
  Cgroup(const Cgroup&) = delete;
  Cgroup& operator=(const Cgroup&) = delete;
  ~Cgroup();

  const std::string& path() const { return path_; }
  // O_RDONLY|O_DIRECTORY|O_CLOEXEC fd of the directory: for CLONE_INTO_CGROUP and BPF attach.
  // -1 after remove().
  int fd() const { return fd_.get(); }
  bool owned() const { return owned_; }

  // Every pid in this cgroup and in its descendant cgroups (sorted, no duplicates).
  Result<std::vector<pid_t>> procs() const;
  // cgroup.events "populated": true while any process is in this cgroup or a descendant.
  Result<bool> populated() const;

  // Kills every process in the cgroup and its descendants, then waits (at most `timeout`)
  // until the cgroup is no longer populated. On timeout the error names the pids left.
  Status kill_all(std::chrono::milliseconds timeout, KillMethod method = KillMethod::kAuto);

  // rmdir of the descendant cgroups (deepest first) and of this one, retrying briefly on
  // EBUSY (a process that was just killed may take a moment to leave). Fails while populated.
  Status remove();

  // Disown: the destructor will leave the directory alone.
  void release() { owned_ = false; }

 private:
  Cgroup(std::string path, UniqueFd fd, bool owned)
      : path_(std::move(path)), fd_(std::move(fd)), owned_(owned) {}
  void drop();  // the destructor's best-effort rmdir

  std::string path_;
  UniqueFd fd_;
  bool owned_ = false;
};

// Where a session's cgroup lives: <cgroup2_root>/acp/<session_id>. The id must be one path
// component (no '/', not "." or ".."); ACP generates it, so it is not checked here.
std::string session_cgroup_path(const std::string& cgroup2_root, std::string_view session_id);

}  // namespace acp
