#include "acp/util/fd_limit.hpp"

#include <sys/resource.h>

namespace acp {

void raise_fd_limit_for_tunnels() {
  if (rlimit nofile{};
      ::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &nofile);
  }
}

}  // namespace acp
