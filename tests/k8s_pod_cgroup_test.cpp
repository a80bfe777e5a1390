// Pod cgroup paths as the kubelet lays them out, and finding them on disk (plain directories:
// no cgroup2 needed for the lookup itself).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdlib>
#include <string>

#include "acp/k8s/pod_cgroup.hpp"

namespace acp::k8s {
namespace {

constexpr const char* kUid = "0f6a1c3e-7b1d-4c39-9d1e-3a5e2b7c9f10";

TEST(K8sPodCgroupTest, SystemdDriverEveryQosClass) {
  EXPECT_EQ(pod_cgroup_relpath(CgroupDriver::Systemd, QosClass::Guaranteed, kUid),
            "kubepods.slice/kubepods-pod0f6a1c3e_7b1d_4c39_9d1e_3a5e2b7c9f10.slice");
  EXPECT_EQ(pod_cgroup_relpath(CgroupDriver::Systemd, QosClass::Burstable, kUid),
            "kubepods.slice/kubepods-burstable.slice/"
            "kubepods-burstable-pod0f6a1c3e_7b1d_4c39_9d1e_3a5e2b7c9f10.slice");
  EXPECT_EQ(pod_cgroup_relpath(CgroupDriver::Systemd, QosClass::BestEffort, kUid),
            "kubepods.slice/kubepods-besteffort.slice/"
            "kubepods-besteffort-pod0f6a1c3e_7b1d_4c39_9d1e_3a5e2b7c9f10.slice");
}

TEST(K8sPodCgroupTest, CgroupfsDriverEveryQosClass) {
  EXPECT_EQ(pod_cgroup_relpath(CgroupDriver::Cgroupfs, QosClass::Guaranteed, kUid),
            std::string("kubepods/pod") + kUid);
  EXPECT_EQ(pod_cgroup_relpath(CgroupDriver::Cgroupfs, QosClass::Burstable, kUid),
            std::string("kubepods/burstable/pod") + kUid);
  EXPECT_EQ(pod_cgroup_relpath(CgroupDriver::Cgroupfs, QosClass::BestEffort, kUid),
            std::string("kubepods/besteffort/pod") + kUid);
}

TEST(K8sPodCgroupTest, ParsesNames) {
  EXPECT_EQ(parse_cgroup_driver("systemd"), CgroupDriver::Systemd);
  EXPECT_EQ(parse_cgroup_driver("cgroupfs"), CgroupDriver::Cgroupfs);
  EXPECT_FALSE(parse_cgroup_driver("auto"));
  EXPECT_EQ(parse_qos_class("BestEffort"), QosClass::BestEffort);
  EXPECT_FALSE(parse_qos_class(""));
}

class K8sPodCgroupDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char t[] = "/tmp/acp-podcg-XXXXXX";
    ASSERT_NE(mkdtemp(t), nullptr);
    root_ = t;
  }
  void TearDown() override { (void)std::system(("rm -rf '" + root_ + "'").c_str()); }
  void mk(const std::string& rel) {
    ASSERT_EQ(std::system(("mkdir -p '" + root_ + "/" + rel + "'").c_str()), 0);
  }
  std::string root_;
};

TEST_F(K8sPodCgroupDirTest, DetectsTheDriverFromTheLayout) {
  EXPECT_FALSE(detect_cgroup_driver(root_));
  mk("kubepods");
  EXPECT_EQ(*detect_cgroup_driver(root_), CgroupDriver::Cgroupfs);
  mk("kubepods.slice");
  EXPECT_EQ(*detect_cgroup_driver(root_), CgroupDriver::Systemd);
}

TEST_F(K8sPodCgroupDirTest, FindsThePodInAnyQosClassEvenWhenTheStatusSaysOtherwise) {
  EXPECT_FALSE(find_pod_cgroup(root_, CgroupDriver::Systemd, kUid, QosClass::Burstable));
  const auto rel = pod_cgroup_relpath(CgroupDriver::Systemd, QosClass::BestEffort, kUid);
  mk(rel);
  EXPECT_EQ(find_pod_cgroup(root_, CgroupDriver::Systemd, kUid, QosClass::Burstable),
            root_ + "/" + rel);
  EXPECT_EQ(find_pod_cgroup(root_, CgroupDriver::Systemd, kUid, std::nullopt), root_ + "/" + rel);
  EXPECT_FALSE(find_pod_cgroup(root_, CgroupDriver::Cgroupfs, kUid, std::nullopt));
}

// The names the node gate's inotify watch sees below kubepods and the QoS cgroups: each
// pod_cgroup_relpath() leaf parses back to its uid; QoS cgroups and anything else are told apart.
TEST(K8sPodCgroupTest, DirectoryNamesParseBackToWhatTheyAre) {
  using Kind = CgroupDirName::Kind;
  for (CgroupDriver d : {CgroupDriver::Systemd, CgroupDriver::Cgroupfs}) {
    for (QosClass q : {QosClass::Guaranteed, QosClass::Burstable, QosClass::BestEffort}) {
      const std::string rel = pod_cgroup_relpath(d, q, kUid);
      const CgroupDirName n = parse_cgroup_dir_name(d, rel.substr(rel.rfind('/') + 1));
      EXPECT_EQ(n.kind, Kind::Pod) << rel;
      EXPECT_EQ(n.uid, kUid) << rel;
      if (q != QosClass::Guaranteed) {
        const std::string qos = rel.substr(0, rel.rfind('/'));
        EXPECT_EQ(parse_cgroup_dir_name(d, qos.substr(qos.rfind('/') + 1)).kind, Kind::Qos) << rel;
      }
    }
  }
  EXPECT_EQ(parse_cgroup_dir_name(CgroupDriver::Systemd, "kubepods-burstable.slice").kind,
            Kind::Qos);
  EXPECT_EQ(parse_cgroup_dir_name(CgroupDriver::Cgroupfs, "besteffort").kind, Kind::Qos);
  // Not a pod: other names, a QoS name of the other driver, a uid that could leave the tree.
  for (const char* n : {"cri-containerd-0123.scope", "burstable", "kubepods-pod.slice",
                        "kubepods-pod0f6a1c3e_../x.slice", "system.slice"})
    EXPECT_EQ(parse_cgroup_dir_name(CgroupDriver::Systemd, n).kind, Kind::Other) << n;
  for (const char* n : {"kubepods-burstable.slice", "pod", "pod../x", "0123abcd"})
    EXPECT_EQ(parse_cgroup_dir_name(CgroupDriver::Cgroupfs, n).kind, Kind::Other) << n;
  EXPECT_EQ(kubepods_dir_name(CgroupDriver::Systemd), std::string("kubepods.slice"));
  EXPECT_EQ(kubepods_dir_name(CgroupDriver::Cgroupfs), std::string("kubepods"));
}

}  // namespace
}  // namespace acp::k8s
