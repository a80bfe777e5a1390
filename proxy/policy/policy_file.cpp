// Policy::load_file: read a policy file, refusing (as root) one that someone else could change.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include "acp/proxy/policy.hpp"
#include "acp/util/unique_fd.hpp"

namespace acp::policy {
namespace {

constexpr off_t kMaxPolicyBytes = 256 << 20;

std::string octal_mode(mode_t m) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(m & 07777));
  return buf;
}

// A root process must not take orders from a file another user can rewrite or replace.
Status check_trusted(const struct stat& st, const std::string& what, const std::string& path) {
  if (st.st_uid != 0)
    return make_error(what + " " + path + " is owned by uid " + std::to_string(st.st_uid) +
                      ", not root; ACP refuses policy that others control: chown root:root " +
                      path);
  const bool dir_sticky = S_ISDIR(st.st_mode) && (st.st_mode & S_ISVTX);
  if ((st.st_mode & S_IWOTH) && !dir_sticky)
    return make_error(what + " " + path + " is writable by others (mode " + octal_mode(st.st_mode) +
                      "); ACP refuses policy that others control: " + "chmod o-w " + path);
  if ((st.st_mode & S_IWGRP) && st.st_gid != 0 && !dir_sticky)
    return make_error(what + " " + path + " is writable by group " + std::to_string(st.st_gid) +
                      " (mode " + octal_mode(st.st_mode) +
                      "); ACP refuses policy that others control: chmod g-w " + path +
                      " (or chgrp root " + path + ")");
  return {};
}

std::string parent_dir(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

Result<Policy> Policy::load_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return errno_error("open policy " + path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return errno_error("stat policy " + path);
  if (!S_ISREG(st.st_mode)) return make_error("policy " + path + " is not a regular file");
  if (::geteuid() == 0) {
    if (Status s = check_trusted(st, "policy file", path); !s) return s.error();
    struct stat dst {};
    const std::string dir = parent_dir(path);
    if (::stat(dir.c_str(), &dst) != 0) return errno_error("stat policy directory " + dir);
    if (Status s = check_trusted(dst, "policy directory", dir); !s) return s.error();
  }
  if (st.st_size > kMaxPolicyBytes)
    return make_error("policy " + path + " is " + std::to_string(st.st_size) +
                      " bytes; the limit is " + std::to_string(kMaxPolicyBytes));
  std::string text;
  text.resize(static_cast<size_t>(st.st_size));
  size_t got = 0;
  while (got < text.size()) {
    ssize_t n = ::read(fd.get(), text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("read policy " + path);
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  text.resize(got);
  return parse(text, path);
}

}  // namespace acp::policy
