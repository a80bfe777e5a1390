#include "support/wall_fixture.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <atomic>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "acp/backend/iptables_wall.hpp"
#include "acp/cgroup/mounts.hpp"
#include "acp/kernel/bpffs.hpp"
#include "acp/kernel/pinned_session.hpp"
#include "acp/kernel/probe.hpp"
#include "acp/launch/agent_launcher.hpp"

namespace acp::vmtest {
namespace {

std::atomic<int> g_seq{0};

std::string unique_tag() {
  return std::to_string(::getpid()) + "-" + std::to_string(g_seq++);
}

}  // namespace

bool sh(const std::string& cmd) {
  return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0;
}

Result<BoundSocket> bind_socket(int type, const std::string& addr, uint16_t port) {
  sockaddr_storage ss{};
  socklen_t len;
  int family;
  if (addr.find(':') != std::string::npos) {
    auto* s = reinterpret_cast<sockaddr_in6*>(&ss);
    family = s->sin6_family = AF_INET6;
    s->sin6_port = htons(port);
    if (inet_pton(AF_INET6, addr.c_str(), &s->sin6_addr) != 1)
      return make_error("bad address " + addr);
    len = sizeof(*s);
  } else {
    auto* s = reinterpret_cast<sockaddr_in*>(&ss);
    family = s->sin_family = AF_INET;
    s->sin_port = htons(port);
    if (inet_pton(AF_INET, addr.c_str(), &s->sin_addr) != 1)
      return make_error("bad address " + addr);
    len = sizeof(*s);
  }
  BoundSocket b;
  b.fd = UniqueFd(::socket(family, type | SOCK_CLOEXEC, 0));
  if (!b.fd.valid()) return errno_error("socket for " + addr);
  if (family == AF_INET6) {
    int one = 1;
    ::setsockopt(b.fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  }
  if (::bind(b.fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0)
    return errno_error("bind " + addr + ":" + std::to_string(port));
  if (type == SOCK_STREAM && ::listen(b.fd.get(), 128) != 0) return errno_error("listen " + addr);
  len = sizeof(ss);
  ::getsockname(b.fd.get(), reinterpret_cast<sockaddr*>(&ss), &len);
  b.port = ntohs(family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                   : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return b;
}

Result<std::pair<BoundSocket, BoundSocket>> bind_loopback_pair(int type) {
  Error last = make_error("no free port pair on 127.0.0.1 and [::1]");
  for (int i = 0; i < 50; i++) {
    auto v4 = bind_socket(type, "127.0.0.1");
    if (!v4) return v4.error();
    auto v6 = bind_socket(type, "::1", v4->port);
    if (v6) return std::make_pair(std::move(*v4), std::move(*v6));
    last = v6.error();
  }
  return last;
}

Responder::Responder() : wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  thread_ = std::thread([this] { loop(); });
}

Responder::~Responder() {
  stop_ = true;
  uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof(one));
  thread_.join();
}

void Responder::serve(BoundSocket s) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    socks_.push_back(std::move(s.fd));
  }
  uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof(one));
}

void Responder::loop() {
  static const char kReply[] =
      "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";
  while (!stop_) {
    std::vector<pollfd> pfds{{wake_.get(), POLLIN, 0}};
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& s : socks_) pfds.push_back({s.get(), POLLIN, 0});
    }
    if (::poll(pfds.data(), pfds.size(), -1) < 0) continue;
    if (pfds[0].revents) {
      uint64_t v;
      (void)!::read(wake_.get(), &v, sizeof(v));
    }
    for (size_t i = 1; i < pfds.size(); i++) {
      if (!(pfds[i].revents & POLLIN)) continue;
      int type = 0;
      socklen_t tl = sizeof(type);
      ::getsockopt(pfds[i].fd, SOL_SOCKET, SO_TYPE, &type, &tl);
      if (type == SOCK_DGRAM) {
        char buf[2048];
        while (::recv(pfds[i].fd, buf, sizeof(buf), MSG_DONTWAIT) > 0) {
        }
        continue;
      }
      UniqueFd c(::accept4(pfds[i].fd, nullptr, nullptr, SOCK_CLOEXEC));
      if (!c.valid()) continue;
      accepted_++;
      // Read the request head (bounded: 2 s, 8 KiB), answer, close. A client that only
      // connects and closes gets its answer written into a closed socket: harmless.
      std::string req;
      char buf[1024];
      for (int n = 0; n < 8 && req.find("\r\n\r\n") == std::string::npos && req.size() < 8192;
           n++) {
        pollfd p{c.get(), POLLIN, 0};
        if (::poll(&p, 1, 250) <= 0) continue;
        ssize_t r = ::recv(c.get(), buf, sizeof(buf), 0);
        if (r <= 0) break;
        req.append(buf, static_cast<size_t>(r));
      }
      if (!req.empty()) (void)!::send(c.get(), kReply, sizeof(kReply) - 1, MSG_NOSIGNAL);
    }
  }
}

Result<std::unique_ptr<ScratchCgroup>> ScratchCgroup::create() {
  auto root = cgroup2_mount_point();
  if (!root) return root.error();
  auto cg = Cgroup::create(*root + "/acp-vmt-" + unique_tag());
  if (!cg) return cg.error();
  return std::unique_ptr<ScratchCgroup>(new ScratchCgroup(std::move(*cg)));
}

ScratchCgroup::~ScratchCgroup() {
  (void)cg_.kill_all(std::chrono::seconds(5));
  (void)cg_.remove();
}

const char* backend_name(WallBackend b) {
  return b == WallBackend::kBpf ? "bpf" : "iptables";
}

bool wall_backend_supported(WallBackend b, std::string* why) {
  if (b == WallBackend::kBpf) return kernel::bpf_backend_supported(why);
  return backend::iptables_backend_supported(why);
}

Result<std::unique_ptr<TestWall>> TestWall::create(const std::vector<kernel::Endpoint>& allow,
                                                   acp_mode mode, WallBackend backend) {
  auto cg = ScratchCgroup::create();
  if (!cg) return cg.error();
  std::unique_ptr<TestWall> w(new TestWall(std::move(*cg), backend));
  if (backend == WallBackend::kIptables) {
    if (mode != ACP_MODE_ENFORCE) return make_error("the iptables backend has no audit mode");
    auto root = cgroup2_mount_point();
    if (!root) return root.error();
    auto rel = backend::cgroup_match_path(w->path(), *root);
    if (!rel) return rel.error();
    // ACPT-, not ACP-: `acp gc` of a concurrent session must never take a test's chain for an
    // orphaned session's.
    w->chain_ = "ACPT-" + unique_tag();
    if (auto st = backend::install_iptables_wall({w->chain_, *rel, allow}); !st) {
      w->chain_.clear();
      return st.error();
    }
    return w;
  }
  static std::atomic<uint32_t> n{0};
  uint64_t id = 0xac97000000000000ull | (static_cast<uint64_t>(::getpid()) << 16) | n++;
  auto progs = kernel::SockPrograms::load({static_cast<uint32_t>(mode), id});
  if (!progs) return progs.error();
  for (const auto& ep : allow)
    if (auto st = progs->allow(ep); !st) return st.error();
  if (auto st = progs->attach(w->cg_->fd()); !st) return st.error();
  auto dir = kernel::session_pin_dir("acpt-" + unique_tag());
  if (!dir) return dir.error();
  if (auto st = progs->pin(*dir); !st) {
    (void)kernel::detach_and_unpin(*dir);
    return st.error();
  }
  w->progs_.emplace(std::move(*progs));
  w->pin_dir_ = *dir;
  w->session_id_ = id;
  return w;
}

TestWall::~TestWall() {
  (void)cg_->cgroup().kill_all(std::chrono::seconds(5));
  if (!pin_dir_.empty()) (void)kernel::detach_and_unpin(pin_dir_);
  if (!chain_.empty()) (void)backend::remove_iptables_wall(chain_);
  // progs_ and then the cgroup go with the members.
}

std::string RunResult::value(const std::string& key) const {
  std::istringstream in(out);
  std::string line, found;
  while (std::getline(in, line))
    if (line.rfind(key + "=", 0) == 0) found = line.substr(key.size() + 1);
  return found;
}

RunResult run_in(int cgroup_fd, const std::string& cgroup_path, std::vector<std::string> argv,
                 uid_t uid, std::vector<std::string> env, bool bpf_only) {
  RunResult r;
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return r;
  UniqueFd rd(p[0]), wr(p[1]);
  launch::AgentSpec spec;
  spec.argv = std::move(argv);
  spec.env = {"PATH=/usr/bin:/bin", "LC_ALL=C", "HOME=/tmp"};
  spec.env.insert(spec.env.end(), env.begin(), env.end());
  spec.uid = uid;
  spec.gid = uid == 0 ? 0 : kNogroup;
  spec.groups = {spec.gid};
  spec.cgroup_fd = cgroup_fd;
  spec.cgroup_path = cgroup_path;
  spec.no_new_privs = true;
  spec.socket_filter = !bpf_only;
  spec.contain_root = !bpf_only;
  spec.stdout_fd = wr.get();
  spec.stderr_fd = wr.get();
  auto agent = launch::spawn_agent(spec);
  wr.reset();
  if (!agent) {
    r.out = "spawn failed: " + agent.error().message();
    return r;
  }
  char buf[4096];
  ssize_t n;
  while ((n = ::read(rd.get(), buf, sizeof(buf))) > 0) r.out.append(buf, static_cast<size_t>(n));
  auto code = launch::wait_agent(*agent);
  r.code = code ? *code : -1;
  return r;
}

Result<std::unique_ptr<SysctlOverride>> SysctlOverride::set(const std::string& name,
                                                            const std::string& value) {
  std::string path = "/proc/sys/" + name;
  for (size_t i = 10; i < path.size(); i++)
    if (path[i] == '.') path[i] = '/';
  std::ifstream in(path);
  if (!in) return errno_error("read " + path);
  std::string old;
  std::getline(in, old);
  std::unique_ptr<SysctlOverride> o(new SysctlOverride(path, old));
  std::ofstream out(path);
  out << value << "\n";
  out.flush();
  if (!out) {
    o->old_.clear();  // nothing to restore
    return errno_error("write " + value + " to " + path);
  }
  return o;
}

SysctlOverride::~SysctlOverride() {
  if (old_.empty()) return;
  std::ofstream out(path_);
  out << old_ << "\n";
}

Result<std::unique_ptr<NetnsHost>> NetnsHost::create() {
  std::unique_ptr<NetnsHost> h(new NetnsHost());
  // A second host at once (a test with a pod and an origin) gets its own names and networks:
  // 10.(200+k).<net>.0/30, fd00:acb:<k><net>::/64.
  static std::atomic<int> live{0};
  const int k = live.fetch_add(1) % 8;
  h->live_ = &live;
  const std::string pid = std::to_string(::getpid());
  const std::string tag = k == 0 ? "" : std::to_string(k);
  const int net = static_cast<int>(::getpid() % 250) + 1;  // 10.200.<net>.0/30
  h->name_ = "acpt-" + pid + (k == 0 ? "" : "-" + tag);
  h->veth_host_ = "acpt" + pid + tag + "h";
  const std::string veth_ns = "acpt" + pid + tag + "n";
  const std::string n = std::to_string(net);
  const std::string n6 = (k == 0 ? "" : tag) + n;
  const std::string a4 = "10." + std::to_string(200 + k) + "." + n;
  h->addr4_ = a4 + ".2";
  h->addr6_ = "fd00:acb:" + n6 + "::2";
  h->host_addr4_ = a4 + ".1";
  h->host_addr6_ = "fd00:acb:" + n6 + "::1";
  const std::string ns = "ip netns exec " + h->name_ + " ";
  const std::vector<std::string> steps = {
      "ip netns add " + h->name_,
      "ip link add " + h->veth_host_ + " type veth peer name " + veth_ns,
      "ip link set " + veth_ns + " netns " + h->name_,
      "ip addr add " + h->host_addr4_ + "/30 dev " + h->veth_host_,
      "ip -6 addr add " + h->host_addr6_ + "/64 dev " + h->veth_host_ + " nodad",
      "ip link set " + h->veth_host_ + " up",
      ns + "ip addr add " + h->addr4_ + "/30 dev " + veth_ns,
      ns + "ip -6 addr add " + h->addr6_ + "/64 dev " + veth_ns + " nodad",
      ns + "ip link set " + veth_ns + " up",
      ns + "ip link set lo up",
  };
  for (const auto& s : steps)
    if (!sh(s)) return make_error("test netns setup failed: " + s);  // ~NetnsHost cleans up
  return h;
}

NetnsHost::~NetnsHost() {
  if (live_) live_->fetch_sub(1);
  if (name_.empty()) return;
  sh("ip link del " + veth_host_);  // gone already when the netns held the other end
  sh("ip netns del " + name_);
}

Status NetnsHost::run_inside(const std::function<void()>& fn) {
  Status st;
  std::string path = "/run/netns/" + name_;
  // setns() switches only the calling thread.
  std::thread t([&] {
    UniqueFd nsfd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!nsfd.valid()) {
      st = errno_error("open " + path);
      return;
    }
    if (::setns(nsfd.get(), CLONE_NEWNET) != 0) {
      st = errno_error("setns " + path);
      return;
    }
    fn();
  });
  t.join();
  return st;
}

Result<BoundSocket> NetnsHost::bind(int type, const std::string& addr, uint16_t port) {
  Result<BoundSocket> out = make_error("not run");
  auto st = run_inside([&] { out = bind_socket(type, addr, port); });
  if (!st) return st.error();
  return out;
}

}  // namespace acp::vmtest
