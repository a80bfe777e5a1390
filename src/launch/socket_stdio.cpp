#include "acp/launch/socket_stdio.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "acp/util/unique_fd.hpp"

namespace acp::launch {
namespace {

const char* fd_name(int fd) {
  return fd == 0 ? "stdin" : fd == 1 ? "stdout" : "stderr";
}

// A pipe end at fd >= 3, close-on-exec: fds 0..2 are the ones being replaced.
Result<UniqueFd> above_stdio(int fd) {
  UniqueFd orig(fd);
  if (fd >= 3) return orig;
  int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (moved < 0) return errno_error("move a relay pipe above fd 2");
  return UniqueFd(moved);
}

// One direction: from `src` to `dst`, one of them a socket of acp's caller (used with per-call
// MSG_DONTWAIT, never made non-blocking: its file description is shared with the caller), the
// other acp's end of the agent's pipe (non-blocking).
struct Relay {
  int stdio_fd;        // 0, 1 or 2
  bool into_agent;     // socket -> pipe (fd 0) or pipe -> socket (fds 1, 2)
  bool datagram;       // a zero-length read is a datagram, not the end
  UniqueFd agent_end;  // given to the agent, closed here by start()
  UniqueFd own_end;    // acp's end of the pipe
  std::thread thread;
  bool done = false;  // under the mutex
};

class SocketStdioImpl final : public SocketStdio {
 public:
  ~SocketStdioImpl() override { stop_and_join(); }

  Status add(int fd, const std::vector<std::pair<int, struct stat>>& seen) {
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return {};
    int listening = 0;
    socklen_t len = sizeof listening;
    if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening)
      return make_error(std::string("fd ") + std::to_string(fd) + " (" + fd_name(fd) +
                        ") is a listening socket: acp cannot relay it through a pipe, and the "
                        "agent must not accept connections outside its cgroup; give the agent "
                        "a file, a pipe or a terminal there (e.g. <dev/null)");
    // stderr on the same socket as stdout (2>&1): the same pipe and relay, order kept.
    if (fd == 2)
      for (const auto& [other, ost] : seen)
        if (other == 1 && ost.st_dev == st.st_dev && ost.st_ino == st.st_ino && agent_[1] >= 0) {
          agent_[2] = agent_[1];
          return {};
        }
    int type = 0;
    len = sizeof type;
    (void)::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len);
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0)
      return errno_error(std::string("make a pipe to relay ") + fd_name(fd));
    auto r = above_stdio(p[0]);
    auto w = above_stdio(p[1]);
    if (!r) return r.error();
    if (!w) return w.error();
    auto relay = std::make_unique<Relay>();
    relay->stdio_fd = fd;
    relay->into_agent = fd == 0;
    relay->datagram = type == SOCK_DGRAM;
    relay->agent_end = relay->into_agent ? std::move(*r) : std::move(*w);
    relay->own_end = relay->into_agent ? std::move(*w) : std::move(*r);
    int fl = ::fcntl(relay->own_end.get(), F_GETFL);
    ::fcntl(relay->own_end.get(), F_SETFL, fl | O_NONBLOCK);
    agent_[fd] = relay->agent_end.get();
    relays_.push_back(std::move(relay));
    return {};
  }

  Status init() {
    stop_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!stop_) return errno_error("make the stdio relay's eventfd");
    return {};
  }

  int agent_fd(int fd) const override { return fd >= 0 && fd < 3 ? agent_[fd] : -1; }
  bool relaying() const override { return !relays_.empty(); }

  void start() override {
    for (auto& r : relays_) {
      r->agent_end.reset();
      Relay* rp = r.get();
      r->thread = std::thread([this, rp] { run(*rp); });
    }
  }

  void finish(std::chrono::milliseconds limit) override {
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, limit, [&] {
        for (const auto& r : relays_)
          if (!r->into_agent && r->thread.joinable() && !r->done) return false;
        return true;
      });
    }
    stop_and_join();
  }

 private:
  void stop_and_join() {
    if (stop_) {
      uint64_t one = 1;
      (void)!::write(stop_.get(), &one, sizeof one);
    }
    for (auto& r : relays_)
      if (r->thread.joinable()) r->thread.join();
  }

  // Waits until `fd` is ready for `events`; false when acp stops relaying.
  bool wait(int fd, short events) {
    for (;;) {
      pollfd p[2] = {{fd, events, 0}, {stop_.get(), POLLIN, 0}};
      int n = ::poll(p, 2, -1);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 || p[1].revents) return false;
      if (p[0].revents) return true;
    }
  }

  void run(Relay& r) {
    const int socket_fd = r.stdio_fd;
    const int src = r.into_agent ? socket_fd : r.own_end.get();
    const int dst = r.into_agent ? r.own_end.get() : socket_fd;
    std::array<char, 65536> buf;
    bool open = true;
    while (open && wait(src, POLLIN)) {
      ssize_t n = r.into_agent ? ::recv(src, buf.data(), buf.size(), MSG_DONTWAIT)
                               : ::read(src, buf.data(), buf.size());
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) continue;
        break;  // the socket failed: the agent sees the end of its input
      }
      if (n == 0) {
        if (r.datagram && r.into_agent) continue;
        break;  // end of input / every writer of the agent's pipe is gone
      }
      for (ssize_t off = 0; off < n;) {
        ssize_t w = r.into_agent ? ::write(dst, buf.data() + off, static_cast<size_t>(n - off))
                                 : ::send(dst, buf.data() + off, static_cast<size_t>(n - off),
                                          MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w >= 0) {
          off += w;
          continue;
        }
        if (errno == EINTR) continue;
        if ((errno == EAGAIN || errno == EWOULDBLOCK) && wait(dst, POLLOUT)) continue;
        open = false;  // the reader went away (or acp stops): the agent's writes now fail
        break;
      }
    }
    r.own_end.reset();  // fd 0: the agent reads EOF; fds 1, 2: its writes get EPIPE
    std::lock_guard lock(mu_);
    r.done = true;
    cv_.notify_all();
  }

  std::array<int, 3> agent_{-1, -1, -1};
  std::vector<std::unique_ptr<Relay>> relays_;
  UniqueFd stop_;
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace

Result<std::unique_ptr<SocketStdio>> SocketStdio::prepare() {
  auto s = std::make_unique<SocketStdioImpl>();
  std::vector<std::pair<int, struct stat>> seen;
  for (int fd = 0; fd < 3; ++fd) {
    if (auto st = s->add(fd, seen); !st) return st.error();
    struct stat st {};
    if (::fstat(fd, &st) == 0) seen.emplace_back(fd, st);
  }
  if (s->relaying())
    if (auto st = s->init(); !st) return st.error();
  return std::unique_ptr<SocketStdio>(std::move(s));
}

}  // namespace acp::launch
