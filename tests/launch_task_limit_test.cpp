#include "acp/launch/task_limit.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace {

namespace fs = std::filesystem;
using acp::launch::apply_task_limit;
using acp::launch::count_user_tasks;
using acp::launch::TaskLimit;

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A fake cgroup2 tree in a temp dir: root/acp/session, with the files the kernel would have.
class TaskLimitTree : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/acp-task-limit.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    fs::create_directories(root_ / "acp" / "s1");
    for (const auto& d : {root_, root_ / "acp"}) std::ofstream(d / "cgroup.subtree_control");
    std::ofstream(root_ / "acp" / "s1" / "pids.max") << "max\n";
  }
  void TearDown() override { fs::remove_all(root_); }
  fs::path root_;
};

TEST(LaunchTaskLimit, CountsThisProcessAndItsThreads) {
  const uint64_t before = count_user_tasks(getuid());
  EXPECT_GE(before, 1u);
  std::thread t([&] { EXPECT_GE(count_user_tasks(getuid()), 2u); });
  t.join();
}

TEST_F(TaskLimitTree, PidsControllerInV2SetsPidsMaxAndEnablesItOnTheWayDown) {
  std::ofstream(root_ / "cgroup.controllers") << "cpu io memory pids\n";
  auto t = apply_task_limit(root_, root_ / "acp" / "s1", 65534, 300);
  ASSERT_TRUE(t.ok()) << t.error().message();
  EXPECT_EQ(t->kind, TaskLimit::Kind::kPidsMax);
  // A regular file is not truncated the way the kernel's pids.max is replaced: the prefix.
  EXPECT_EQ(slurp(root_ / "acp" / "s1" / "pids.max").substr(0, 3), "300");
  EXPECT_EQ(slurp(root_ / "cgroup.subtree_control"), "+pids");
  EXPECT_EQ(slurp(root_ / "acp" / "cgroup.subtree_control"), "+pids");
  EXPECT_NE(t->description.find("pids.max=300"), std::string::npos);
}

TEST_F(TaskLimitTree, WithoutItAUserGetsRlimitNprocAboveWhatItHasAndRootNothing) {
  std::ofstream(root_ / "cgroup.controllers") << "hugetlb\n";
  auto t = apply_task_limit(root_, root_ / "acp" / "s1", getuid(), 300);
  ASSERT_TRUE(t.ok()) << t.error().message();
  if (getuid() == 0) {
    EXPECT_EQ(t->kind, TaskLimit::Kind::kNone);
    EXPECT_NE(t->description.find("does not apply to root"), std::string::npos);
  } else {
    EXPECT_EQ(t->kind, TaskLimit::Kind::kRlimitNproc);
    EXPECT_GE(t->value, 301u);
  }
  auto n = apply_task_limit(root_, root_ / "acp" / "s1", 65534, 300);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n->kind, TaskLimit::Kind::kRlimitNproc);
  EXPECT_GE(n->value, 300u);  // nobody's tasks at the time, plus 300
  EXPECT_NE(n->description.find("RLIMIT_NPROC="), std::string::npos);
  EXPECT_EQ(slurp(root_ / "acp" / "s1" / "pids.max"), "max\n");  // untouched
}

}  // namespace
