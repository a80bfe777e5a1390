#include "acp/kernel/bpffs.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

namespace {

TEST(KernelBpffs, SessionIdIsOnePathComponent) {
  EXPECT_TRUE(acp::kernel::safe_pin_component("a1b2c3d4"));
  EXPECT_TRUE(acp::kernel::safe_pin_component("sess-1_x.y"));
  EXPECT_FALSE(acp::kernel::safe_pin_component(""));
  EXPECT_FALSE(acp::kernel::safe_pin_component("."));
  EXPECT_FALSE(acp::kernel::safe_pin_component(".."));
  EXPECT_FALSE(acp::kernel::safe_pin_component("../etc"));
  EXPECT_FALSE(acp::kernel::safe_pin_component("a/b"));
  EXPECT_FALSE(acp::kernel::safe_pin_component("a b"));
  EXPECT_FALSE(acp::kernel::safe_pin_component(std::string(65, 'a')));
  EXPECT_TRUE(acp::kernel::safe_pin_component(std::string(64, 'a')));
}

// A plain directory stands in for the bpffs root: only the default root triggers a mount.
class KernelBpffsDirs : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/acp-bpffs-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  std::string root_;
};

TEST_F(KernelBpffsDirs, CreatesPrivateSessionDir) {
  auto dir = acp::kernel::session_pin_dir("abc123", root_);
  ASSERT_TRUE(dir.ok()) << dir.error().message();
  EXPECT_EQ(*dir, root_ + "/acp/abc123");
  struct stat st {};
  ASSERT_EQ(::stat(dir->c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat((root_ + "/acp").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  // Again: the existing dir is returned.
  EXPECT_TRUE(acp::kernel::session_pin_dir("abc123", root_).ok());
}

TEST_F(KernelBpffsDirs, RefusesBadIdWithoutTouchingDisk) {
  auto dir = acp::kernel::session_pin_dir("../x", root_);
  ASSERT_FALSE(dir.ok());
  EXPECT_NE(dir.error().message().find("\"../x\""), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(root_ + "/acp"));
}

TEST_F(KernelBpffsDirs, ListsSessions) {
  auto none = acp::kernel::list_session_pin_dirs(root_);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  ASSERT_TRUE(acp::kernel::session_pin_dir("b", root_).ok());
  ASSERT_TRUE(acp::kernel::session_pin_dir("a", root_).ok());
  auto two = acp::kernel::list_session_pin_dirs(root_);
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(*two, (std::vector<std::string>{"a", "b"}));
}

}  // namespace
