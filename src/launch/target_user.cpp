#include "acp/launch/target_user.hpp"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <charconv>
#include <limits>

namespace acp::launch {
namespace {

constexpr const char* kRootRefusal =
    "refusing to run the agent as root: root can detach the BPF programs, leave the cgroup and "
    "rewrite the policy, so the wall would not hold. Run acp through sudo from your own account, "
    "pass --user=USER, or pass --allow-root if you accept an agent that can escape.";

// A decimal id that fits in 32 bits and is not the "-1" sentinel the id syscalls reserve.
std::optional<uint32_t> parse_id(const std::string& s) {
  if (s.empty() || s.size() > 10) return std::nullopt;
  uint32_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  if (v == std::numeric_limits<uint32_t>::max()) return std::nullopt;
  return v;
}

enum class Lookup { kByName, kByUid };

Result<TargetUser> from_passwd(Lookup how, const std::string& name, uid_t uid,
                               const std::string& what) {
  passwd pw{};
  passwd* found = nullptr;
  std::vector<char> buf(16384);
  int rc;
  for (;;) {
    rc = how == Lookup::kByName ? ::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found)
                                : ::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found);
    if (rc != ERANGE || buf.size() > (1u << 22)) break;
    buf.resize(buf.size() * 2);
  }
  if (rc != 0) return make_error("look up " + what + " in the user database", rc);
  if (!found)
    return make_error(what +
                      " is not in the user database (/etc/passwd or NSS): pass an existing "
                      "user with --user=USER");
  TargetUser u;
  u.uid = pw.pw_uid;
  u.gid = pw.pw_gid;
  u.name = pw.pw_name ? pw.pw_name : "";
  u.home = pw.pw_dir ? pw.pw_dir : "/";
  u.shell = pw.pw_shell && *pw.pw_shell ? pw.pw_shell : "/bin/sh";
  return u;
}

Status fill_groups(TargetUser& u) {
  int n = 32;
  std::vector<gid_t> gs;
  for (int attempt = 0; attempt < 8; ++attempt) {
    gs.resize(static_cast<size_t>(n));
    int want = n;
    if (::getgrouplist(u.name.c_str(), u.gid, gs.data(), &want) >= 0) {
      gs.resize(static_cast<size_t>(want));
      u.groups = std::move(gs);
      return {};
    }
    n = want > n ? want : n * 2;
  }
  return make_error("list the groups of user " + u.name + ": getgrouplist keeps growing");
}

}  // namespace

Result<TargetUser> resolve_target_user(const std::optional<std::string>& user_flag,
                                       const std::map<std::string, std::string>& env,
                                       bool allow_root) {
  Result<TargetUser> user = make_error("unreachable");
  if (user_flag) {
    if (auto id = parse_id(*user_flag))
      user = from_passwd(Lookup::kByUid, "", *id,
                         "--user=" + *user_flag + " (uid " + *user_flag + ")");
    else
      user = from_passwd(Lookup::kByName, *user_flag, 0, "--user=" + *user_flag);
  } else if (auto it = env.find("SUDO_UID"); it != env.end()) {
    auto id = parse_id(it->second);
    if (!id)
      return make_error("SUDO_UID='" + it->second +
                        "' in the environment is not a numeric uid: run acp through sudo, or "
                        "pass --user=USER");
    user = from_passwd(Lookup::kByUid, "", *id, "SUDO_UID=" + it->second);
    if (user) {
      if (auto g = env.find("SUDO_GID"); g != env.end()) {
        auto gid = parse_id(g->second);
        if (!gid)
          return make_error("SUDO_GID='" + g->second +
                            "' in the environment is not a numeric gid: run acp through sudo, "
                            "or pass --user=USER");
        user->gid = *gid;
      }
    }
  } else {
    uid_t me = ::getuid();
    user = from_passwd(Lookup::kByUid, "", me, "the current user (uid " + std::to_string(me) + ")");
  }
  if (!user) return user;
  if (user->uid == 0 && !allow_root) return make_error(kRootRefusal);
  if (auto st = fill_groups(*user); !st) return st.error();
  return user;
}

}  // namespace acp::launch
