// Who the agent runs as. ACP itself runs as root (it loads BPF and makes cgroups); the agent
// must not: root could detach the programs, leave the cgroup and rewrite the policy.
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "acp/util/result.hpp"

namespace acp::launch {

struct TargetUser {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups (getgrouplist), the primary gid included
  std::string name;
  std::string home;
  std::string shell;
};

// Picks the agent's user, in this order:
//   1. `user_flag` (--user): a user name or a numeric uid; it must exist in the user database.
//   2. SUDO_UID (and SUDO_GID, when set, as the primary group) from `env`: the account that
//      ran `sudo acp run`. Both must be decimal ids.
//   3. The real uid of this process.
// A result of uid 0 is refused unless `allow_root`, with an error that says why and what to do.
// `env` is passed in (not read with getenv) so callers and tests decide what it holds.
Result<TargetUser> resolve_target_user(const std::optional<std::string>& user_flag,
                                       const std::map<std::string, std::string>& env,
                                       bool allow_root);

}  // namespace acp::launch
