// The client half of the control protocol (acp pending/approve/deny): blocking, one request.
#include <dirent.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "acp/proxy/control.hpp"
#include "acp/util/json_text.hpp"
#include "acp/util/unique_fd.hpp"

namespace acp::consent {

Result<nlohmann::json> control_request(const std::string& path, const nlohmann::json& req) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return errno_error("socket");
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof sa.sun_path)
    return make_error("control socket path too long: " + path, ENAMETOOLONG);
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  timeval tv{10, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
    return errno_error("connect to " + path);
  std::string out = req.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  for (size_t off = 0; off < out.size();) {
    ssize_t n = ::send(fd.get(), out.data() + off, out.size() - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("send to " + path);
    }
    off += static_cast<size_t>(n);
  }
  std::string in;
  char buf[4096];
  for (;;) {
    auto nl = in.find('\n');
    if (nl != std::string::npos) {
      in.resize(nl);
      break;
    }
    if (in.size() > (16u << 20)) return make_error("reply from " + path + " is too long");
    ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return make_error("no reply from " + path + " within 10 s", ETIMEDOUT);
      return errno_error("read from " + path);
    }
    if (n == 0) return make_error(path + " closed the connection without a reply", ECONNRESET);
    in.append(buf, static_cast<size_t>(n));
  }
  auto j = acp::util::parse_json(in);
  if (j.is_discarded() || !j.is_object())
    return make_error("reply from " + path + " is not a JSON object");
  return j;
}

bool parse_duration(const std::string& text, std::chrono::seconds& out) {
  if (text.empty()) return false;
  long long total = 0, num = 0;
  bool have_num = false, any_unit = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c >= '0' && c <= '9') {
      num = num * 10 + (c - '0');
      if (num > 100000000) return false;
      have_num = true;
      continue;
    }
    if (!have_num) return false;
    long long mul = c == 's' ? 1 : c == 'm' ? 60 : c == 'h' ? 3600 : c == 'd' ? 86400 : 0;
    if (mul == 0) return false;
    total += num * mul;
    num = 0;
    have_num = false;
    any_unit = true;
  }
  if (have_num) {
    if (any_unit) return false;  // "1h30" is ambiguous
    total += num;
  }
  if (total <= 0 || total > 366LL * 86400) return false;
  out = std::chrono::seconds(total);
  return true;
}

std::vector<std::string> list_control_sockets(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return {};
  while (auto* e = ::readdir(d)) {
    std::string n = e->d_name;
    bool session_sock =
        n.size() > 13 && n.rfind("control-", 0) == 0 && n.compare(n.size() - 5, 5, ".sock") == 0;
    if (n == "control.sock" || session_sock) names.push_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end(), [](const std::string& a, const std::string& b) {
    if (a == "control.sock" || b == "control.sock") return a == "control.sock" && b != a;
    return a < b;
  });
  std::vector<std::string> out;
  for (auto& n : names) out.push_back(dir + "/" + n);
  return out;
}

}  // namespace acp::consent
