#include "acp/daemon/sd_notify.hpp"

#include <sys/socket.h>
#include <sys/un.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "acp/util/unique_fd.hpp"

namespace acp::daemon {

Status sd_notify_to(const std::string& socket, const std::string& state) {
  if (socket.empty()) return {};
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (socket.size() >= sizeof sa.sun_path)
    return make_error("NOTIFY_SOCKET " + socket + " is too long", ENAMETOOLONG);
  if (socket[0] != '/' && socket[0] != '@')
    return make_error("NOTIFY_SOCKET " + socket + " is neither a path nor @abstract", EINVAL);
  std::memcpy(sa.sun_path, socket.data(), socket.size());
  if (socket[0] == '@') sa.sun_path[0] = '\0';  // abstract namespace: no terminating NUL
  auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket.size() +
                                    (socket[0] == '@' ? 0 : 1));
  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return errno_error("socket for NOTIFY_SOCKET");
  if (::sendto(fd.get(), state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&sa),
               len) < 0)
    return errno_error("notify systemd on " + socket);
  return {};
}

Status sd_notify(const std::string& state) {
  const char* s = std::getenv("NOTIFY_SOCKET");
  return sd_notify_to(s ? s : "", state);
}

}  // namespace acp::daemon
