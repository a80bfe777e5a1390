// The prompt channel (acp/proxy/prompt_channel.hpp).
#include "acp/proxy/prompt_channel.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <deque>
#include <optional>

#include "acp/proxy/display.hpp"

namespace acp::consent {

namespace asio = boost::asio;

namespace {

constexpr std::chrono::seconds kTenMinutes{600};
// Bytes of one piece of agent text the prompt prints (a pty takes about 4 KiB at once).
constexpr std::size_t kMaxShown = 1000;

std::string trim_lower(std::string s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\r' || s.back() == '\t')) s.pop_back();
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.erase(0, 1);
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

struct PromptChannel::State : std::enable_shared_from_this<State> {
  State(asio::io_context& i, ConsentGate& g, PromptSettings st)
      : io(i), gate(g), s(std::move(st)), tick(i) {}
  asio::io_context& io;
  ConsentGate& gate;
  PromptSettings s;
  std::optional<asio::posix::stream_descriptor> tty;
  asio::steady_timer tick;
  bool stopped = false;
  std::deque<PendingInfo> queue;  // front: the request being asked
  std::string shown_id;           // the request whose full text was printed last
  std::string line;
  char buf[256];

  // Non-blocking: a terminal that does not take the text now loses it (never stalls acp).
  void print(const std::string& text) {
    if (!tty) return;
    (void)!::write(tty->native_handle(), text.data(), text.size());
  }

  // The request in full (summary(), as on the page; never cut), once when it comes to the
  // front of the queue, then a short countdown line redrawn every second. Nothing the agent
  // chose reaches the terminal unescaped: visible() leaves no control character in it.
  void show() {
    if (queue.empty()) return;
    const PendingInfo& p = queue.front();
    if (p.id != shown_id) {
      shown_id = p.id;
      // Writes never block (see print()): a request larger than a terminal takes at once is
      // cut here, saying so, rather than lost silently in a full buffer.
      const std::string how = "acp pending " + p.id + " --full, or the web page";
      auto bounded = [&](const std::string& shown) { return clip(shown, kMaxShown, how); };
      std::string agent = s.ctx.agent_command.empty()
                              ? "the agent"
                              : "agent `" + bounded(visible(s.ctx.agent_command)) + "`";
      const auto reach = approval_reach(p.action, kTenMinutes);
      print("\r\033[K[acp] " + agent + " wants " + bounded(summary(p.action)) + " (rule " +
            bounded(visible(p.rule_text)) + ") [request " + p.id + "]\n" + "      [y] covers " +
            reach.once + "\n      [t] covers " + bounded(reach.duration) + "\n      [s] covers " +
            bounded(reach.session) + "\n");
    }
    auto left = std::chrono::duration_cast<std::chrono::seconds>(p.expires -
                                                                 std::chrono::system_clock::now())
                    .count();
    std::string more =
        queue.size() > 1 ? " [+" + std::to_string(queue.size() - 1) + " waiting]" : "";
    print("\r\033[K[acp] " + p.id + ": Allow? [y]es once / [t]en minutes / [s]ession / [n]o (" +
          std::to_string(std::max<long long>(0, left)) + "s)" + more + " ");
  }

  void arm_tick() {
    tick.expires_after(std::chrono::seconds(1));
    tick.async_wait([w = weak_from_this()](boost::system::error_code ec) {
      auto self = w.lock();
      if (ec || !self || self->stopped) return;
      self->show();
      self->arm_tick();
    });
  }

  void read() {
    tty->async_read_some(
        asio::buffer(buf), [w = weak_from_this()](boost::system::error_code ec, size_t n) {
          auto self = w.lock();
          if (!self || self->stopped) return;
          if (ec) return;  // the terminal went away: other channels or the timeout decide
          for (size_t i = 0; i < n; ++i) {
            if (self->buf[i] == '\n') {
              self->handle_line(trim_lower(self->line));
              self->line.clear();
            } else if (self->line.size() < 64) {
              self->line += self->buf[i];
            }
          }
          self->read();
        });
  }

  void handle_line(const std::string& in) {
    if (queue.empty() || in.empty()) return;
    const std::string id = queue.front().id;
    Answer a;
    a.by = "prompt";
    std::string said;
    if (in == "y" || in == "yes") {
      a.approve = true;
      said = "approved once";
    } else if (in == "t") {
      a.approve = true;
      a.scope = Scope::Duration;
      a.duration = kTenMinutes;
      said = "approved for 10 minutes";
    } else if (in == "s") {
      a.approve = true;
      a.scope = Scope::Session;
      said = "approved for this session";
    } else if (in == "n" || in == "no") {
      a.approve = false;
      a.reason = "denied at the terminal";
      said = "denied";
    } else {
      print("\r\033[K[acp] answer y, t, s or n\n");
      show();
      return;
    }
    queue.pop_front();  // before answer(): on_resolved must not report it as "elsewhere"
    if (auto st = gate.answer(id, a); !st)
      print("\r\033[K[acp] " + id + ": " + visible(st.error().message()) + "\n");
    else
      print("\r\033[K[acp] " + id + ": " + said + "\n");
    show();
  }
};

PromptChannel::PromptChannel(asio::io_context& io, ConsentGate& gate, PromptSettings s)
    : s_(std::make_shared<State>(io, gate, std::move(s))) {}

PromptChannel::~PromptChannel() {
  stop();
}

Status PromptChannel::start() {
  auto& st = *s_;
  int fd = ::open(st.s.tty_path.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    return errno_error("cannot open " + st.s.tty_path +
                       " (the prompt channel needs acp to run on a terminal; use the web page, "
                       "the webhook or Telegram otherwise)");
  struct stat tty_st {};
  if (::fstat(fd, &tty_st) != 0 || !S_ISCHR(tty_st.st_mode) || !::isatty(fd)) {
    ::close(fd);
    return make_error(st.s.tty_path + " is not a terminal");
  }
  for (int afd : st.s.agent_fds) {
    struct stat a {};
    if (::fstat(afd, &a) == 0 && S_ISCHR(a.st_mode) && a.st_rdev == tty_st.st_rdev) {
      const char* names[] = {"stdin", "stdout", "stderr"};
      std::string which = afd >= 0 && afd <= 2 ? names[afd] : "fd " + std::to_string(afd);
      ::close(fd);
      return make_error(
          "the prompt channel asks on this terminal, but the agent's " + which +
          " is the same terminal: the agent could read the answer or type one itself. Use the "
          "web page (channels.web) or another channel, or give the agent no terminal, e.g. "
          "`sudo acp run ... -- AGENT </dev/null >agent.log 2>&1`, or run acp in another "
          "terminal than the agent's");
    }
  }
  st.tty.emplace(st.io, fd);
  st.read();
  return {};
}

void PromptChannel::stop() {
  auto& st = *s_;
  if (st.stopped) return;
  st.stopped = true;
  st.tick.cancel();
  if (st.tty) {
    if (!st.queue.empty()) st.print("\r\033[K");
    boost::system::error_code ec;
    st.tty->close(ec);
    st.tty.reset();
  }
  st.queue.clear();
}

std::string PromptChannel::describe() const {
  return "prompt: on " + s_->s.tty_path;
}

void PromptChannel::on_request(const PendingInfo& p) {
  auto& st = *s_;
  if (st.stopped || !st.tty) return;
  st.queue.push_back(p);
  if (st.queue.size() == 1) {
    st.print("\n");
    st.show();
    st.arm_tick();
  } else {
    st.show();
  }
}

void PromptChannel::on_resolved(const PendingInfo& p, const ConsentOutcome& o) {
  auto& st = *s_;
  if (st.stopped) return;
  for (auto it = st.queue.begin(); it != st.queue.end(); ++it) {
    if (it->id != p.id) continue;
    const bool current = it == st.queue.begin();
    st.queue.erase(it);
    if (current) {
      std::string how = o.approved                  ? "approved elsewhere"
                        : o.decided_by == "timeout" ? "timed out: denied"
                                                    : "denied elsewhere";
      st.print("\r\033[K[acp] " + p.id + " (" + summary(p.action) + "): " + how + "\n");
      st.show();
    }
    break;
  }
  if (st.queue.empty()) st.tick.cancel();
}

}  // namespace acp::consent
