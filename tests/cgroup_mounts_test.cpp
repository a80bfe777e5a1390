#include "acp/cgroup/mounts.hpp"

#include <gtest/gtest.h>

namespace {

// As seen on the hybrid Debian 12 test machines: v1 controllers plus cgroup2 on .../unified.
constexpr const char* kHybrid =
    "sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0\n"
    "tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0\n"
    "cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n"
    "cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0\n"
    "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n";

constexpr const char* kUnified =
    "proc /proc proc rw 0 0\n"
    "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0\n"
    "bpf /sys/fs/bpf bpf rw,nosuid,nodev,noexec,relatime,mode=700 0 0\n";

TEST(CgroupMounts, FindsCgroup2OnHybridHost) {
  EXPECT_EQ(acp::find_mount_point(kHybrid, "cgroup2"), "/sys/fs/cgroup/unified");
}

TEST(CgroupMounts, FindsCgroup2OnUnifiedHost) {
  EXPECT_EQ(acp::find_mount_point(kUnified, "cgroup2"), "/sys/fs/cgroup");
}

TEST(CgroupMounts, V1OnlyHostHasNoCgroup2) {
  EXPECT_EQ(acp::find_mount_point("cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n", "cgroup2"),
            std::nullopt);
  EXPECT_EQ(acp::find_mount_point("", "cgroup2"), std::nullopt);
}

TEST(CgroupMounts, DecodesOctalEscapes) {
  EXPECT_EQ(acp::find_mount_point("none /mnt/my\\040cg cgroup2 rw 0 0\n", "cgroup2"), "/mnt/my cg");
}

TEST(CgroupMounts, IsMountedAsChecksPathAndType) {
  EXPECT_TRUE(acp::is_mounted_as(kUnified, "/sys/fs/bpf", "bpf"));
  EXPECT_FALSE(acp::is_mounted_as(kHybrid, "/sys/fs/bpf", "bpf"));
  EXPECT_FALSE(acp::is_mounted_as(kUnified, "/sys/fs/cgroup", "bpf"));
}

TEST(CgroupMounts, ReadsThisMachine) {
  auto r = acp::cgroup2_mount_point();
  // Every supported machine has cgroup2 somewhere; the point is that we found it by reading.
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->front(), '/');
}

}  // namespace
