// The escape suite: real clients (acp_vm_client, curl, python3, node) run as nobody with
// no_new_privs inside a session wall and try every way out we know of. It runs once per
// backend: bpf (scratch cgroup + the real programs, pinned as `acp run` pins them) and
// iptables (the backend's real chains on the scratch cgroup). Where a backend refuses
// differently, the expectation says so: bpf refuses the call itself (EPERM); iptables rejects
// the packet (TCP: a reset, ECONNREFUSED; anything else: EPERM from the dropped send). Checks
// of the BPF programs' own state (events, counters, audit mode, sock_create) are bpf only. A
// loopback listener on 127.0.0.1:P and [::1]:P stands in for the proxy. Every attempt has a
// control: the same command, same user, run in a bare cgroup without the wall, must succeed, so an
// EPERM inside can only come from the wall.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "acp/cgroup/mounts.hpp"
#include "acp/kernel/endpoint.hpp"
#include "acp/kernel/event_reader.hpp"
#include "acp/kernel/probe.hpp"
#include "acp/kernel/session_maps.hpp"
#include "support/wall_fixture.hpp"

namespace {

// What /proc/self/cgroup says inside the session: the launcher gives every agent a cgroup
// namespace rooted at its session cgroup (vmtests/launch_agent_test.cpp checks that the root
// is the session cgroup); a process that left it would see "/.." or deeper.
constexpr const char* kInsideOwnCgroupNs = "/";

using acp::kernel::Endpoint;
using acp::kernel::EventReader;
using acp::vmtest::BoundSocket;
using acp::vmtest::kNobody;
using acp::vmtest::RunResult;
using acp::vmtest::TestWall;

using Argv = std::vector<std::string>;

Argv client(const std::string& op, const std::string& addr, uint16_t port,
            std::vector<std::string> flags = {}) {
  Argv a{ACP_VM_CLIENT};
  a.insert(a.end(), flags.begin(), flags.end());
  a.insert(a.end(), {op, addr, std::to_string(port)});
  return a;
}

Endpoint ep(const std::string& text) {
  auto r = acp::kernel::parse_endpoint(text);
  EXPECT_TRUE(r.ok()) << text;
  return r.ok() ? *r : Endpoint{};
}

// python3 and node one-liners that report like acp_vm_client: result=OK or result=E...
constexpr const char* kPyTcp =
    "import socket,sys,errno\n"
    "try:\n"
    "  socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close()\n"
    "  print('result=OK')\n"
    "except OSError as e:\n"
    "  print('result=' + errno.errorcode.get(e.errno, str(e.errno)))\n";
constexpr const char* kPyUdp =
    "import socket,sys,errno\n"
    "fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET\n"
    "try:\n"
    "  socket.socket(fam, socket.SOCK_DGRAM).sendto(b'x', (sys.argv[1], int(sys.argv[2])))\n"
    "  print('result=OK')\n"
    "except OSError as e:\n"
    "  print('result=' + errno.errorcode.get(e.errno, str(e.errno)))\n";
constexpr const char* kPyForkTcp =
    "import os,socket,sys,errno\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "  try:\n"
    "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close()\n"
    "    print('result=OK', flush=True)\n"
    "  except OSError as e:\n"
    "    print('result=' + errno.errorcode.get(e.errno, str(e.errno)), flush=True)\n"
    "  os._exit(0)\n"
    "os.waitpid(pid, 0)\n";
constexpr const char* kPyUrllibViaProxy =
    "import urllib.request\n"
    "print('status=%d' % urllib.request.urlopen('http://agent.test/', timeout=5).status)\n";
constexpr const char* kNodeTcp =
    "const s = require('net').connect(+process.argv[2], process.argv[1]);"
    "s.on('connect', () => { console.log('result=OK'); s.destroy(); });"
    "s.on('error', e => console.log('result=' + e.code));";
constexpr const char* kNodeUdp =
    "const d = require('dgram').createSocket(process.argv[1].includes(':') ? 'udp6' : 'udp4');"
    "d.send('x', +process.argv[2], process.argv[1], e => {"
    "  console.log('result=' + (e ? e.code : 'OK')); d.close(); });";

Argv curl(const std::string& url, std::vector<std::string> extra = {}) {
  Argv a{"curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-w", "status=%{http_code}\\n"};
  a.insert(a.end(), extra.begin(), extra.end());
  a.push_back(url);
  return a;
}

using acp::vmtest::WallBackend;

bool is_tcp_attempt(const Argv& argv) {
  for (const auto& a : argv) {
    if (a == "tcp" || a == "tcp-fastopen" || a == "mptcp" || a == "uring-connect" || a == kPyTcp ||
        a == kPyForkTcp || a == kNodeTcp || a.find(" tcp ") != std::string::npos)
      return true;
  }
  return false;
}

class WallEscape : public ::testing::TestWithParam<WallBackend> {
 protected:
  void SetUp() override {
    std::string why;
    if (!acp::vmtest::wall_backend_supported(GetParam(), &why))
      GTEST_SKIP() << acp::vmtest::backend_name(GetParam()) << " backend: " << why;

    // The proxy stand-in's port, free over UDP too (its UDP twins are served below): another
    // process's UDP socket may hold the port the kernel gave the TCP pair, so try again.
    std::vector<acp::vmtest::BoundSocket> udp_twins;
    for (int attempt = 0; attempt < 20 && udp_twins.size() < 2; ++attempt) {
      auto proxy = acp::vmtest::bind_loopback_pair(SOCK_STREAM);
      ASSERT_TRUE(proxy.ok()) << proxy.error().message();
      udp_twins.clear();
      for (const char* a : {"127.0.0.1", "::1"}) {
        auto u = acp::vmtest::bind_socket(SOCK_DGRAM, a, proxy->first.port);
        if (u.ok()) udp_twins.push_back(std::move(*u));
      }
      if (udp_twins.size() < 2) continue;
      p_ = proxy->first.port;
      serve(std::move(proxy->first));
      serve(std::move(proxy->second));
    }
    ASSERT_EQ(udp_twins.size(), 2u) << "no loopback port free over both TCP and UDP";
    other4_ = serve_new(SOCK_STREAM, "127.0.0.1");
    other6_ = serve_new(SOCK_STREAM, "::1");
    // The proxy's port on other 127/8 addresses: the allow entry is the exact address.
    serve_new(SOCK_STREAM, "127.0.0.2", p_);
    serve_new(SOCK_STREAM, "127.1.2.3", p_);
    udp4_ = serve_new(SOCK_DGRAM, "127.0.0.1");
    udp6_ = serve_new(SOCK_DGRAM, "::1");
    // The proxy's port over UDP: the allow entry is TCP only.
    for (auto& u : udp_twins) serve(std::move(u));
    if (HasFatalFailure()) return;

    auto wall = make_wall(proxy_endpoints(p_));
    ASSERT_TRUE(wall.ok()) << wall.error().message();
    wall_ = std::move(*wall);
    auto bare = acp::vmtest::ScratchCgroup::create();
    ASSERT_TRUE(bare.ok()) << bare.error().message();
    bare_ = std::move(*bare);
    if (bpf()) {
      auto reader = EventReader::create(wall_->programs().events_fd(),
                                        [this](const acp_event& e) { events_.push_back(e); });
      ASSERT_TRUE(reader.ok()) << reader.error().message();
      reader_.emplace(std::move(*reader));
    }
    auto root = acp::cgroup2_mount_point();
    ASSERT_TRUE(root.ok());
    cgroup_root_ = *root;
  }

  bool bpf() const { return GetParam() == WallBackend::kBpf; }
  // What a refused TCP attempt reports: the call refused (bpf), or the SYN answered with a
  // reset by the REJECT rule (iptables).
  std::string refused_tcp() const { return bpf() ? "EPERM" : "ECONNREFUSED"; }
  std::string refusal(const Argv& argv) const {
    return is_tcp_attempt(argv) ? refused_tcp() : "EPERM";
  }
  acp::Result<std::unique_ptr<TestWall>> make_wall(const std::vector<Endpoint>& allow) {
    return TestWall::create(allow, ACP_MODE_ENFORCE, GetParam());
  }

  static std::vector<Endpoint> proxy_endpoints(uint16_t port) {
    return {ep("127.0.0.1:" + std::to_string(port)), ep("[::1]:" + std::to_string(port))};
  }

  void serve(BoundSocket s) { responder_.serve(std::move(s)); }
  uint16_t serve_new(int type, const std::string& addr, uint16_t port = 0) {
    auto s = acp::vmtest::bind_socket(type, addr, port);
    EXPECT_TRUE(s.ok()) << s.error().message();
    if (!s.ok()) return 0;
    uint16_t got = s->port;
    serve(std::move(*s));
    return got;
  }

  RunResult in_wall(const Argv& argv, uid_t uid = kNobody, const TestWall* wall = nullptr,
                    bool bpf_only = false) {
    if (!wall) wall = wall_.get();
    return acp::vmtest::run_in(const_cast<TestWall*>(wall)->cgroup().fd(), wall->path(), argv, uid,
                               {}, bpf_only);
  }
  RunResult in_bare(const Argv& argv, uid_t uid = kNobody, bool bpf_only = false) {
    return acp::vmtest::run_in(bare_->fd(), bare_->path(), argv, uid, {}, bpf_only);
  }

  // The attempt works without the wall and is refused behind it (refusal()). `bpf_only`: both
  // runs without the launcher's seccomp filter and root containment, so that what is shown is
  // the wall's own refusal.
  void expect_blocked(const Argv& argv, const std::string& what, uid_t uid = kNobody,
                      bool bpf_only = false) {
    RunResult control = in_bare(argv, uid, bpf_only);
    EXPECT_EQ(control.result(), "OK") << "control (no wall): " << what << "\n" << control.out;
    RunResult in = in_wall(argv, uid, nullptr, bpf_only);
    EXPECT_EQ(in.result(), refusal(argv)) << "inside the wall: " << what << "\n" << in.out;
  }

  // bpf: the ring buffer's events so far; iptables has none (always empty).
  std::vector<acp_event>& events() {
    if (reader_) {
      EXPECT_TRUE(reader_->consume().ok());
    }
    return events_;
  }

  // This cgroup as /proc/<pid>/cgroup shows it.

  acp::vmtest::Responder responder_;  // outlives the sockets' users: declared first
  uint16_t p_ = 0, other4_ = 0, other6_ = 0, udp4_ = 0, udp6_ = 0;
  std::unique_ptr<TestWall> wall_;
  std::unique_ptr<acp::vmtest::ScratchCgroup> bare_;
  std::optional<EventReader> reader_;
  std::vector<acp_event> events_;
  std::string cgroup_root_;
};

TEST_P(WallEscape, TheProxyStandInStaysReachable) {
  for (const char* addr : {"127.0.0.1", "::1", "::ffff:127.0.0.1"})
    EXPECT_EQ(in_wall(client("tcp", addr, p_)).result(), "OK") << addr;
  const std::string proxy = "http://127.0.0.1:" + std::to_string(p_);
  EXPECT_EQ(in_wall(curl("http://agent.test/", {"-x", proxy})).value("status"), "200");
  EXPECT_EQ(in_wall(curl("http://agent.test/", {"-x", "http://[::1]:" + std::to_string(p_)}))
                .value("status"),
            "200");
  auto py =
      acp::vmtest::run_in(wall_->cgroup().fd(), wall_->path(), {"python3", "-c", kPyUrllibViaProxy},
                          kNobody, {"http_proxy=" + proxy});
  EXPECT_EQ(py.value("status"), "200") << py.out;
  EXPECT_EQ(in_wall({"node", "-e", kNodeTcp, "127.0.0.1", std::to_string(p_)}).result(), "OK");
  if (bpf()) {
    std::string refused;
    for (const auto& e : events()) refused += acp::kernel::describe_event(e) + "\n";
    EXPECT_TRUE(refused.empty()) << "nothing was refused, but:\n" << refused;
  }
}

TEST_P(WallEscape, OtherLoopbackPortsOverTcp) {
  expect_blocked(client("tcp", "127.0.0.1", other4_), "tcp 127.0.0.1 other port");
  expect_blocked(client("tcp", "::1", other6_), "tcp [::1] other port");
}

TEST_P(WallEscape, TheProxyPortOnOther127Addresses) {
  expect_blocked(client("tcp", "127.0.0.2", p_), "tcp 127.0.0.2:P");
  expect_blocked(client("tcp", "127.1.2.3", p_), "tcp 127.1.2.3:P");
}

TEST_P(WallEscape, Ipv4MappedIpv6IsJudgedAsIpv4) {
  expect_blocked(client("tcp", "::ffff:127.0.0.1", other4_), "tcp ::ffff:127.0.0.1 other port");
  expect_blocked(client("udp-sendto", "::ffff:127.0.0.1", p_), "udp sendto ::ffff:127.0.0.1:P");
  expect_blocked(client("udp-connect", "::ffff:127.0.0.1", p_), "udp connect ::ffff:127.0.0.1:P");
  expect_blocked(client("tcp", "::ffff:127.0.0.2", p_), "tcp ::ffff:127.0.0.2:P");
}

TEST_P(WallEscape, TheProxyPortOverUdp) {
  for (const char* addr : {"127.0.0.1", "::1"})
    for (const char* op : {"udp-sendto", "udp-connect"})
      expect_blocked(client(op, addr, p_), std::string(op) + " " + addr + ":P");
}

TEST_P(WallEscape, UnconnectedUdpThroughEverySendCall) {
  for (const char* op : {"udp-sendto", "udp-sendmsg", "udp-sendmmsg"}) {
    expect_blocked(client(op, "127.0.0.1", udp4_), std::string(op) + " v4");
    expect_blocked(client(op, "::1", udp6_), std::string(op) + " v6");
  }
}

TEST_P(WallEscape, ConnectedUdp) {
  expect_blocked(client("udp-connect", "127.0.0.1", udp4_), "udp connect v4");
  expect_blocked(client("udp-connect", "::1", udp6_), "udp connect v6");
}

TEST_P(WallEscape, AConnectedUdpSocketCannotSendElsewhere) {
  // A session that may use one UDP endpoint: its socket, once connected there, still may not
  // sendto() anywhere else (sendmsg4/6 judge every explicit destination).
  const uint16_t other = serve_new(SOCK_DGRAM, "127.0.0.1");
  auto endpoints = proxy_endpoints(p_);
  endpoints.push_back(ep("127.0.0.1:" + std::to_string(udp4_) + "/udp"));
  auto wall = make_wall(endpoints);
  ASSERT_TRUE(wall.ok()) << wall.error().message();
  const Argv argv =
      client("udp-sendto", "127.0.0.1", other, {"--via=127.0.0.1," + std::to_string(udp4_)});
  RunResult control = in_bare(argv);
  EXPECT_EQ(control.value("via"), "OK") << control.out;
  EXPECT_EQ(control.result(), "OK") << control.out;
  RunResult in = in_wall(argv, kNobody, wall->get());
  EXPECT_EQ(in.value("via"), "OK") << "connect() to the allowed UDP endpoint\n" << in.out;
  EXPECT_EQ(in.result(), "EPERM") << "sendto() elsewhere on the connected socket\n" << in.out;
  EXPECT_EQ(in_wall(client("udp-sendto", "127.0.0.1", udp4_), kNobody, wall->get()).result(), "OK")
      << "the allowed UDP endpoint";
}

// Inbound: the agent listens and a test host dials in. connect4/6 and sendmsg4/6 judge only
// destinations the agent names; an accepted connection names none. The egress program
// (cgroup_skb/egress) judges the packets themselves: the agent's SYN-ACK to the test host is
// neither loopback nor allowed, so it is dropped, the handshake never completes and nothing
// the agent sends reaches the host. Control: the same agent in a bare cgroup is reached.
TEST_P(WallEscape, InboundConnectionFromATestHostIsRefused) {
  auto host = acp::vmtest::NetnsHost::create();
  ASSERT_TRUE(host.ok()) << host.error().message();
  auto& h = **host;
  constexpr const char* kNoHandshake = "(no handshake)";
  // The agent serves on listen_addr; the test host dials it from inside its namespace. wall:
  // null for the control in the bare cgroup.
  auto exchange = [&](TestWall* wall, const std::string& listen_addr) {
    const bool walled = wall != nullptr;
    const bool v6 = listen_addr.find(':') != std::string::npos;
    auto probe = acp::vmtest::bind_socket(SOCK_STREAM, listen_addr);
    EXPECT_TRUE(probe.ok());
    const uint16_t port = probe.ok() ? probe->port : 0;
    probe = acp::Error{};  // free the port for the agent
    std::string got;
    int last_errno = 0;
    std::thread dialer([&] {
      auto st = h.run_inside([&] {
        sockaddr_storage ss{};
        socklen_t len;
        if (v6) {
          auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
          a->sin6_family = AF_INET6;
          a->sin6_port = htons(port);
          inet_pton(AF_INET6, listen_addr.c_str(), &a->sin6_addr);
          len = sizeof(*a);
        } else {
          auto* a = reinterpret_cast<sockaddr_in*>(&ss);
          a->sin_family = AF_INET;
          a->sin_port = htons(port);
          inet_pton(AF_INET, listen_addr.c_str(), &a->sin_addr);
          len = sizeof(*a);
        }
        // Bounded: ~5 s of refusals until the agent listens, then one connect() of at most
        // 2 s (SO_SNDTIMEO bounds it): a listener whose SYN-ACK never arrives ends the loop.
        for (int i = 0; i < 250 && got.empty(); i++) {
          acp::UniqueFd fd(::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
          timeval tv{2, 0};
          ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
          ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
          if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) == 0) {
            char buf[64];
            ssize_t n = ::recv(fd.get(), buf, sizeof(buf), 0);
            got = n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string("(connected)");
            break;
          }
          if (errno == EINPROGRESS || errno == ETIMEDOUT) {
            got = kNoHandshake;
            break;
          }
          last_errno = errno;
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
      });
      EXPECT_TRUE(st.ok());
      // Never leave the agent waiting in accept() for its 20 s alarm.
      if (got.rfind("acp-probe", 0) != 0)
        (void)(walled ? wall->cgroup() : bare_->cgroup()).kill_all(std::chrono::seconds(5));
    });
    const Argv argv = client("tcp-serve", listen_addr, port);
    RunResult r = walled ? in_wall(argv, kNobody, wall) : in_bare(argv);
    dialer.join();
    if (got.empty())
      r.out += "dialler gave up, last connect() error: " + std::to_string(last_errno);
    return std::make_pair(r, got);
  };
  for (const std::string& addr : {h.host_addr4(), h.host_addr6()}) {
    SCOPED_TRACE("agent listens on " + addr);
    const bool v6 = addr.find(':') != std::string::npos;
    const std::string dialler = v6 ? h.addr6() : h.addr4();
    auto [control, control_got] = exchange(nullptr, addr);
    EXPECT_EQ(control.result(), "OK") << control.out;
    EXPECT_EQ(control_got.rfind("acp-probe", 0), 0u) << "control: the test host read the data";

    // A wall of its own per family: a cgroup that went through cgroup.kill is not reused
    // (on this kernel a later clone3(CLONE_INTO_CGROUP) into it was SIGKILLed at once).
    auto made = make_wall(proxy_endpoints(p_));
    ASSERT_TRUE(made.ok()) << made.error().message();
    TestWall& wall = **made;
    std::vector<acp_event> seen;
    std::optional<EventReader> reader;
    if (bpf()) {
      auto r = EventReader::create(wall.programs().events_fd(),
                                   [&seen](const acp_event& e) { seen.push_back(e); });
      ASSERT_TRUE(r.ok()) << r.error().message();
      reader.emplace(std::move(*r));
    }
    auto [in, in_got] = exchange(&wall, addr);
    EXPECT_NE(in_got.rfind("acp-probe", 0), 0u)
        << "HOLE: an agent inside the wall accepted a connection from the test host " << dialler
        << " and sent it data (" << in.out << ")";
    // iptables: the SYN-ACK comes from a request socket, which -m cgroup cannot attribute to
    // the session, so the handshake completes; the agent's data (from the accepted socket,
    // which can) is rejected. docs/backends.md says so.
    if (!bpf()) continue;
    EXPECT_EQ(in_got, kNoHandshake) << "the SYN-ACK to the test host is dropped\n" << in.out;

    // One report for the refused connection, although the SYN-ACK was sent more than once.
    ASSERT_TRUE(reader->consume().ok());
    std::vector<acp_event> egress;
    for (const auto& e : seen)
      if (e.hook == ACP_HOOK_EGRESS) egress.push_back(e);
    ASSERT_EQ(egress.size(), 1u);
    const acp_event& e = egress[0];
    EXPECT_EQ(e.verdict, ACP_VERDICT_DENY);
    EXPECT_EQ(e.family, v6 ? AF_INET6 : AF_INET);
    EXPECT_EQ(e.protocol, IPPROTO_TCP);
    EXPECT_EQ(e.sock_type, SOCK_STREAM);
    EXPECT_EQ(e.uid, kNobody) << "the listening socket's owner";
    EXPECT_EQ(e.pid, 0u) << "no pid in packet context";
    EXPECT_EQ(e.session_id, wall.session_id());
    const std::string desc = acp::kernel::describe_event(e);
    EXPECT_EQ(
        desc.rfind(
            "denied egress packet uid 65534 -> " + (v6 ? "[" + dialler + "]" : dialler) + ":", 0),
        0u)
        << desc;
    auto c = acp::kernel::read_counters(wall.programs().map_fd("counters"));
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(c->denied[v6 ? ACP_FAM_INET6 : ACP_FAM_INET][ACP_PRO_TCP], 1u);
    EXPECT_EQ(c->total_denied(), 1u);
  }
}

// The door an operator opens with --allow: a non-loopback endpoint in the allow map is
// reachable from inside the wall, both ways (the egress program lets the agent's packets to
// it pass: handshake, request, ACKs), over IPv4, IPv6 and UDP; its neighbours stay shut.
TEST_P(WallEscape, AnAllowedTestHostEndpointWorksBothWays) {
  auto host = acp::vmtest::NetnsHost::create();
  ASSERT_TRUE(host.ok()) << host.error().message();
  auto& h = **host;
  auto t4 = h.bind(SOCK_STREAM, h.addr4());
  auto t6 = h.bind(SOCK_STREAM, h.addr6());
  auto other4 = h.bind(SOCK_STREAM, h.addr4());
  auto u4 = h.bind(SOCK_DGRAM, h.addr4());
  ASSERT_TRUE(t4.ok() && t6.ok() && other4.ok() && u4.ok());
  const uint16_t tp4 = t4->port, tp6 = t6->port, op4 = other4->port, up4 = u4->port;
  serve(std::move(*t4));
  serve(std::move(*t6));
  serve(std::move(*other4));
  serve(std::move(*u4));

  auto endpoints = proxy_endpoints(p_);
  endpoints.push_back(ep(h.addr4() + ":" + std::to_string(tp4)));
  endpoints.push_back(ep("[" + h.addr6() + "]:" + std::to_string(tp6)));
  endpoints.push_back(ep(h.addr4() + ":" + std::to_string(up4) + "/udp"));
  auto wall = make_wall(endpoints);
  ASSERT_TRUE(wall.ok()) << wall.error().message();
  const TestWall* w = wall->get();

  const std::string url4 = "http://" + h.addr4() + ":" + std::to_string(tp4) + "/";
  const std::string url6 = "http://[" + h.addr6() + "]:" + std::to_string(tp6) + "/";
  const std::string proxy = "http://127.0.0.1:" + std::to_string(p_);
  for (const auto& url : {url4, url6}) {
    auto r = in_wall(curl(url), kNobody, w);
    EXPECT_EQ(r.value("status"), "200") << "allowed endpoint " << url << "\n" << r.out;
  }
  EXPECT_EQ(in_wall(client("udp-sendto", h.addr4(), up4), kNobody, w).result(), "OK");
  EXPECT_EQ(in_wall(client("udp-connect", h.addr4(), up4), kNobody, w).result(), "OK");
  // The proxy on loopback still works alongside.
  EXPECT_EQ(in_wall(curl("http://agent.test/", {"-x", proxy}), kNobody, w).value("status"), "200");
  // The same host on another port, and the allowed port over UDP, stay refused.
  EXPECT_EQ(in_wall(client("tcp", h.addr4(), op4), kNobody, w).result(), refused_tcp());
  EXPECT_EQ(in_wall(client("udp-sendto", h.addr4(), tp4), kNobody, w).result(), "EPERM");
  if (!bpf()) return;

  auto recent = acp::kernel::read_recent_events((*wall)->programs().map_fd("recent"));
  ASSERT_TRUE(recent.ok());
  for (const auto& e : *recent)
    EXPECT_NE(e.hook, ACP_HOOK_EGRESS)
        << "an allowed packet was refused: " << acp::kernel::describe_event(e);
}

TEST_P(WallEscape, ATestHostInAnotherNetworkNamespace) {
  auto host = acp::vmtest::NetnsHost::create();
  ASSERT_TRUE(host.ok()) << host.error().message();
  auto& h = **host;
  auto t4 = h.bind(SOCK_STREAM, h.addr4());
  auto t6 = h.bind(SOCK_STREAM, h.addr6());
  auto u4 = h.bind(SOCK_DGRAM, h.addr4());
  ASSERT_TRUE(t4.ok() && t6.ok() && u4.ok());
  const uint16_t tp4 = t4->port, tp6 = t6->port, up4 = u4->port;
  serve(std::move(*t4));
  serve(std::move(*t6));
  serve(std::move(*u4));

  expect_blocked(client("tcp", h.addr4(), tp4), "tcp to the netns host v4");
  expect_blocked(client("tcp", h.addr6(), tp6), "tcp to the netns host v6");
  expect_blocked(client("udp-sendto", h.addr4(), up4), "udp to the netns host");
  const std::string url = "http://" + h.addr4() + ":" + std::to_string(tp4) + "/";
  EXPECT_EQ(in_bare(curl(url)).value("status"), "200") << "control: curl to the test host";
  auto in = in_wall(curl(url));
  EXPECT_EQ(in.code, 7) << in.out;  // curl: couldn't connect
  EXPECT_EQ(in.value("status"), "000") << in.out;
  if (!bpf()) return;  // no events from iptables
  bool seen = false;
  for (const auto& e : events())
    if (std::string(e.comm) == "curl" && e.port == tp4 && e.verdict == ACP_VERDICT_DENY)
      seen = true;
  EXPECT_TRUE(seen) << "curl's refused connect to the test host was reported";
}

TEST_P(WallEscape, ChildrenAndGrandchildrenStayConfined) {
  expect_blocked(client("tcp", "127.0.0.1", other4_, {"--fork=1"}), "child");
  expect_blocked(client("tcp", "127.0.0.1", other4_, {"--fork=2"}), "grandchild");
  auto in = in_wall(client("tcp", "127.0.0.1", other4_, {"--fork=2"}));
  EXPECT_EQ(in.value("cgroup"), kInsideOwnCgroupNs) << in.out;
  expect_blocked({"python3", "-c", kPyForkTcp, "127.0.0.1", std::to_string(other4_)},
                 "python3 os.fork() child");
  const std::string nested =
      "sh -c '" + std::string(ACP_VM_CLIENT) + " tcp ::1 " + std::to_string(other6_) + "'";
  expect_blocked({"sh", "-c", nested}, "shell grandchild");
  // And the door stays open for descendants too.
  EXPECT_EQ(in_wall(client("tcp", "127.0.0.1", p_, {"--fork=2"})).result(), "OK");
}

TEST_P(WallEscape, ADaemonThatOutlivesTheAgentStaysConfined) {
  char tmpl[] = "/tmp/acp-vmt-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  ASSERT_EQ(::chmod(dir.c_str(), 0777), 0);
  struct Cleanup {
    std::string d;
    ~Cleanup() { std::filesystem::remove_all(d); }
  } cleanup{dir};

  // setsid + double fork; the daemon tries only once the agent that started it is gone.
  auto daemon_result = [&](bool walled) {
    const std::string file = dir + (walled ? "/wall" : "/bare");
    auto argv = client("tcp", "127.0.0.1", other4_, {"--daemon=" + file});
    RunResult started = walled ? in_wall(argv) : in_bare(argv);
    EXPECT_EQ(started.code, 0) << started.out;
    EXPECT_FALSE(started.value("daemon").empty()) << started.out;
    RunResult r;
    for (int i = 0; i < 1500 && !std::filesystem::exists(file); i++)  // bounded: 15 s
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::ifstream in(file);
    r.out.assign(std::istreambuf_iterator<char>(in), {});
    return r;
  };
  RunResult control = daemon_result(false);
  EXPECT_EQ(control.result(), "OK") << control.out;
  RunResult daemon = daemon_result(true);
  EXPECT_EQ(daemon.result(), refused_tcp()) << daemon.out;
  EXPECT_EQ(daemon.value("cgroup"), kInsideOwnCgroupNs) << daemon.out;
  if (!bpf()) return;
  bool seen = false;
  for (const auto& e : events())
    if (std::to_string(e.pid) == daemon.value("pid") && e.port == other4_) seen = true;
  EXPECT_TRUE(seen) << "the daemon's attempt was reported with its own pid";
}

TEST_P(WallEscape, CannotMoveItselfOutOfTheCgroup) {
  for (const std::string& target : {cgroup_root_, bare_->path()}) {
    const std::string procs = target + "/cgroup.procs";
    RunResult in = in_wall(client("tcp", "127.0.0.1", other4_, {"--escape=" + procs}));
    EXPECT_NE(in.value("escape"), "OK") << procs << "\n" << in.out;
    EXPECT_FALSE(in.value("escape").empty()) << in.out;
    EXPECT_EQ(in.value("cgroup"), kInsideOwnCgroupNs) << in.out;
    EXPECT_EQ(in.result(), refused_tcp()) << in.out;
    std::cout << "[ info     ] nobody writing its pid to " << procs << ": " << in.value("escape")
              << "\n";
  }
  // Control: the same write as root does move a process (so the refusal above is the
  // permission check, not a broken probe). Root is not confined; acp refuses to run agents
  // as root unless told to.
  RunResult root = in_bare(
      client("tcp", "127.0.0.1", other4_, {"--escape=" + cgroup_root_ + "/cgroup.procs"}), 0);
  EXPECT_EQ(root.value("escape"), "OK") << root.out;
  EXPECT_EQ(root.value("cgroup"), "/..") << root.out << " (moved above its cgroup namespace root)";
}

TEST_P(WallEscape, RawSockets) {
  // A root agent as acp runs it has no CAP_NET_RAW at all, under every backend.
  EXPECT_EQ(in_wall(client("raw", "127.0.0.1", 0), 0).result(), "EPERM") << "root agent";
  EXPECT_EQ(in_wall(client("raw", "127.0.0.1", 0)).result(), "EPERM") << "nobody";
  // iptables judges packets, not socket(): a raw socket's packets would meet the chain's
  // REJECT, but making one is the capability's business alone (docs/backends.md).
  if (!bpf()) return;
  // socket(SOCK_RAW) needs CAP_NET_RAW: nobody cannot make one with or without the wall, so
  // the wall's own refusal is shown with root (the control: root outside gets one).
  expect_blocked(client("raw", "127.0.0.1", 0), "raw IPv4 socket as root", 0, true);
  expect_blocked(client("raw", "::1", 0), "raw IPv6 socket as root", 0, true);
  size_t sock_create = 0;
  for (const auto& e : events())
    if (e.hook == ACP_HOOK_SOCK_CREATE && e.sock_type == SOCK_RAW) sock_create++;
  EXPECT_EQ(sock_create, 2u) << "root's two raw sockets were refused by sock_create (nobody's "
                                "failed earlier, on the capability check)";
}

TEST_P(WallEscape, IcmpPingSockets) {
  // Ping sockets need no capability, only a gid inside net.ipv4.ping_group_range (it governs
  // ICMPv6 too). Let nobody's group in for the control; the override puts the old value back.
  std::string before;
  std::getline(std::ifstream("/proc/sys/net/ipv4/ping_group_range"), before);
  {
    auto range = acp::vmtest::SysctlOverride::set("net.ipv4.ping_group_range", "65534 65534");
    ASSERT_TRUE(range.ok()) << range.error().message();
    expect_blocked(client("ping", "127.0.0.1", 0), "ICMP ping socket v4");
    if (bpf()) {
      expect_blocked(client("ping", "::1", 0), "ICMPv6 ping socket");
    } else {
      // ip6tables drops the echo, but an ICMPv6 ping socket's sendto() does not report the
      // drop: what shows the wall is that no reply comes back (the control gets one).
      RunResult control = in_bare(client("ping", "::1", 0));
      EXPECT_EQ(control.value("reply"), "OK") << control.out;
      RunResult in = in_wall(client("ping", "::1", 0));
      EXPECT_NE(in.value("reply"), "OK") << "HOLE: an echo reply came back\n" << in.out;
      EXPECT_TRUE(in.result() == "EPERM" || !in.value("reply").empty()) << in.out;
    }
  }
  std::string after;
  std::getline(std::ifstream("/proc/sys/net/ipv4/ping_group_range"), after);
  EXPECT_EQ(after, before) << "ping_group_range restored";
}

TEST_P(WallEscape, AfPacketIsRefusedBySeccompNotByTheWall) {
  // cgroup/sock_create runs only for AF_INET/AF_INET6 sockets, so the BPF programs never see
  // AF_PACKET. The launcher's seccomp filter refuses the family (EAFNOSUPPORT) for every
  // agent, root included; without the filter root could open one inside the wall.
  RunResult nobody = in_wall(client("packet", "-", 0));
  EXPECT_EQ(nobody.result(), "EAFNOSUPPORT") << nobody.out;
  RunResult root = in_wall(client("packet", "-", 0), 0);
  EXPECT_EQ(root.result(), "EAFNOSUPPORT") << root.out;
  RunResult root_bpf_only = in_wall(client("packet", "-", 0), 0, nullptr, true);
  EXPECT_EQ(root_bpf_only.result(), "OK")
      << "control: the BPF programs alone do not stop AF_PACKET\n"
      << root_bpf_only.out;
  for (const auto& e : events()) EXPECT_NE(e.family, 17) << "no AF_PACKET event is expected";
}

TEST_P(WallEscape, TcpFastOpenSendto) {
  std::string tfo;
  std::getline(std::ifstream("/proc/sys/net/ipv4/tcp_fastopen"), tfo);
  if ((std::atoi(tfo.c_str()) & 1) == 0)
    GTEST_SKIP() << "net.ipv4.tcp_fastopen=" << tfo << ": client-side TFO is off";
  expect_blocked(client("tcp-fastopen", "127.0.0.1", other4_), "sendto(MSG_FASTOPEN) v4");
  expect_blocked(client("tcp-fastopen", "::1", other6_), "sendto(MSG_FASTOPEN) v6");
  expect_blocked(client("tcp-fastopen", "127.0.0.2", p_), "sendto(MSG_FASTOPEN) 127.0.0.2:P");
  EXPECT_EQ(in_wall(client("tcp-fastopen", "127.0.0.1", p_)).result(), "OK") << "the proxy";
}

TEST_P(WallEscape, MultipathTcpSockets) {
  // MPTCP subflows are made by the kernel, not by connect() calls the hooks would see for
  // each of them: sock_create refuses IPPROTO_MPTCP outright, even to the proxy.
  std::string enabled;
  std::getline(std::ifstream("/proc/sys/net/mptcp/enabled"), enabled);
  if (enabled != "1") GTEST_SKIP() << "MPTCP is not enabled here (net.mptcp.enabled)";
  expect_blocked(client("mptcp", "127.0.0.1", other4_), "MPTCP to another port");
  // iptables sees the subflows' packets (they carry the session socket's cgroup) and lets
  // those to the proxy through, as it should; bpf refuses MPTCP sockets outright.
  if (bpf()) expect_blocked(client("mptcp", "127.0.0.1", p_), "MPTCP to the proxy port");
}

TEST_P(WallEscape, ConnectThroughIoUring) {
  // An agent as acp runs it cannot set up io_uring at all (seccomp); the BPF hooks also
  // judge io_uring's connects, shown here without the filter.
  EXPECT_EQ(in_wall(client("uring-connect", "127.0.0.1", p_)).result(), "EPERM")
      << "io_uring_setup is refused to the agent";
  RunResult probe = in_bare(client("uring-connect", "127.0.0.1", p_), kNobody, true);
  if (probe.result() == "UNSUPPORTED")
    GTEST_SKIP() << "acp_vm_client was built without liburing (install liburing-dev)";
  if (probe.result() != "OK")
    GTEST_SKIP() << "io_uring is not usable here (" << probe.result()
                 << "; kernel.io_uring_disabled?)";
  expect_blocked(client("uring-connect", "127.0.0.1", other4_), "io_uring connect v4", kNobody,
                 true);
  expect_blocked(client("uring-connect", "::1", other6_), "io_uring connect v6", kNobody, true);
  EXPECT_EQ(in_wall(client("uring-connect", "127.0.0.1", p_), kNobody, nullptr, true).result(),
            "OK")
      << "the proxy";
}

TEST_P(WallEscape, RealClientsAreRefused) {
  const std::string url = "http://127.0.0.1:" + std::to_string(other4_) + "/";
  EXPECT_EQ(in_bare(curl(url)).value("status"), "200") << "control: curl";
  auto c = in_wall(curl(url));
  EXPECT_EQ(c.code, 7) << c.out;
  EXPECT_EQ(c.value("status"), "000") << c.out;
  auto c6 = in_wall(curl("http://[::1]:" + std::to_string(other6_) + "/"));
  EXPECT_EQ(c6.code, 7) << c6.out;

  expect_blocked({"python3", "-c", kPyTcp, "127.0.0.1", std::to_string(other4_)},
                 "python3 socket.create_connection");
  expect_blocked({"python3", "-c", kPyUdp, "::1", std::to_string(udp6_)}, "python3 udp sendto");
  expect_blocked({"node", "-e", kNodeTcp, "127.0.0.1", std::to_string(other4_)},
                 "node net.connect");
  expect_blocked({"node", "-e", kNodeUdp, "127.0.0.1", std::to_string(udp4_)}, "node dgram send");
  if (!bpf()) return;

  std::set<std::string> comms;
  for (const auto& e : events()) comms.insert(e.comm);
  for (const char* comm : {"curl", "python3", "node"}) EXPECT_TRUE(comms.count(comm)) << comm;
}

TEST_P(WallEscape, EventsAndCountersDescribeEachRefusal) {
  if (!bpf()) GTEST_SKIP() << "events and counters are the BPF programs' own";
  auto before = acp::kernel::read_counters(wall_->programs().map_fd("counters"));
  ASSERT_TRUE(before.ok());
  RunResult tcp = in_wall(client("tcp", "127.0.0.1", other4_));
  RunResult udp6 = in_wall(client("udp-sendto", "::1", udp6_));
  RunResult ok = in_wall(client("tcp", "::1", p_));
  ASSERT_EQ(tcp.result(), "EPERM");
  ASSERT_EQ(udp6.result(), "EPERM");
  ASSERT_EQ(ok.result(), "OK");

  auto& got = events();
  ASSERT_EQ(got.size(), 2u);
  const acp_event& e = got[0];
  EXPECT_EQ(std::to_string(e.pid), tcp.value("pid"));
  EXPECT_EQ(std::string(e.comm), "acp_vm_client");
  EXPECT_EQ(e.uid, kNobody);
  EXPECT_EQ(e.session_id, wall_->session_id());
  EXPECT_EQ(e.hook, ACP_HOOK_CONNECT4);
  EXPECT_EQ(e.verdict, ACP_VERDICT_DENY);
  EXPECT_EQ(e.port, other4_);
  EXPECT_EQ(acp::kernel::describe_event(e), "denied connect4 pid " + tcp.value("pid") +
                                                " (acp_vm_client) uid 65534 -> " +
                                                "127.0.0.1:" + std::to_string(other4_) + "/tcp");
  const acp_event& u = got[1];
  EXPECT_EQ(std::to_string(u.pid), udp6.value("pid"));
  EXPECT_EQ(u.hook, ACP_HOOK_SENDMSG6);
  EXPECT_EQ(acp::kernel::event_to_json(u)["destination"],
            "[::1]:" + std::to_string(udp6_) + "/udp");
  EXPECT_EQ(acp::kernel::event_to_json(u)["verdict"], "deny");

  auto after = acp::kernel::read_counters(wall_->programs().map_fd("counters"));
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->denied[ACP_FAM_INET][ACP_PRO_TCP] - before->denied[ACP_FAM_INET][ACP_PRO_TCP],
            1u);
  EXPECT_EQ(after->denied[ACP_FAM_INET6][ACP_PRO_UDP] - before->denied[ACP_FAM_INET6][ACP_PRO_UDP],
            1u);
  EXPECT_EQ(
      after->allowed[ACP_FAM_INET6][ACP_PRO_TCP] - before->allowed[ACP_FAM_INET6][ACP_PRO_TCP], 1u);
  EXPECT_EQ(after->total_denied() - before->total_denied(), 2u);
}

TEST_P(WallEscape, AuditModeLetsThroughAndReports) {
  if (!bpf())
    GTEST_SKIP() << "audit mode is the BPF programs' own (acp run refuses it for iptables)";
  ASSERT_TRUE(wall_->programs().set_mode(ACP_MODE_AUDIT).ok());
  RunResult tcp = in_wall(client("tcp", "127.0.0.1", other4_));
  RunResult udp = in_wall(client("udp-sendto", "::1", udp6_));
  EXPECT_EQ(tcp.result(), "OK") << tcp.out;
  EXPECT_EQ(udp.result(), "OK") << udp.out;
  EXPECT_EQ(in_wall(curl("http://127.0.0.1:" + std::to_string(other4_) + "/")).value("status"),
            "200");
  auto& got = events();
  ASSERT_EQ(got.size(), 3u);
  for (const auto& e : got) EXPECT_EQ(e.verdict, ACP_VERDICT_AUDIT_DENY);
  EXPECT_EQ(std::to_string(got[0].pid), tcp.value("pid"));
  EXPECT_EQ(std::to_string(got[1].pid), udp.value("pid"));
  EXPECT_EQ(std::string(got[2].comm), "curl");
  EXPECT_EQ(acp::kernel::describe_event(got[0]).rfind("audit: would deny connect4", 0), 0u);

  ASSERT_TRUE(wall_->programs().set_mode(ACP_MODE_ENFORCE).ok());
  EXPECT_EQ(in_wall(client("tcp", "127.0.0.1", other4_)).result(), "EPERM");
}

TEST_P(WallEscape, TwoSessionsKeepTheirOwnDoors) {
  auto proxy_b = acp::vmtest::bind_loopback_pair(SOCK_STREAM);
  ASSERT_TRUE(proxy_b.ok()) << proxy_b.error().message();
  const uint16_t q = proxy_b->first.port;
  serve(std::move(proxy_b->first));
  serve(std::move(proxy_b->second));
  auto wall_b = make_wall(proxy_endpoints(q));
  ASSERT_TRUE(wall_b.ok()) << wall_b.error().message();
  const TestWall* b = wall_b->get();

  for (const char* addr : {"127.0.0.1", "::1"}) {
    EXPECT_EQ(in_wall(client("tcp", addr, p_)).result(), "OK") << "A to its proxy " << addr;
    EXPECT_EQ(in_wall(client("tcp", addr, q)).result(), refused_tcp()) << "A to B's proxy " << addr;
    EXPECT_EQ(in_wall(client("tcp", addr, q), kNobody, b).result(), "OK") << "B to its own";
    EXPECT_EQ(in_wall(client("tcp", addr, p_), kNobody, b).result(), refused_tcp()) << "B to A's";
  }
  if (!bpf()) return;
  auto ca = acp::kernel::read_counters(wall_->programs().map_fd("counters"));
  auto cb = acp::kernel::read_counters((*wall_b)->programs().map_fd("counters"));
  ASSERT_TRUE(ca.ok() && cb.ok());
  EXPECT_EQ(ca->total_allowed(), 2u);
  EXPECT_EQ(ca->total_denied(), 2u);
  EXPECT_EQ(cb->total_allowed(), 2u);
  EXPECT_EQ(cb->total_denied(), 2u);
  for (const auto& e : events()) {
    EXPECT_EQ(e.session_id, wall_->session_id());
    EXPECT_EQ(e.port, q);
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, WallEscape,
                         ::testing::Values(WallBackend::kBpf, WallBackend::kIptables),
                         [](const ::testing::TestParamInfo<WallBackend>& info) {
                           return std::string(acp::vmtest::backend_name(info.param));
                         });

}  // namespace
