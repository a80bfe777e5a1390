#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "acp/launch/agent_launcher.hpp"

namespace {

using acp::launch::resolve_command;

class LaunchResolveCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/acp-resolve-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    std::filesystem::create_directories(dir_ + "/a");
    std::filesystem::create_directories(dir_ + "/b");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string make_file(const std::string& rel, mode_t mode) {
    std::string p = dir_ + "/" + rel;
    std::ofstream(p) << "#!/bin/sh\n";
    EXPECT_EQ(chmod(p.c_str(), mode), 0);
    return p;
  }
  std::string path_env() const { return dir_ + "/a:" + dir_ + "/b"; }

  std::string dir_;
  uid_t uid_ = getuid();
  gid_t gid_ = getgid();
};

TEST_F(LaunchResolveCommand, FindsTheFirstExecutableInPath) {
  make_file("a/tool", 0644);  // not executable: skipped in favour of the next one
  auto exe = make_file("b/tool", 0755);
  auto r = resolve_command("tool", path_env(), uid_, gid_, {});
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(*r, exe);
}

TEST_F(LaunchResolveCommand, MissingCommandIs127) {
  auto r = resolve_command("acp-no-such-tool", path_env(), uid_, gid_, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().exit_code, 127);
  EXPECT_NE(r.error().message().find("acp-no-such-tool: command not found"), std::string::npos);
}

TEST_F(LaunchResolveCommand, FoundButNotExecutableIs126) {
  auto p = make_file("a/data", 0644);
  auto r = resolve_command("data", path_env(), uid_, gid_, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().exit_code, 126);
  EXPECT_NE(r.error().message().find(p), std::string::npos);
  auto direct = resolve_command(p, "", uid_, gid_, {});
  ASSERT_FALSE(direct.ok());
  EXPECT_EQ(direct.error().exit_code, 126);
}

TEST_F(LaunchResolveCommand, ExplicitPathsSkipTheSearch) {
  auto exe = make_file("b/tool", 0755);
  auto r = resolve_command(exe, "/nonexistent", uid_, gid_, {});
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(*r, exe);
  auto missing = resolve_command(dir_ + "/nope", path_env(), uid_, gid_, {});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().exit_code, 127);
  auto directory = resolve_command(dir_ + "/a", path_env(), uid_, gid_, {});
  ASSERT_FALSE(directory.ok());
  EXPECT_EQ(directory.error().exit_code, 126);
}

TEST_F(LaunchResolveCommand, ChecksPermissionForTheTargetUserNotForAcp) {
  // Owner-only execute bit: the owner may run it, another uid may not, whoever ACP is.
  auto p = make_file("a/mine", 0700);
  struct stat st {};
  ASSERT_EQ(stat(p.c_str(), &st), 0);
  EXPECT_TRUE(resolve_command("mine", path_env(), st.st_uid, st.st_gid, {}).ok());
  uid_t other = st.st_uid == 65534 ? 65533 : 65534;
  auto r = resolve_command("mine", path_env(), other, 65534, {65534});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().exit_code, 126);
  // Group execute for a member of the file's group.
  ASSERT_EQ(chmod(p.c_str(), 0710), 0);
  EXPECT_TRUE(resolve_command("mine", path_env(), other, 12345, {st.st_gid}).ok());
}

}  // namespace
