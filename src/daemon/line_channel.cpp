#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "acp/daemon/daemon.hpp"
#include "acp/proxy/control.hpp"
#include "acp/util/json_text.hpp"

namespace acp::daemon {

std::string default_socket_path() {
  return consent::control_run_dir() + "/daemon.sock";
}

Result<UniqueFd> connect_unix(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return errno_error("socket");
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof sa.sun_path) return make_error(path, ENAMETOOLONG);
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
    return errno_error("connect to " + path);
  return fd;
}

Status LineChannel::send(const nlohmann::json& j) {
  std::string out = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::send(fd_.get(), out.data() + done, out.size() - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd_.get(), POLLOUT, 0};
      if (::poll(&p, 1, 10000) <= 0) return make_error("write to the acp daemon", ETIMEDOUT);
      continue;
    }
    return errno_error("write to the acp daemon");
  }
  return {};
}

std::optional<nlohmann::json> LineChannel::take_line() {
  for (;;) {
    auto nl = buf_.find('\n');
    if (nl == std::string::npos) return std::nullopt;
    std::string line = buf_.substr(0, nl);
    buf_.erase(0, nl + 1);
    if (line.empty()) continue;
    auto j = acp::util::parse_json(line);
    if (j.is_discarded()) continue;
    return j;
  }
}

Result<nlohmann::json> LineChannel::receive(std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (auto j = take_line()) return *j;
    if (buf_.size() > consent::kMaxControlLine)
      return make_error("the acp daemon sent a line that is too long", EPROTO);
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    if (left.count() <= 0) return make_error("no answer from the acp daemon", ETIMEDOUT);
    pollfd p{fd_.get(), POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno_error("wait for the acp daemon");
    if (r == 0) continue;
    char chunk[4096];
    ssize_t n = ::read(fd_.get(), chunk, sizeof chunk);
    if (n == 0) return make_error("the acp daemon closed the connection", ECONNRESET);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return errno_error("read from the acp daemon");
    }
    buf_.append(chunk, static_cast<size_t>(n));
  }
}

std::vector<nlohmann::json> LineChannel::receive_available(bool* eof) {
  std::vector<nlohmann::json> out;
  *eof = false;
  for (;;) {
    pollfd p{fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) break;
    char chunk[4096];
    ssize_t n = ::recv(fd_.get(), chunk, sizeof chunk, MSG_DONTWAIT);
    if (n == 0) {
      *eof = true;
      break;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) *eof = true;
      break;
    }
    buf_.append(chunk, static_cast<size_t>(n));
  }
  while (auto j = take_line()) out.push_back(std::move(*j));
  if (buf_.size() > consent::kMaxControlLine) *eof = true;
  return out;
}

}  // namespace acp::daemon
