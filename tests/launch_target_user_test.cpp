#include "acp/launch/target_user.hpp"

#include <gtest/gtest.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>

namespace {

using acp::launch::resolve_target_user;
using Env = std::map<std::string, std::string>;

// Debian's nobody: uid 65534, primary group nogroup (65534).
constexpr uid_t kNobody = 65534;

TEST(LaunchTargetUser, SudoUidPicksTheInvokingAccount) {
  auto u =
      resolve_target_user(std::nullopt, Env{{"SUDO_UID", "65534"}, {"SUDO_GID", "65534"}}, false);
  ASSERT_TRUE(u.ok()) << u.error().message();
  EXPECT_EQ(u->uid, kNobody);
  EXPECT_EQ(u->gid, 65534u);
  EXPECT_EQ(u->name, "nobody");
  EXPECT_FALSE(u->home.empty());
  EXPECT_FALSE(u->shell.empty());
  EXPECT_NE(std::find(u->groups.begin(), u->groups.end(), 65534u), u->groups.end());
}

TEST(LaunchTargetUser, SudoGidOverridesThePrimaryGroup) {
  auto u =
      resolve_target_user(std::nullopt, Env{{"SUDO_UID", "65534"}, {"SUDO_GID", "100"}}, false);
  ASSERT_TRUE(u.ok()) << u.error().message();
  EXPECT_EQ(u->gid, 100u);
  // getgrouplist includes the primary group it was given.
  EXPECT_NE(std::find(u->groups.begin(), u->groups.end(), 100u), u->groups.end());
}

TEST(LaunchTargetUser, UserFlagByNumericUid) {
  auto u = resolve_target_user(std::string("65534"), Env{}, false);
  ASSERT_TRUE(u.ok()) << u.error().message();
  EXPECT_EQ(u->uid, kNobody);
  EXPECT_EQ(u->name, "nobody");
}

TEST(LaunchTargetUser, UserFlagByName) {
  auto u = resolve_target_user(std::string("nobody"), Env{}, false);
  ASSERT_TRUE(u.ok()) << u.error().message();
  EXPECT_EQ(u->uid, kNobody);
  EXPECT_EQ(u->gid, 65534u);
}

TEST(LaunchTargetUser, UserFlagWinsOverSudoUid) {
  auto u = resolve_target_user(std::string("nobody"), Env{{"SUDO_UID", "0"}}, false);
  ASSERT_TRUE(u.ok()) << u.error().message();
  EXPECT_EQ(u->uid, kNobody);
}

TEST(LaunchTargetUser, RootIsRefusedWithoutAllowRoot) {
  for (auto flag : {std::optional<std::string>("root"), std::optional<std::string>("0")}) {
    auto u = resolve_target_user(flag, Env{}, false);
    ASSERT_FALSE(u.ok());
    EXPECT_NE(u.error().message().find("refusing to run the agent as root"), std::string::npos);
    EXPECT_NE(u.error().message().find("--allow-root"), std::string::npos);
    EXPECT_NE(u.error().message().find("--user=USER"), std::string::npos);
  }
  auto via_sudo = resolve_target_user(std::nullopt, Env{{"SUDO_UID", "0"}}, false);
  ASSERT_FALSE(via_sudo.ok());
  EXPECT_NE(via_sudo.error().message().find("--allow-root"), std::string::npos);
}

TEST(LaunchTargetUser, RootIsAllowedWithAllowRoot) {
  auto u = resolve_target_user(std::string("root"), Env{}, true);
  ASSERT_TRUE(u.ok()) << u.error().message();
  EXPECT_EQ(u->uid, 0u);
  EXPECT_EQ(u->name, "root");
}

TEST(LaunchTargetUser, BadSudoIdsAreRefused) {
  for (const char* bad : {"abc", "", "-1", "12x", "4294967295", "99999999999"}) {
    auto u = resolve_target_user(std::nullopt, Env{{"SUDO_UID", bad}}, true);
    ASSERT_FALSE(u.ok()) << "SUDO_UID=" << bad;
    EXPECT_NE(u.error().message().find("SUDO_UID"), std::string::npos);
  }
  auto g = resolve_target_user(std::nullopt, Env{{"SUDO_UID", "65534"}, {"SUDO_GID", "x"}}, true);
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.error().message().find("SUDO_GID='x'"), std::string::npos);
}

TEST(LaunchTargetUser, UnknownUserIsNamed) {
  auto u = resolve_target_user(std::string("acp-no-such-user-xyz"), Env{}, false);
  ASSERT_FALSE(u.ok());
  EXPECT_NE(u.error().message().find("acp-no-such-user-xyz"), std::string::npos);
}

TEST(LaunchTargetUser, DefaultsToTheRealUid) {
  auto u = resolve_target_user(std::nullopt, Env{}, true);
  ASSERT_TRUE(u.ok()) << u.error().message();
  EXPECT_EQ(u->uid, getuid());
}

}  // namespace
