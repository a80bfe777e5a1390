#include "acp/util/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "acp/util/scope_exit.hpp"
#include "acp/util/unique_fd.hpp"

namespace acp::util {
namespace {

std::string parent_dir(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

Status write_all(int fd, std::string_view content, const std::string& tmp) {
  size_t off = 0;
  while (off < content.size()) {
    ssize_t n = ::write(fd, content.data() + off, content.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("write " + tmp + " (is the filesystem full?)");
    off += static_cast<size_t>(n);
  }
  return {};
}

Status fsync_dir(const std::string& dir, const std::string& path) {
  UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd || ::fsync(dfd.get()) != 0)
    return errno_error("wrote " + path + " but cannot fsync its directory " + dir +
                       " (the new content may not survive a crash)");
  return {};
}

// Gives the finished temporary file the name `path`. On success the temporary name is gone;
// on failure the caller removes it.
Status publish(const std::string& tmp, const std::string& path, IfExists if_exists) {
  if (if_exists == IfExists::kReplace) {
    if (::rename(tmp.c_str(), path.c_str()) == 0) return {};
    return errno_error("rename " + tmp + " to " + path);
  }
  if (::link(tmp.c_str(), path.c_str()) == 0) {
    ::unlink(tmp.c_str());
    return {};
  }
  if (errno == EEXIST) return errno_error(path + " already exists (kept as it is)");
  return errno_error("link " + tmp + " to " + path);
}

}  // namespace

std::string atomic_write_temp_prefix(const std::string& path) {
  return path + ".tmp.";
}

Status write_file_atomic(const std::string& path, std::string_view content, mode_t mode,
                         IfExists if_exists) {
  if (path.empty() || path.back() == '/')
    return make_error("cannot write \"" + path + "\": not a file name");
  const std::string dir = parent_dir(path);
  std::string tmp = atomic_write_temp_prefix(path) + "XXXXXX";
  UniqueFd fd(::mkostemp(tmp.data(), O_CLOEXEC));
  if (!fd)
    return errno_error("cannot create a temporary file in " + dir + " to write " + path +
                       " (does the directory exist, and may this user write to it?)");
  auto remove_tmp = on_scope_exit([&] { ::unlink(tmp.c_str()); });
  if (::fchmod(fd.get(), mode) != 0) return errno_error("chmod " + tmp);
  if (auto st = write_all(fd.get(), content, tmp); !st) return st;
  if (::fsync(fd.get()) != 0) return errno_error("fsync " + tmp + " (is the filesystem full?)");
  if (::close(fd.release()) != 0) return errno_error("close " + tmp);
  if (auto st = publish(tmp, path, if_exists); !st) return st;
  remove_tmp.release();
  return fsync_dir(dir, path);
}

Status create_directories(const std::string& dir, mode_t mode) {
  if (dir.empty()) return {};
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return {};
    return make_error("cannot create directory " + dir + ": a file of that name is in the way",
                      ENOTDIR);
  }
  if (auto parent = parent_dir(dir); parent != dir && parent != "." && parent != "/")
    if (auto s = create_directories(parent, mode); !s) return s;
  if (::mkdir(dir.c_str(), mode) == 0) {
    ::chmod(dir.c_str(), mode);  // umask aside
    return {};
  }
  if (errno == EEXIST) return {};  // made by someone else meanwhile: theirs, as it is
  return errno_error("cannot create directory " + dir);
}

}  // namespace acp::util
