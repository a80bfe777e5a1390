// Pod cgroup paths as the kubelet lays them out (see the header's table).
#include "acp/k8s/pod_cgroup.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>

#include "acp/k8s/pod.hpp"

namespace acp::k8s {
namespace {

bool is_dir(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

const char* qos_dir(QosClass q) {
  return q == QosClass::Burstable ? "burstable" : "besteffort";
}

}  // namespace

const char* to_string(CgroupDriver d) {
  return d == CgroupDriver::Systemd ? "systemd" : "cgroupfs";
}

std::optional<CgroupDriver> parse_cgroup_driver(std::string_view s) {
  if (s == "systemd") return CgroupDriver::Systemd;
  if (s == "cgroupfs") return CgroupDriver::Cgroupfs;
  return std::nullopt;
}

std::optional<QosClass> parse_qos_class(std::string_view s) {
  if (s == "Guaranteed") return QosClass::Guaranteed;
  if (s == "Burstable") return QosClass::Burstable;
  if (s == "BestEffort") return QosClass::BestEffort;
  return std::nullopt;
}

std::string pod_cgroup_relpath(CgroupDriver driver, QosClass qos, std::string_view uid) {
  if (driver == CgroupDriver::Cgroupfs) {
    std::string out = "kubepods/";
    if (qos != QosClass::Guaranteed) out += std::string(qos_dir(qos)) + "/";
    return out + "pod" + std::string(uid);
  }
  std::string escaped(uid);
  std::replace(escaped.begin(), escaped.end(), '-', '_');
  if (qos == QosClass::Guaranteed) return "kubepods.slice/kubepods-pod" + escaped + ".slice";
  const std::string q = qos_dir(qos);
  return "kubepods.slice/kubepods-" + q + ".slice/kubepods-" + q + "-pod" + escaped + ".slice";
}

Result<CgroupDriver> detect_cgroup_driver(const std::string& cgroup_root) {
  if (is_dir(cgroup_root + "/kubepods.slice")) return CgroupDriver::Systemd;
  if (is_dir(cgroup_root + "/kubepods")) return CgroupDriver::Cgroupfs;
  return make_error("cannot tell the kubelet's cgroup driver: neither " + cgroup_root +
                    "/kubepods.slice (systemd) nor " + cgroup_root +
                    "/kubepods (cgroupfs) exists; pass --cgroup-root=<the host's cgroup2 mount> "
                    "or --cgroup-driver=systemd|cgroupfs");
}

std::optional<std::string> find_pod_cgroup(const std::string& cgroup_root, CgroupDriver driver,
                                           std::string_view uid, std::optional<QosClass> qos) {
  std::vector<QosClass> order;
  if (qos) order.push_back(*qos);
  for (QosClass q : {QosClass::Burstable, QosClass::BestEffort, QosClass::Guaranteed})
    if (!qos || q != *qos) order.push_back(q);
  for (QosClass q : order) {
    std::string path = cgroup_root + "/" + pod_cgroup_relpath(driver, q, uid);
    if (is_dir(path)) return path;
  }
  return std::nullopt;
}

const char* kubepods_dir_name(CgroupDriver driver) {
  return driver == CgroupDriver::Systemd ? "kubepods.slice" : "kubepods";
}

CgroupDirName parse_cgroup_dir_name(CgroupDriver driver, std::string_view name) {
  auto pod = [](std::string uid) {
    return valid_pod_uid(uid) ? CgroupDirName{CgroupDirName::Kind::Pod, std::move(uid)}
                              : CgroupDirName{};
  };
  if (driver == CgroupDriver::Cgroupfs) {
    if (name == "burstable" || name == "besteffort") return {CgroupDirName::Kind::Qos, {}};
    if (name.substr(0, 3) == "pod") return pod(std::string(name.substr(3)));
    return {};
  }
  if (name == "kubepods-burstable.slice" || name == "kubepods-besteffort.slice")
    return {CgroupDirName::Kind::Qos, {}};
  constexpr std::string_view kSuffix = ".slice";
  if (name.size() <= kSuffix.size() || name.substr(name.size() - kSuffix.size()) != kSuffix)
    return {};
  name.remove_suffix(kSuffix.size());
  for (std::string_view prefix :
       {"kubepods-pod", "kubepods-burstable-pod", "kubepods-besteffort-pod"}) {
    if (name.substr(0, prefix.size()) != prefix) continue;
    std::string uid(name.substr(prefix.size()));
    std::replace(uid.begin(), uid.end(), '_', '-');
    return pod(std::move(uid));
  }
  return {};
}

Result<uint32_t> cgroup_level(const std::string& dir) {
  struct stat st {};
  std::string p = dir;
  uint32_t level = 0;
  if (::stat((p + "/cgroup.procs").c_str(), &st) != 0)
    return make_error(dir + " is not a cgroup v2 directory", errno);
  while (::stat((p + "/cgroup.events").c_str(), &st) == 0) {
    ++level;
    p += "/..";
    if (::stat((p + "/cgroup.procs").c_str(), &st) != 0 || level > 64)
      return make_error("cannot find the cgroup v2 root above " + dir +
                        ": give --cgroup-root the host's cgroup2 mount itself, not a mount of a "
                        "subtree");
  }
  return level;
}

}  // namespace acp::k8s
