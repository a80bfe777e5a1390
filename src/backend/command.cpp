#include "acp/backend/command.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "acp/util/unique_fd.hpp"

extern char** environ;

namespace acp::backend {

std::optional<std::string> find_tool(const std::string& name) {
  for (const char* dir : {"/usr/sbin", "/sbin", "/usr/bin", "/bin"}) {
    std::string p = std::string(dir) + "/" + name;
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return std::nullopt;
}

Result<pid_t> spawn_process(const std::vector<std::string>& argv,
                            const posix_spawn_file_actions_t* fds) {
  if (argv.empty()) return make_error("spawn_process: empty argv", EINVAL);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  // Nothing of acp's above stderr reaches the tool: the proxy's and the door's listeners are
  // not close-on-exec (asio opens them), and a tool that outlived acp (docker run) would hold
  // them, with connections queueing where nobody serves them. A caller's actions close them
  // too (run_command adds it after its dup2s).
  posix_spawn_file_actions_t own;
  if (!fds) {
    posix_spawn_file_actions_init(&own);
    posix_spawn_file_actions_addclosefrom_np(&own, 3);
    fds = &own;
  }
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, argv[0].c_str(), fds, &attr, args.data(), environ);
  if (fds == &own) posix_spawn_file_actions_destroy(&own);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return Error{rc, "start " + argv[0]};
  return pid;
}

Result<CommandOutput> run_command(const std::vector<std::string>& argv, const std::string& input) {
  if (argv.empty()) return make_error("run_command: empty argv", EINVAL);
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0) return errno_error("pipe for " + argv[0]);
  UniqueFd in_r(in[0]), in_w(in[1]);
  if (::pipe2(out, O_CLOEXEC) != 0) return errno_error("pipe for " + argv[0]);
  UniqueFd out_r(out[0]), out_w(out[1]);
  if (::pipe2(err, O_CLOEXEC) != 0) return errno_error("pipe for " + argv[0]);
  UniqueFd err_r(err[0]), err_w(err[1]);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in_r.get(), 0);
  posix_spawn_file_actions_adddup2(&fa, out_w.get(), 1);
  posix_spawn_file_actions_adddup2(&fa, err_w.get(), 2);
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  auto pid = spawn_process(argv, &fa);
  posix_spawn_file_actions_destroy(&fa);
  in_r.reset();
  out_w.reset();
  err_w.reset();
  if (!pid) return pid.error();

  CommandOutput res;
  size_t written = 0;
  if (input.empty())
    in_w.reset();
  else
    ::fcntl(in_w.get(), F_SETFL, O_NONBLOCK);  // never block on a tool that stopped reading
  while (out_r || err_r) {
    std::vector<pollfd> pfds;
    if (in_w) pfds.push_back({in_w.get(), POLLOUT, 0});
    if (out_r) pfds.push_back({out_r.get(), POLLIN, 0});
    if (err_r) pfds.push_back({err_r.get(), POLLIN, 0});
    if (::poll(pfds.data(), pfds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (const auto& p : pfds) {
      if (!p.revents) continue;
      if (in_w && p.fd == in_w.get()) {
        ssize_t n = ::write(in_w.get(), input.data() + written, input.size() - written);
        if (n > 0) written += static_cast<size_t>(n);
        if (n < 0 && errno != EINTR && errno != EAGAIN) in_w.reset();  // EPIPE: it stopped reading
        if (written == input.size()) in_w.reset();
        continue;
      }
      UniqueFd& fd = (out_r && p.fd == out_r.get()) ? out_r : err_r;
      std::string& into = &fd == &out_r ? res.out : res.err;
      char buf[4096];
      ssize_t n = ::read(fd.get(), buf, sizeof buf);
      if (n > 0)
        into.append(buf, static_cast<size_t>(n));
      else if (n == 0 || errno != EINTR)
        fd.reset();
    }
  }
  in_w.reset();
  int status = 0;
  while (::waitpid(*pid, &status, 0) < 0) {
    if (errno != EINTR) return errno_error("wait for " + argv[0]);
  }
  res.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return res;
}

}  // namespace acp::backend
