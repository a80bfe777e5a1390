// StdioRelay: `acp mcp -- CMD`, the MCP stdio transport with consent. See mcp_stdio.hpp.
#include "acp/proxy/mcp_stdio.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <string_view>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "acp/proxy/mcp.hpp"
#include "acp/util/unique_fd.hpp"

extern char** environ;

namespace acp::mcp {

namespace {

namespace asio = boost::asio;
using boost::system::error_code;
using Descriptor = asio::posix::stream_descriptor;

auto redirect(error_code& ec) {
  return asio::redirect_error(asio::use_awaitable, ec);
}

constexpr size_t kChunk = 64 * 1024;

std::string base_name(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

class Impl final : public StdioRelay {
 public:
  Impl(asio::io_context& io, StdioOptions opts, RequestJudge& judge)
      : io_(io),
        opts_(std::move(opts)),
        judge_(judge),
        client_in_(io),
        client_out_(io),
        server_in_(io),
        server_out_(io),
        pidfd_(io) {}

  ~Impl() override {
    error_code ec;
    for (Descriptor* d : {&client_in_, &client_out_, &server_in_, &server_out_, &pidfd_})
      d->close(ec);
  }

  Status start() {
    if (opts_.command.empty()) return make_error("no MCP server command given");
    if (opts_.server_name.empty()) opts_.server_name = base_name(opts_.command.front());
    int to_server[2], from_server[2];
    if (::pipe2(to_server, O_CLOEXEC) != 0) return errno_error("pipe");
    UniqueFd ts_r(to_server[0]), ts_w(to_server[1]);
    if (::pipe2(from_server, O_CLOEXEC) != 0) return errno_error("pipe");
    UniqueFd fs_r(from_server[0]), fs_w(from_server[1]);

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, ts_r.get(), 0);
    posix_spawn_file_actions_adddup2(&fa, fs_w.get(), 1);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    // The server starts with default signal dispositions (acp ignores SIGPIPE) and no mask.
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    std::vector<char*> argv;
    for (auto& a : opts_.command) argv.push_back(a.data());
    argv.push_back(nullptr);
    int rc = ::posix_spawnp(&pid_, argv[0], &fa, &attr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
      if (rc == ENOENT) return make_error(opts_.command.front() + ": command not found", rc);
      return make_error(opts_.command.front() + ": cannot run: " + std::strerror(rc), rc);
    }
    int pfd = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
    if (pfd < 0) {
      Error e = errno_error("pidfd_open");
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      return e;
    }
    pidfd_.assign(pfd);
    server_in_.assign(ts_w.release());
    server_out_.assign(fs_r.release());
    // The client's fds are duplicated: closing ours never closes the caller's 0 and 1.
    int cin = ::fcntl(opts_.client_in, F_DUPFD_CLOEXEC, 3);
    int cout = ::fcntl(opts_.client_out, F_DUPFD_CLOEXEC, 3);
    if (cin < 0 || cout < 0) {
      if (cin >= 0) ::close(cin);
      if (cout >= 0) ::close(cout);
      return errno_error("dup stdin/stdout");
    }
    client_in_.assign(cin);
    client_out_.assign(cout);
    // ts_r and fs_w close here: the server holds its ends.
    asio::co_spawn(io_, client_to_server(), asio::detached);
    asio::co_spawn(io_, server_to_client(), asio::detached);
    asio::co_spawn(io_, wait_exit(), asio::detached);
    return {};
  }

  void on_exit(std::function<void(int)> cb) override {
    on_exit_ = std::move(cb);
    maybe_finish();
  }

  void forward_signal(int sig) override {
    if (exited_ || !pidfd_.is_open()) return;
    ::syscall(SYS_pidfd_send_signal, pidfd_.native_handle(), sig, nullptr, 0);
  }

  pid_t server_pid() const override { return pid_; }
  const std::string& server_name() const override { return opts_.server_name; }

 private:
  // Client -> server, one line at a time, in order: a line waiting for a human holds back the
  // lines behind it (the order the server sees stays the order the client sent).
  asio::awaitable<void> client_to_server() {
    std::string pending;
    size_t scanned = 0;
    bool discarding = false;  // the rest of an oversized line
    std::unique_ptr<char[]> buf(new char[kChunk]);
    error_code ec;
    for (;;) {
      size_t n = co_await client_in_.async_read_some(asio::buffer(buf.get(), kChunk), redirect(ec));
      if (ec) break;
      pending.append(buf.get(), n);
      size_t start = 0;
      for (;;) {
        size_t nl = pending.find('\n', std::max(start, scanned));
        if (nl == std::string::npos) break;
        std::string_view line(pending.data() + start, nl + 1 - start);
        start = nl + 1;
        if (discarding) {
          discarding = false;
          continue;
        }
        if (!co_await pass_line(line)) co_return;
      }
      pending.erase(0, start);
      scanned = pending.size();
      if (pending.size() > kMaxStdioLineBytes) {
        refuse_oversized();
        pending.clear();
        scanned = 0;
        discarding = true;
      }
    }
    // End of the client's input: a last line without its newline is still a line.
    if (!pending.empty() && !discarding) co_await pass_line(pending);
    server_in_.close(ec);  // the server sees end of input
  }

  asio::awaitable<bool> pass_line(std::string_view line) {
    std::string_view msg = line;
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == '\r')) msg.remove_suffix(1);
    Inspection in = inspect(msg);
    // A CR inside a line: servers that read with universal newlines (Python's TextIOWrapper,
    // the SDK's stdio) split the line there and would run a message ACP never judged.
    if (msg.find('\r') != std::string_view::npos) {
      in = Inspection{};
      in.kind = Inspection::Kind::Invalid;
      in.reason = "a carriage return inside the line (servers split lines there)";
    }
    if (in.kind == Inspection::Kind::ToolCalls || in.kind == Inspection::Kind::Invalid) {
      auto out = co_await judge_message(in, opts_.server_name, opts_.session,
                                        [this](Action a) { return judge_.judge(std::move(a)); });
      if (!out.forward) {
        std::fprintf(stderr, "acp mcp: refused%s: %s\n",
                     out.request_id.empty() ? "" : (" (request " + out.request_id + ")").c_str(),
                     out.reason.c_str());
        if (!out.reply.empty()) emit_own(out.reply + "\n");
        co_return true;
      }
    }
    error_code ec;
    co_await asio::async_write(server_in_, asio::buffer(line.data(), line.size()), redirect(ec));
    co_return !ec;
  }

  void refuse_oversized() {
    const std::string why = "a message over " + std::to_string(kMaxStdioLineBytes) +
                            " bytes is not forwarded: ACP cannot inspect it";
    std::fprintf(stderr, "acp mcp: refused: %s\n", why.c_str());
    emit_own(canonical_json(
                 error_response(nullptr, kCodeUninspectable, "ACP refused: " + why, why, {})) +
             "\n");
  }

  // Server -> client, byte for byte.
  asio::awaitable<void> server_to_client() {
    std::unique_ptr<char[]> buf(new char[kChunk]);
    error_code ec;
    for (;;) {
      size_t n =
          co_await server_out_.async_read_some(asio::buffer(buf.get(), kChunk), redirect(ec));
      if (ec) break;
      push_server(std::string(buf.get(), n));
    }
    server_eof_ = true;
    for (auto& h : held_) enqueue(std::move(h));
    held_.clear();
    maybe_finish();
  }

  // ACP's own lines go in only where the server's stream is between two lines.
  void push_server(std::string chunk) {
    if (chunk.empty()) return;
    if (held_.empty()) {
      at_line_start_ = chunk.back() == '\n';
      enqueue(std::move(chunk));
      return;
    }
    size_t last = chunk.rfind('\n');
    if (last == std::string::npos) {
      at_line_start_ = false;
      enqueue(std::move(chunk));
      return;
    }
    std::string rest = chunk.substr(last + 1);
    chunk.resize(last + 1);
    enqueue(std::move(chunk));
    for (auto& h : held_) enqueue(std::move(h));
    held_.clear();
    at_line_start_ = rest.empty();
    if (!rest.empty()) enqueue(std::move(rest));
  }

  void emit_own(std::string line) {
    if (at_line_start_ || server_eof_) {
      enqueue(std::move(line));
    } else {
      held_.push_back(std::move(line));
    }
  }

  void enqueue(std::string s) {
    if (client_gone_) return;
    queue_.push_back(std::move(s));
    if (!writing_) {
      writing_ = true;
      asio::co_spawn(io_, drain(), asio::detached);
    }
  }

  asio::awaitable<void> drain() {
    error_code ec;
    while (!queue_.empty()) {
      std::string s = std::move(queue_.front());
      queue_.pop_front();
      co_await asio::async_write(client_out_, asio::buffer(s), redirect(ec));
      if (ec) {
        client_gone_ = true;  // the client stopped reading: the server's output is dropped
        queue_.clear();
      }
    }
    writing_ = false;
    maybe_finish();
  }

  asio::awaitable<void> wait_exit() {
    error_code ec;
    co_await pidfd_.async_wait(Descriptor::wait_read, redirect(ec));
    int st = 0;
    pid_t r;
    do {
      r = ::waitpid(pid_, &st, 0);
    } while (r < 0 && errno == EINTR);
    status_ = r < 0             ? 125
              : WIFEXITED(st)   ? WEXITSTATUS(st)
              : WIFSIGNALED(st) ? 128 + WTERMSIG(st)
                                : 125;
    exited_ = true;
    maybe_finish();
  }

  void maybe_finish() {
    if (reported_ || !exited_ || !server_eof_ || writing_ || !on_exit_) return;
    reported_ = true;
    asio::post(io_, [cb = on_exit_, s = status_] { cb(s); });
  }

  asio::io_context& io_;
  StdioOptions opts_;
  RequestJudge& judge_;
  Descriptor client_in_, client_out_, server_in_, server_out_, pidfd_;
  pid_t pid_ = -1;
  std::deque<std::string> queue_;
  std::vector<std::string> held_;
  bool writing_ = false, at_line_start_ = true, client_gone_ = false;
  bool server_eof_ = false, exited_ = false, reported_ = false;
  int status_ = 0;
  std::function<void(int)> on_exit_;
};

}  // namespace

Result<std::unique_ptr<StdioRelay>> StdioRelay::start(asio::io_context& io, StdioOptions opts,
                                                      RequestJudge& judge) {
  auto r = std::make_unique<Impl>(io, std::move(opts), judge);
  if (auto st = r->start(); !st) return st.error();
  return std::unique_ptr<StdioRelay>(std::move(r));
}

}  // namespace acp::mcp
