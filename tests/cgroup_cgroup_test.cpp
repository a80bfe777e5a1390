#include "acp/cgroup/cgroup.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>

namespace {

TEST(CgroupCgroup, SessionPathIsUnderAcp) {
  EXPECT_EQ(acp::session_cgroup_path("/sys/fs/cgroup/unified", "abc"),
            "/sys/fs/cgroup/unified/acp/abc");
  EXPECT_EQ(acp::session_cgroup_path("/sys/fs/cgroup/", "abc"), "/sys/fs/cgroup/acp/abc");
  EXPECT_EQ(acp::session_cgroup_path("/", "abc"), "/acp/abc");
}

TEST(CgroupCgroup, RefusesADirectoryThatIsNotCgroup2) {
  char tmpl[] = "/tmp/acp-cgroup-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  auto opened = acp::Cgroup::open(dir);
  ASSERT_FALSE(opened.ok());
  EXPECT_NE(opened.error().message().find("not on a cgroup v2 filesystem"), std::string::npos);
  // create() makes the leaf, finds it is not a cgroup, and removes it again.
  auto created = acp::Cgroup::create(dir + "/x/leaf");
  ASSERT_FALSE(created.ok());
  EXPECT_FALSE(std::filesystem::exists(dir + "/x/leaf"));
  std::filesystem::remove_all(dir);
}

TEST(CgroupCgroup, RefusesRelativePaths) {
  auto c = acp::Cgroup::create("relative/path");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message().find("relative/path"), std::string::npos);
}

}  // namespace
