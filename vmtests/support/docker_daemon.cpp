#include "support/docker_daemon.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "acp/backend/command.hpp"
#include "support/run_fixture.hpp"

namespace acp::vmtest {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string docker_cli() {
  auto p = backend::find_tool("docker");
  return p ? *p : "docker";
}

// Processes whose command line mentions `needle` (the daemon's private dir): its containerd
// and any shim it left.
std::vector<pid_t> processes_mentioning(const std::string& needle) {
  std::vector<pid_t> out;
  DIR* d = ::opendir("/proc");
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (*end != '\0' || pid <= 0 || pid == ::getpid()) continue;
    std::string cmd = slurp("/proc/" + std::string(e->d_name) + "/cmdline");
    std::replace(cmd.begin(), cmd.end(), '\0', ' ');
    if (cmd.find(needle) != std::string::npos) out.push_back(static_cast<pid_t>(pid));
  }
  ::closedir(d);
  return out;
}

// Mount points at or below `dir`, deepest first.
std::vector<std::string> mounts_below(const std::string& dir) {
  std::vector<std::string> out;
  std::ifstream in("/proc/self/mounts");
  std::string dev, mp, rest;
  while (in >> dev >> mp && std::getline(in, rest))
    if (mp.compare(0, dir.size(), dir) == 0) out.push_back(mp);
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.size() > b.size(); });
  return out;
}

}  // namespace

Result<std::unique_ptr<DockerDaemon>> DockerDaemon::start() {
  auto dockerd = backend::find_tool("dockerd");
  if (!dockerd) return make_error("dockerd is not installed (scripts/install-deps.sh: docker.io)");
  if (!backend::find_tool("docker")) return make_error("the docker CLI is not installed");
  std::unique_ptr<DockerDaemon> d(new DockerDaemon());
  char tmpl[] = "/tmp/acp-vmt-docker.XXXXXX";
  if (!::mkdtemp(tmpl)) return errno_error("mkdtemp");
  d->dir_ = tmpl;
  ::chmod(d->dir_.c_str(), 0755);
  d->host_ = "unix://" + d->dir_ + "/docker.sock";
  const std::vector<std::string> argv = {*dockerd,
                                         "--data-root=" + d->dir_ + "/data",
                                         "--exec-root=" + d->dir_ + "/exec",
                                         "--pidfile=" + d->dir_ + "/dockerd.pid",
                                         "--host=" + d->host_,
                                         "--bridge=none",
                                         "--iptables=false",
                                         "--ip-masq=false",
                                         "--userland-proxy=false",
                                         "--log-level=warn"};
  const std::string log = d->dir_ + "/dockerd.log";
  pid_t pid = ::fork();
  if (pid < 0) return errno_error("fork");
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    int nul = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (nul >= 0) ::dup2(nul, 0);
    ::setsid();
    // No DOCKER_HOST of the caller's leaks into the daemon's own clients.
    ::unsetenv("DOCKER_HOST");
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  d->pid_ = pid;
  for (int i = 0; i < 300; ++i) {
    int st = 0;
    if (::waitpid(pid, &st, WNOHANG) == pid) {
      d->pid_ = -1;
      return make_error("dockerd exited at start: " + slurp(log));
    }
    if (d->docker({"version", "--format={{.Server.Version}}"}).status == 0) return d;
    std::this_thread::sleep_for(100ms);
  }
  return make_error("dockerd did not answer within 30 s: " + slurp(log));
}

DockerDaemon::Out DockerDaemon::docker(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {docker_cli(), "-H", host_};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = backend::run_command(argv);
  Out o;
  if (!r) {
    o.out = r.error().message();
    return o;
  }
  o.status = r->exit_code;
  o.out = r->out + r->err;
  return o;
}

Status DockerDaemon::build_image(const std::string& tag,
                                 const std::vector<std::string>& extra) const {
  std::vector<std::string> argv = {"/usr/bin/env", "DOCKER_HOST=" + host_,
                                   std::string(ACP_SOURCE_DIR) + "/scripts/build-agent-image.sh",
                                   "--tag=" + tag};
  for (const auto& e : extra) argv.push_back("--add=" + e);
  auto r = backend::run_command(argv);
  if (!r) return r.error();
  if (r->exit_code != 0) return make_error("build-agent-image.sh: " + r->err + r->out);
  return {};
}

void DockerDaemon::stop() {
  if (dir_.empty()) return;
  if (pid_ > 0) {
    // Whatever a failed test left running goes first, then the daemon (which stops its
    // containerd).
    auto ids = docker({"ps", "-aq"});
    std::istringstream in(ids.out);
    std::string id;
    while (in >> id) (void)docker({"rm", "-f", id});
    ::kill(pid_, SIGTERM);
    bool gone = false;
    for (int i = 0; i < 300 && !gone; ++i) {
      int st = 0;
      gone = ::waitpid(pid_, &st, WNOHANG) == pid_;
      if (!gone) std::this_thread::sleep_for(100ms);
    }
    if (!gone) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    pid_ = -1;
  }
  // containerd and shims started for this daemon (they name its exec-root).
  for (int round = 0; round < 50; ++round) {
    auto left = processes_mentioning(dir_);
    if (left.empty()) break;
    for (pid_t p : left) ::kill(p, round < 20 ? SIGTERM : SIGKILL);
    std::this_thread::sleep_for(100ms);
  }
  for (const auto& m : mounts_below(dir_)) ::umount2(m.c_str(), MNT_DETACH);
  std::error_code ec;
  fs::remove_all(dir_, ec);
  dir_.clear();
}

DockerDaemon::~DockerDaemon() {
  stop();
}

}  // namespace acp::vmtest
