#include "bpf_links.hpp"

#include <bpf/bpf.h>
#include <sys/stat.h>
#include <unistd.h>

namespace acp::kernel::detail {

Status pin_objects(const std::string& dir, const std::vector<PinObject>& objects) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return errno_error("mkdir " + dir);
  std::vector<std::string> made;
  for (const auto& o : objects) {
    std::string path = dir + "/" + o.name;
    if (bpf_obj_pin(o.fd, path.c_str()) != 0) {
      int err = errno;
      for (const auto& p : made) ::unlink(p.c_str());
      return make_error("pin BPF object " + path, err);
    }
    made.push_back(std::move(path));
  }
  return {};
}

}  // namespace acp::kernel::detail
