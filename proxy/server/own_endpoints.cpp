#include "acp/proxy/own_endpoints.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include "acp/proxy/peer_identity.hpp"
#include "acp/util/atomic_file.hpp"

namespace acp::proxy {

namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

// This process's listeners: socket inode -> what it is.
struct LocalRegistry {
  std::mutex mu;
  std::map<uint64_t, std::string> entries;
};
LocalRegistry& local_registry() {
  static LocalRegistry r;
  return r;
}

bool pid_alive(pid_t pid) {
  return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM);
}

// "<pid>-<inode>": the entry's owner and socket; false for any other name.
bool parse_entry_name(const std::string& name, pid_t& pid, uint64_t& inode) {
  auto dash = name.find('-');
  if (dash == std::string::npos || dash == 0 || dash + 1 >= name.size()) return false;
  try {
    size_t used = 0;
    long p = std::stol(name.substr(0, dash), &used);
    if (used != dash) return false;
    size_t used2 = 0;
    unsigned long long i = std::stoull(name.substr(dash + 1), &used2);
    if (used2 != name.size() - dash - 1) return false;
    pid = static_cast<pid_t>(p);
    inode = i;
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

// The directory, made when missing; it must be root's and writable by root only, since its
// entries decide what proxies refuse.
Status ensure_registry_dir(const std::string& dir) {
  auto parent = dir.substr(0, dir.find_last_of('/'));
  if (!parent.empty() && ::mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST)
    return errno_error("mkdir " + parent);
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return errno_error("mkdir " + dir);
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) return errno_error("stat " + dir);
  if (!S_ISDIR(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022) != 0)
    return make_error(dir +
                      " must be a directory owned by root and writable by root only: fix "
                      "its owner and mode or remove it");
  return {};
}

// Entries of processes that are gone: their sockets died with them.
void remove_stale_entries(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  while (dirent* e = ::readdir(d)) {
    pid_t pid = 0;
    uint64_t inode = 0;
    if (parse_entry_name(e->d_name, pid, inode) && !pid_alive(pid))
      ::unlink((dir + "/" + e->d_name).c_str());
  }
  ::closedir(d);
}

// What the live machine-wide entry for socket `inode` says; nullopt when there is none.
std::optional<std::string> machine_entry(const std::string& dir, uint64_t inode) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return std::nullopt;
  std::optional<std::string> found;
  while (dirent* e = ::readdir(d)) {
    pid_t pid = 0;
    uint64_t ino = 0;
    if (!parse_entry_name(e->d_name, pid, ino) || ino != inode || !pid_alive(pid)) continue;
    std::ifstream in(dir + "/" + e->d_name);
    std::string what;
    std::getline(in, what);
    found = what.empty() ? "an ACP listener of pid " + std::to_string(pid) : what;
    break;
  }
  ::closedir(d);
  return found;
}

}  // namespace

OwnEndpoint::OwnEndpoint(OwnEndpoint&& o) noexcept
    : inode_(std::exchange(o.inode_, 0)), file_(std::move(o.file_)) {
  o.file_.clear();
}

OwnEndpoint& OwnEndpoint::operator=(OwnEndpoint&& o) noexcept {
  if (this != &o) {
    reset();
    inode_ = std::exchange(o.inode_, 0);
    file_ = std::move(o.file_);
    o.file_.clear();
  }
  return *this;
}

OwnEndpoint::~OwnEndpoint() {
  reset();
}

void OwnEndpoint::reset() {
  if (inode_ != 0) {
    auto& r = local_registry();
    std::lock_guard lock(r.mu);
    r.entries.erase(inode_);
  }
  if (!file_.empty()) ::unlink(file_.c_str());
  inode_ = 0;
  file_.clear();
}

Result<OwnEndpoint> register_own_endpoint(int fd, const std::string& what, const std::string& dir) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno_error("fstat of the listening socket for " + what);
  if (!S_ISSOCK(st.st_mode)) return make_error("register " + what + ": fd is not a socket");
  const uint64_t inode = st.st_ino;
  {
    auto& r = local_registry();
    std::lock_guard lock(r.mu);
    r.entries[inode] = what;
  }
  OwnEndpoint reg(inode, {});  // every error below takes the in-process entry back out
  if (::geteuid() != 0) return reg;
  if (auto s = ensure_registry_dir(dir); !s)
    return make_error("register " + what + " as ACP's own endpoint: " + s.error().message(),
                      s.error().err);
  remove_stale_entries(dir);
  const std::string file = dir + "/" + std::to_string(::getpid()) + "-" + std::to_string(inode);
  if (auto st = util::write_file_atomic(file, what + "\n", 0644); !st)
    return make_error("register " + what + ": " + st.error().message(), st.error().err);
  reg.file_ = file;
  return reg;
}

std::optional<std::string> own_endpoint_refusal(const tcp::endpoint& dest, const std::string& dir) {
  auto inode = listener_inode(dest);
  if (!inode)
    return "cannot tell whether " + endpoint_text(dest) + " is one of ACP's own endpoints (" +
           inode.error().message() + "), so it is refused";
  if (!*inode) return std::nullopt;
  std::optional<std::string> what;
  {
    auto& r = local_registry();
    std::lock_guard lock(r.mu);
    if (auto it = r.entries.find(**inode); it != r.entries.end()) what = it->second;
  }
  if (!what) what = machine_entry(dir, **inode);
  if (!what) return std::nullopt;
  return endpoint_text(dest) + " reaches ACP's own " + *what +
         ", which no proxy connects to whatever the policy says";
}

}  // namespace acp::proxy
