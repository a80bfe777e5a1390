// How many tasks (processes and threads) the agent may have: a fork bomb in the agent must
// not take the machine, or acp, down (systemd CODING_STYLE: a limit on every resource the
// agent controls).
//
// Two mechanisms, the stronger first:
//  - pids.max on the session cgroup, when the cgroup v2 hierarchy has the pids controller
//    (it is enabled on the way down from the cgroup2 root). Counts exactly the agent's tasks.
//  - RLIMIT_NPROC (soft = hard) on the agent, when it does not run as root (the kernel never
//    applies RLIMIT_NPROC to root). It counts every task of the agent's real uid on the
//    machine, so the limit is the tasks that uid already has plus the budget.
// On a hybrid cgroup layout the pids controller sits in the v1 hierarchy and only the second
// is available; for a root agent there, nothing bounds it (reported as such).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "acp/util/result.hpp"

namespace acp::launch {

inline constexpr uint64_t kDefaultAgentMaxTasks = 4096;

struct TaskLimit {
  enum class Kind { kNone, kPidsMax, kRlimitNproc };
  Kind kind = Kind::kNone;
  uint64_t value = 0;  // pids.max, or the RLIMIT_NPROC to set on the agent
  // For `acp status` and the session record, e.g. "RLIMIT_NPROC=4130 (uid 65534: 34 tasks at
  // start + 4096)" or "pids.max=4096 (cgroup v2)".
  std::string description;
};

// Tasks (threads included) whose real uid is `uid`, from /proc: what RLIMIT_NPROC counts.
uint64_t count_user_tasks(uid_t uid);

// Applies pids.max to the session cgroup `cgroup_path` (under the cgroup2 mount `cgroup_root`)
// when it can, else plans RLIMIT_NPROC for a non-root `uid` (the launcher sets it in the
// child: AgentSpec::rlimit_nproc). An error only when the pids controller is there but could
// not be set up.
Result<TaskLimit> apply_task_limit(const std::string& cgroup_root, const std::string& cgroup_path,
                                   uid_t uid, uint64_t max_tasks);

}  // namespace acp::launch
