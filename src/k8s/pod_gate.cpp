// PodGate: the node gate's classes kept in step with the kubelet's cgroup tree (inotify).
#include "acp/k8s/pod_gate.hpp"

#include <dirent.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <set>

#include "acp/cgroup/cgroup.hpp"
#include "acp/cgroup/mounts.hpp"
#include "acp/kernel/bpffs.hpp"
#include "acp/kernel/pinned_session.hpp"

namespace acp::k8s {
namespace {

using kernel::GateClass;

constexpr uint32_t kWatchMask = IN_CREATE | IN_DELETE | IN_ONLYDIR;

std::optional<uint64_t> inode_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return std::nullopt;
  return static_cast<uint64_t>(st.st_ino);
}

std::vector<std::string> subdirs(const std::string& dir) {
  std::vector<std::string> out;
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
  if (!d) return out;
  while (dirent* e = ::readdir(d.get())) {
    std::string n = e->d_name;
    if (e->d_type == DT_DIR && n != "." && n != "..") out.push_back(std::move(n));
  }
  return out;
}

// Whether the directory with this inode is dir or lies at most depth levels below it.
bool contains_inode(const std::string& dir, uint64_t ino, int depth) {
  if (inode_of(dir) == ino) return true;
  if (depth == 0) return false;
  for (const auto& n : subdirs(dir))
    if (contains_inode(dir + "/" + n, ino, depth - 1)) return true;
  return false;
}

void log(const std::string& line) {
  std::fprintf(stderr, "acp node-agent: %s\n", line.c_str());
}

}  // namespace

PodGate::PodGate(boost::asio::io_context& io, PodGateConfig cfg, Handler handler)
    : io_(io), cfg_(std::move(cfg)), handler_(std::move(handler)) {
  kubepods_ = cfg_.cgroup_root + "/" + kubepods_dir_name(cfg_.driver);
}

std::string PodGate::pin_dir() const {
  return cfg_.bpffs_root + "/acp/" + kGatePinName;
}

Status PodGate::start() {
  if (gate_) return {};
  auto ino = inode_of(kubepods_);
  if (!ino)
    return make_error("the kubelet's cgroup " + kubepods_ +
                      " does not exist (yet): is --cgroup-root the host's cgroup2 mount and "
                      "--cgroup-driver the kubelet's?");
  auto level = cgroup_level(kubepods_);
  if (!level) return level.error();
  const kernel::GateConfig want{
      .kubepods_id = *ino, .kubepods_level = *level, .unknown_allow = cfg_.unknown_allow};
  const std::string dir = pin_dir();
  std::map<uint64_t, GateClass> inherited;
  if (kernel::NodeGate::pinned_links_attached(dir, *ino)) {
    // An earlier agent's gate stands on this kubepods: it stays in force, with its classes.
    auto g = kernel::NodeGate::open_pinned(dir);
    if (!g) return g.error();
    if (auto st = g->set_config(want); !st) return st;
    gate_.emplace(std::move(*g));
    armed_ = true;
  } else {
    // None, or one that is not whole: a new one, armed after the first list; an old one's
    // classes carry over and it stays until the new one is attached.
    if (auto old = kernel::NodeGate::open_pinned(dir))
      if (auto c = old->classes()) inherited = std::move(*c);
    auto g = kernel::NodeGate::load(want);
    if (!g) return g.error();
    gate_.emplace(std::move(*g));
  }
  if (auto c = gate_->classes()) classes_ = std::move(*c);
  for (const auto& [id, c] : inherited)
    if (auto st = gate_->set_class(id, c); st) classes_[id] = c;

  const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) return errno_error("inotify_init1");
  inotify_.emplace(io_, fd);
  const int wd = ::inotify_add_watch(fd, kubepods_.c_str(), kWatchMask);
  if (wd < 0) return errno_error("watch " + kubepods_ + " (inotify)");
  watches_[wd] = {kubepods_, true};
  scan(kubepods_, true);
  find_self();
  if (auto st = prune(); !st) return st;
  arm_read();
  return {};
}

Status PodGate::arm() {
  if (!gate_) return make_error("the node gate is not loaded", EINVAL);
  if (armed_) return {};
  auto cg = Cgroup::open(kubepods_);
  if (!cg) return cg.error();
  if (auto st = gate_->attach(cg->fd()); !st) return st;
  // The new gate stands before an old one (incomplete, or of another kubepods) goes.
  if (auto st = kernel::detach_and_unpin(pin_dir()); !st) return st;
  auto made = kernel::session_pin_dir(kGatePinName, cfg_.bpffs_root);
  if (!made) return made.error();
  if (auto st = gate_->pin(*made); !st) return st;
  armed_ = true;
  return {};
}

void PodGate::scan(const std::string& dir, bool is_kubepods) {
  for (const auto& n : subdirs(dir)) seen(dir, n, is_kubepods);
}

void PodGate::seen(const std::string& parent, const std::string& name, bool parent_is_kubepods) {
  const CgroupDirName what = parse_cgroup_dir_name(cfg_.driver, name);
  const std::string path = parent + "/" + name;
  auto ino = inode_of(path);
  if (!ino) return;  // gone again already
  if (what.kind == CgroupDirName::Kind::Qos && parent_is_kubepods) {
    if (qos_.count(path)) return;
    qos_[path] = *ino;
    if (auto st = gate_->set_class(*ino, GateClass::Qos); !st)
      log("node gate: " + st.error().message() + "; the pods of " + path + " stay refused");
    else
      classes_[*ino] = GateClass::Qos;
    const int wd = ::inotify_add_watch(inotify_->native_handle(), path.c_str(), kWatchMask);
    if (wd < 0) {
      log("watch " + path + " (inotify): " + std::strerror(errno) +
          "; its new pods are found by the API watch only");
    } else {
      watches_[wd] = {path, false};
    }
    scan(path, false);  // pods made before the watch was in place
    return;
  }
  if (what.kind != CgroupDirName::Kind::Pod) return;
  auto [it, fresh] = pods_.insert_or_assign(what.uid, *ino);
  (void)it;
  if (fresh && handler_.pod_cgroup_appeared) handler_.pod_cgroup_appeared(what.uid);
}

void PodGate::gone(const std::string& name) {
  const CgroupDirName what = parse_cgroup_dir_name(cfg_.driver, name);
  if (what.kind != CgroupDirName::Kind::Pod) return;
  auto it = pods_.find(what.uid);
  if (it == pods_.end()) return;
  (void)gate_->forget(it->second);
  classes_.erase(it->second);
  pods_.erase(it);
  if (handler_.pod_cgroup_gone) handler_.pod_cgroup_gone(what.uid);
}

void PodGate::arm_read() {
  inotify_->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                       [this](const boost::system::error_code& ec) {
                         if (ec) return;
                         on_readable();
                         arm_read();
                       });
}

void PodGate::on_readable() {
  alignas(inotify_event) char buf[16 * 1024];
  for (;;) {
    const ssize_t n = ::read(inotify_->native_handle(), buf, sizeof buf);
    if (n <= 0) return;  // EAGAIN: all read
    for (ssize_t off = 0; off < n;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
      off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
      if (ev->mask & IN_Q_OVERFLOW) {  // events lost: look at the whole tree again
        scan(kubepods_, true);
        for (const auto& [path, id] : std::map<std::string, uint64_t>(qos_)) scan(path, false);
        (void)prune();
        continue;
      }
      auto w = watches_.find(ev->wd);
      if (w == watches_.end()) continue;
      if (ev->mask & IN_IGNORED) {
        watches_.erase(w);
        continue;
      }
      if (!(ev->mask & IN_ISDIR) || ev->len == 0) continue;
      const std::string name = ev->name;
      if (ev->mask & IN_CREATE) seen(w->second.path, name, w->second.is_kubepods);
      if (ev->mask & IN_DELETE) {
        if (w->second.is_kubepods && qos_.count(w->second.path + "/" + name)) {
          const uint64_t id = qos_[w->second.path + "/" + name];
          (void)gate_->forget(id);
          classes_.erase(id);
          qos_.erase(w->second.path + "/" + name);
        } else {
          gone(name);
        }
      }
    }
  }
}

// The agent's own pod: named by the downward API (the DaemonSet sets POD_UID), else found by
// the inode of the agent's own cgroup below a pod cgroup.
void PodGate::find_self() {
  auto let_through = [this](const std::string& uid) {
    self_uid_ = uid;
    if (auto st = classify(uid, GateClass::Open); !st)
      log("node gate: cannot let the agent's own pod through: " + st.error().message());
  };
  if (const char* env = std::getenv("POD_UID"); env && pods_.count(env)) return let_through(env);
  auto candidates = cgroup_dir_candidates("self");
  if (!candidates) return;
  for (const auto& own : *candidates) {
    auto ino = inode_of(own);
    if (!ino) continue;
    for (const auto& [uid, id] : pods_) {
      (void)id;
      auto path = find_pod_cgroup(cfg_.cgroup_root, cfg_.driver, uid, std::nullopt);
      if (path && contains_inode(*path, *ino, 2)) return let_through(uid);
    }
  }
}

// Classes of cgroups that are gone (while no agent was there to see them go) are dropped.
Status PodGate::prune() {
  std::set<uint64_t> live;
  for (const auto& [path, id] : qos_) live.insert(id);
  for (const auto& [uid, id] : pods_) live.insert(id);
  auto all = gate_->classes();
  if (!all) return all.error();
  for (const auto& [id, c] : *all) {
    if (live.count(id)) continue;
    if (auto st = gate_->forget(id); !st) return st;
    classes_.erase(id);
  }
  return {};
}

Status PodGate::classify(const std::string& uid, GateClass c) {
  auto it = pods_.find(uid);
  if (it == pods_.end() || !gate_) return {};
  if (auto st = gate_->set_class(it->second, c); !st) return st;
  classes_[it->second] = c;
  return {};
}

Status PodGate::classify_dir(const std::string& path, GateClass c) {
  auto ino = inode_of(path);
  if (!ino) return make_error("classify " + path + ": no such cgroup", ENOENT);
  if (!gate_) return {};
  if (auto st = gate_->set_class(*ino, c); !st) return st;
  classes_[*ino] = c;
  return {};
}

Status PodGate::unclassify(const std::string& uid) {
  auto it = pods_.find(uid);
  if (it == pods_.end() || !gate_) return {};
  if (uid == self_uid_) return {};  // the agent never locks itself out
  if (auto st = gate_->forget(it->second); !st) return st;
  classes_.erase(it->second);
  return {};
}

std::vector<std::string> PodGate::pod_uids() const {
  std::vector<std::string> out;
  for (const auto& [uid, id] : pods_) out.push_back(uid);
  return out;
}

PodGateStats PodGate::stats() const {
  PodGateStats s;
  s.armed = armed_;
  for (const auto& [uid, id] : pods_) {
    auto c = classes_.find(id);
    if (c == classes_.end())
      ++s.unclassified;
    else if (c->second == GateClass::Open)
      ++s.open;
    else if (c->second == GateClass::Walled)
      ++s.walled;
  }
  if (gate_)
    if (auto c = gate_->counters()) s.counters = *c;
  return s;
}

}  // namespace acp::k8s
