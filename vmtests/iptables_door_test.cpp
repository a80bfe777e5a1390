// The transparent door on the iptables backend (issue 16 point 4, docs/transparent.md, "The
// iptables backend"): the real `acp run --backend=iptables --door=both`, real nat REDIRECT rules
// and conntrack, real clients that ignore proxy settings (curl --noproxy '*', python with
// ProxyHandler({})), origins in a test host's network namespace, the real policy and audit log.
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "acp/backend/iptables_wall.hpp"
#include "acp/cgroup/mounts.hpp"
#include "support/run_fixture.hpp"
#include "support/wall_fixture.hpp"

namespace {

using acp::vmtest::free_port;
using acp::vmtest::NetnsHost;
using acp::vmtest::Proc;
using acp::vmtest::run;
using acp::vmtest::slurp;

// What `iptables -t nat -S` and `ip6tables -t nat -S` list now.
std::string nat_rules() {
  return run({"iptables", "-w", "-t", "nat", "-S"}).out +
         run({"ip6tables", "-w", "-t", "nat", "-S"}).out;
}

std::string session_id_in(const std::string& out) {
  auto at = out.find("acp: session ");
  return at == std::string::npos ? "" : out.substr(at + 13, 12);
}

// A DNS query for `name` (type A) and helpers to ask it, for the agent's python.
constexpr const char* kDnsPy =
    "import socket, struct, sys\n"
    "def q(name, qtype=1):\n"
    "    return struct.pack('>HHHHHH', 0x1234, 0x0100, 1, 0, 0, 0) + b''.join(\n"
    "        bytes([len(l)]) + l.encode() for l in name.split('.')) + b'\\0' + \\\n"
    "        struct.pack('>HH', qtype, 1)\n"
    "def udp(server, name, connected):\n"
    "    s = socket.socket(socket.AF_INET6 if ':' in server else socket.AF_INET,\n"
    "                      socket.SOCK_DGRAM)\n"
    "    s.settimeout(5)\n"
    "    try:\n"
    "        if connected:\n"
    "            s.connect((server, 53))\n"
    "            s.send(q(name))\n"
    "        else:\n"
    "            s.sendto(q(name), (server, 53))\n"
    "        d, src = s.recvfrom(2048)\n"
    "    except OSError as e:\n"
    "        return 'failed %s' % e\n"
    "    an = struct.unpack('>H', d[6:8])[0]\n"
    "    ip = socket.inet_ntoa(d[-4:]) if an else '-'\n"
    "    return 'rcode=%d from=%s:%d ip=%s' % (d[3] & 15, src[0], src[1], ip)\n"
    "def tcp(server, name):\n"
    "    c = socket.create_connection((server, 53), timeout=5)\n"
    "    m = q(name)\n"
    "    c.sendall(struct.pack('>H', len(m)) + m)\n"
    "    n = struct.unpack('>H', c.recv(2))[0]\n"
    "    d = b''\n"
    "    while len(d) < n: d += c.recv(n - len(d))\n"
    "    return 'rcode=%d peer=%s:%d' % ((d[3] & 15,) + c.getpeername()[:2])\n";

class IptablesDoor : public acp::vmtest::RunFixture {
 protected:
  void SetUp() override {
    RunFixture::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    std::string why;
    if (!acp::backend::iptables_backend_supported(&why)) GTEST_SKIP() << "iptables: " << why;
    auto h = NetnsHost::create();
    ASSERT_TRUE(h.ok()) << h.error().message();
    host_ = std::move(*h);
    origin_wrapper_ = {"ip", "netns", "exec", host_->name()};
  }

  std::vector<std::string> door_run(const std::string& policy, std::vector<std::string> cmd) {
    return acp_run(policy, std::move(cmd), {"--backend=iptables", "--door=both"});
  }

  bool door_refused(const std::string& original) {
    for (auto& e : audit_entries())
      if (e.value("event", "") == "door_refused" && e.value("original", "") == original)
        return true;
    return false;
  }

  std::unique_ptr<NetnsHost> host_;
};

// Clients that ignore proxy settings reach the allowed origin and are refused by the policy for
// a denied one, each judged and audited as led in; getpeername() says the original address; the
// agent's DNS over UDP (unconnected and connected, as glibc asks) and TCP, to a loopback
// resolver and to a routed address, is answered by the session (a synthetic address for an
// allowed name, NXDOMAIN for a denied one) as from the address asked, IPv4 and IPv6; UDP to
// another port is still refused. Nothing is left in nat or filter afterwards.
TEST_F(IptablesDoor, ClientsWithoutProxySettingsAndTheirDnsAreLedInAndJudged) {
  const uint16_t plain = free_port(), denied = free_port();
  ASSERT_TRUE(start_origin(plain, host_->addr4()));
  ASSERT_TRUE(start_origin(denied, host_->addr4()));
  const auto policy = write_policy("policy.yml",
                                   "default: deny\nrules:\n"
                                   "  - match: { kind: http, host: \"" +
                                       host_->addr4() + "\", port: " + std::to_string(plain) +
                                       " }\n    action: allow\n"
                                       "  - match: { kind: http, host: \"allowed.test\" }\n"
                                       "    action: allow\n");
  const std::string py =
      std::string(kDnsPy) +
      "import urllib.request, urllib.error\n"
      "addr, plain, denied, addr6 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]\n"
      "o = urllib.request.build_opener(urllib.request.ProxyHandler({}))\n"
      "print('PY:' + o.open('http://%s:%d/' % (addr, plain), timeout=20)"
      ".read().decode().strip())\n"
      "try:\n"
      "    o.open('http://%s:%d/' % (addr, denied), timeout=20)\n"
      "    print('PY-DENIED-REACHED')\n"
      "except urllib.error.HTTPError as e:\n"
      "    print('PY-DENIED %d' % e.code)\n"
      "c = socket.create_connection((addr, plain), timeout=10)\n"
      "print('PEER %s:%d' % c.getpeername()[:2])\n"
      "c.close()\n"
      "for server in ('127.0.0.53', addr, addr6):\n"
      "    for connected in (False, True):\n"
      "        print('UDP %s %s allowed %s' % (server, connected,\n"
      "              udp(server, 'allowed.test', connected)))\n"
      "        print('UDP %s %s secret %s' % (server, connected,\n"
      "              udp(server, 'secret.attacker.example', connected)))\n"
      "    print('TCP %s allowed %s' % (server, tcp(server, 'allowed.test')))\n"
      "    print('TCP %s secret %s' % (server, tcp(server, 'x.attacker.example')))\n"
      "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
      "try:\n"
      "    u.sendto(b'x', (addr, 5353))\n"
      "    print('UDP-OTHER-SENT')\n"
      "except OSError as e:\n"
      "    print('UDP-OTHER-ERRNO %d' % e.errno)\n";
  const std::string a = host_->addr4();
  const std::string script =
      "curl --noproxy '*' -sS -m 20 http://" + a + ":" + std::to_string(plain) +
      "/ | sed 's/^/CURL:/'; " + "curl --noproxy '*' -fsS -m 20 http://" + a + ":" +
      std::to_string(denied) + "/ || echo CURL-DENIED-REFUSED; " + "/usr/bin/python3 -c \"$0\" " +
      a + " " + std::to_string(plain) + " " + std::to_string(denied) + " " + host_->addr6();
  auto r = run(door_run(policy, {"sh", "-c", script, py}));
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("(iptables)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("CURL:origin says hello"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("CURL-DENIED-REFUSED"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("PY:origin says hello"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("PY-DENIED 403"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("PEER " + a + ":" + std::to_string(plain)), std::string::npos) << r.out;
  // IPv4 and IPv6 (ip6tables nat, conntrack's IPv6 tuple), loopback and routed.
  for (const std::string server : {"127.0.0.53", a.c_str(), host_->addr6().c_str()}) {
    for (const char* connected : {"False", "True"}) {
      const std::string at = "UDP " + server + " " + connected;
      EXPECT_NE(r.out.find(at + " allowed rcode=0 from=" + server + ":53 ip=198.18."),
                std::string::npos)
          << at << "\n"
          << r.out;
      EXPECT_NE(r.out.find(at + " secret rcode=3 from=" + server + ":53"), std::string::npos)
          << at << "\n"
          << r.out;
    }
    EXPECT_NE(r.out.find("TCP " + server + " allowed rcode=0 peer=" + server + ":53"),
              std::string::npos)
        << r.out;
    EXPECT_NE(r.out.find("TCP " + server + " secret rcode=3 peer=" + server + ":53"),
              std::string::npos)
        << r.out;
  }
  EXPECT_NE(r.out.find("UDP-OTHER-ERRNO 1"), std::string::npos) << r.out;  // EPERM
  auto allowed = transparent_requests(a, plain);
  ASSERT_FALSE(allowed.empty()) << r.out;
  EXPECT_EQ(allowed.front()["verdict"], "allow");
  auto refused = transparent_requests(a, denied);
  ASSERT_FALSE(refused.empty()) << r.out;
  EXPECT_EQ(refused.front()["verdict"], "deny");
  const std::string id = session_id_in(r.out);
  ASSERT_EQ(id.size(), 12u) << r.out;
  EXPECT_EQ(nat_rules().find("ACP-" + id), std::string::npos) << nat_rules();
  EXPECT_EQ(run({"iptables", "-w", "-S"}).out.find("ACP-" + id), std::string::npos);
}

// What a user gets without --door on the iptables backend: both. curl without proxy settings
// and Node 20's fetch reach the allowed origin; an IPv6 connection is led in too (ip6tables nat,
// IP6T_SO_ORIGINAL_DST) and judged by its original address; the explicit proxy still serves.
TEST_F(IptablesDoor, TheDefaultDoorIsBothOnIptablesForIpv4AndIpv6) {
  const uint16_t plain = free_port(), v6port = free_port();
  ASSERT_TRUE(start_origin(plain, host_->addr4()));
  const auto policy = write_policy("policy.yml",
                                   "default: deny\nrules:\n"
                                   "  - match: { kind: http, host: \"" +
                                       host_->addr4() + "\" }\n    action: allow\n");
  const std::string url4 = "http://" + host_->addr4() + ":" + std::to_string(plain) + "/";
  const std::string url6 = "http://[" + host_->addr6() + "]:" + std::to_string(v6port) + "/";
  // Node 20's fetch ignores HTTPS_PROXY: the first client.
  const std::string node_fetch =
      "fetch(process.argv[1]).then(r => r.text()).then(t => console.log('NODE:' + t.trim()))"
      ".catch(e => { console.log('NODE-FAILED:' + e.message); })";
  const std::string script = "curl --noproxy '*' -sS -m 20 " + url4 + " | sed 's/^/DIRECT:/'; " +
                             "curl -sS -m 20 " + url4 + " | sed 's/^/PROXIED:/'; " +
                             "curl --noproxy '*' -gsS -m 20 " + url6 + " | sed 's/^/V6:/'; " +
                             "node -e \"$0\" " + url4;
  auto argv = acp_run(policy, {"sh", "-c", script, node_fetch}, {"--backend=iptables"});
  argv.erase(std::find(argv.begin(), argv.end(), "--door=proxy"));  // no --door at all
  auto r = run(argv);
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("DIRECT:origin says hello"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("PROXIED:origin says hello"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("NODE:origin says hello"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("V6:{\"error\":\"Blocked by ACP\""), std::string::npos) << r.out;
  EXPECT_FALSE(transparent_requests(host_->addr4(), plain).empty()) << r.out;
  auto v6 = transparent_requests(host_->addr6(), v6port);
  ASSERT_FALSE(v6.empty()) << r.out;
  EXPECT_EQ(v6.front()["verdict"], "deny");
}

// The door's own port, dialled directly, is led in like any other and refused as a local
// destination (conntrack's original is the door itself), audited.
TEST_F(IptablesDoor, TheDoorPortItselfIsRefusedAsALocalDestination) {
  const std::string flag = dir_ + "/door-port";
  const std::string py =
      "import os, socket, sys, time\n"
      "while not os.path.exists(sys.argv[1]) or not open(sys.argv[1]).read().endswith('\\n'):\n"
      "    time.sleep(0.05)\n"
      "port = int(open(sys.argv[1]).read())\n"
      "c = socket.create_connection(('127.0.0.1', port), timeout=10)\n"
      "c.sendall(b'GET / HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\n\\r\\n')\n"
      "try:\n"
      "    print('DOOR-DIRECT ' + c.recv(4096).decode(errors='replace').split('\\r\\n')[0])\n"
      "except OSError as e:\n"
      "    print('DOOR-DIRECT closed %s' % e)\n";
  Proc acp = Proc::start(door_run(write_policy("policy.yml", "default: allow\n"),
                                  {"/usr/bin/python3", "-c", py, flag}));
  // acp's TCP listeners on 127.0.0.1 other than the explicit proxy: the door.
  std::string port;
  for (int i = 0; i < 200 && port.empty(); ++i) {
    auto ss = run({"ss", "-Htlnp", "src", "127.0.0.1"});
    std::istringstream lines(ss.out);
    for (std::string line; std::getline(lines, line);) {
      if (line.find("pid=" + std::to_string(acp.pid) + ",") == std::string::npos) continue;
      auto at = line.find("127.0.0.1:");
      if (at == std::string::npos) continue;
      auto p = line.substr(at + 10, line.find(' ', at) - at - 10);
      if (p != std::to_string(proxy_port_)) port = p;
    }
    if (port.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_FALSE(port.empty()) << "no door listener of acp on 127.0.0.1";
  // `acp status` shows the door with its counters, and the redirect to that port.
  auto st = run({ACP_BINARY, "status"});
  EXPECT_NE(st.out.find("door:       both"), std::string::npos) << st.out;
  EXPECT_NE(st.out.find(" led in, "), std::string::npos) << st.out;
  EXPECT_NE(st.out.find("-t nat -A ACP-"), std::string::npos) << st.out;
  EXPECT_NE(st.out.find("REDIRECT --to-ports " + port), std::string::npos) << st.out;
  std::ofstream(flag) << port << "\n";
  acp.finish();
  EXPECT_EQ(acp.out.find("DOOR-DIRECT HTTP/1.1 200"), std::string::npos) << acp.out;
  EXPECT_TRUE(door_refused("127.0.0.1:" + port)) << acp.out;
}

// An agent that forges its source (IPV6_FREEBIND needs no privilege) gets nothing sent to that
// address: the filter chain drops a packet whose source is no address of this host before the
// door, the DNS or the proxy could answer it (the REJECT's ICMP error would carry its bytes).
TEST_F(IptablesDoor, AForgedIpv6SourceGetsNoReplyFromTheDnsOrTheProxy) {
  const std::string py =
      std::string(acp::vmtest::kForgedIpv6Source) +
      "s = freebound(socket.SOCK_DGRAM)\n"
      "try:\n"
      "    s.sendto(q, ('::1', 53))\n"
      "    s.recvfrom(2048)\n"
      "    print('DNS-REPLIED')\n"
      "except OSError as e:\n"
      "    print('DNS-NO-REPLY %s' % e)\n"
      "import subprocess, time\n"
      "for port in (int(sys.argv[1]), 9):\n"
      "    c = freebound(socket.SOCK_STREAM)\n"
      "    c.setblocking(False)\n"
      "    c.connect_ex(('::1', port))\n"
      "    # A SYN that reached a listener leaves a half-open connection from the forged\n"
      "    # address behind it (its SYN-ACK routed off the machine); ss shows it to anyone.\n"
      "    half = False\n"
      "    for i in range(20):\n"
      "        half = '2001:db8::99' in subprocess.run(['ss', '-Htn', 'state', 'syn-recv'],\n"
      "            capture_output=True, text=True).stdout\n"
      "        if half: break\n"
      "        time.sleep(0.05)\n"
      "    print('HALF-OPEN %d %s' % (port, half))\n"
      "p = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n"
      "p.settimeout(5)\n"
      "p.sendto(q, ('::1', 53))\n"
      "p.recvfrom(2048)\n"
      "print('CONTROL-ANSWERED')\n";
  auto r = run(door_run(write_policy("policy.yml", "default: ask\n"),
                        {"/usr/bin/python3", "-c", py, std::to_string(proxy_port_)}));
  // EPERM: the wall dropped the datagram in OUTPUT, before delivery.
  EXPECT_NE(r.out.find("DNS-NO-REPLY [Errno 1]"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("DNS-REPLIED"), std::string::npos) << r.out;
  // No SYN reached the proxy or the door (TCP retries a dropped SYN: no EPERM to see).
  EXPECT_NE(r.out.find("HALF-OPEN " + std::to_string(proxy_port_) + " False"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("HALF-OPEN 9 False"), std::string::npos) << r.out;
  // The control: the same query from the socket's own address is answered.
  EXPECT_NE(r.out.find("CONTROL-ANSWERED"), std::string::npos) << r.out;
}

// Two sessions at once, each with its own policy, door and audit log (PRODUCT.md: two sessions
// at once do not disturb each other): origin X is allowed and Y denied in session A, the reverse
// in session B. Both agents connect to both origins without proxy settings while both sessions'
// nat and filter chains are installed; each connection is judged by its own session's policy and
// audited in its own log only (had one session's chain caught the other's traffic, it would have
// been led to the wrong door and judged by the wrong policy). After both end, neither session
// leaves a chain or a jump in nat or filter, IPv4 or IPv6.
TEST_F(IptablesDoor, TwoSessionsAtOnceEachJudgeTheirOwnLedInConnections) {
  const uint16_t px = free_port(), py = free_port();
  ASSERT_TRUE(start_origin(px, host_->addr4()));
  ASSERT_TRUE(start_origin(py, host_->addr4()));
  const std::string a = host_->addr4();
  auto policy_allowing = [&](const std::string& name, uint16_t port) {
    return write_policy(name, "default: deny\nrules:\n  - match: { kind: http, host: \"" + a +
                                  "\", port: " + std::to_string(port) + " }\n    action: allow\n");
  };
  // A directory the agents (nobody) may write to: each says it is ready, waits for "go",
  // connects, says it is done, and waits for "end", so that all four connections are made while
  // both sessions' chains are in place.
  const std::string d = dir_ + "/gates";
  ASSERT_EQ(::mkdir(d.c_str(), 0777), 0);
  ::chmod(d.c_str(), 0777);
  auto agent = [&](const std::string& tag) {
    auto wait_for = [&](const std::string& f) {
      return "i=0; while [ ! -e " + d + "/" + f + " ] && [ $i -lt 600 ]; do sleep 0.05; " +
             "i=$((i+1)); done; ";
    };
    std::string s = "touch " + d + "/ready-" + tag + "; " + wait_for("go");
    for (uint16_t port : {px, py}) {
      const std::string p = std::to_string(port);
      // sh has no pipefail: curl's status, not sed's, says whether it was refused.
      s += "if o=$(curl --noproxy '*' -fsS -m 20 http://" + a + ":" + p + "/); then echo \"" + tag +
           "-" + p + ":$o\"; else echo " + tag + "-" + p + ":REFUSED; fi; ";
    }
    return s + "touch " + d + "/done-" + tag + "; " + wait_for("end");
  };
  // Its own proxy port and audit log for each session (acp_run() gives the fixture's).
  auto session_argv = [&](const std::string& tag, const std::string& policy, uint16_t port) {
    auto argv = door_run(policy, {"sh", "-c", agent(tag)});
    for (auto& arg : argv) {
      if (arg.rfind("--proxy-port=", 0) == 0) arg = "--proxy-port=" + std::to_string(port);
      if (arg.rfind("--audit-log=", 0) == 0)
        arg = "--audit-log=" + dir_ + "/audit-" + tag + ".jsonl";
    }
    return argv;
  };
  uint16_t port_b = free_port();
  while (port_b == proxy_port_) port_b = free_port();
  Proc sa = Proc::start(session_argv("A", policy_allowing("policy-a.yml", px), proxy_port_));
  Proc sb = Proc::start(session_argv("B", policy_allowing("policy-b.yml", py), port_b));
  auto ready = [&](const std::string& f) { return std::filesystem::exists(d + "/" + f); };
  const bool both_ready = acp::vmtest::wait_until(
      [&] { return ready("ready-A") && ready("ready-B"); }, std::chrono::seconds(30));
  // Both walls, both redirects: two session chains in nat and in filter while both agents run.
  const std::string nat_during = nat_rules();
  const std::string filter_during =
      run({"iptables", "-w", "-S"}).out + run({"ip6tables", "-w", "-S"}).out;
  std::ofstream(d + "/go") << "go\n";
  acp::vmtest::wait_until([&] { return ready("done-A") && ready("done-B"); },
                          std::chrono::seconds(60));
  std::ofstream(d + "/end") << "end\n";
  sa.finish();
  sb.finish();
  ASSERT_TRUE(both_ready) << sa.out << "\n" << sb.out;
  const std::string ida = session_id_in(sa.out), idb = session_id_in(sb.out);
  ASSERT_EQ(ida.size(), 12u) << sa.out;
  ASSERT_EQ(idb.size(), 12u) << sb.out;
  ASSERT_NE(ida, idb);
  for (const auto& id : {ida, idb}) {
    EXPECT_NE(nat_during.find("-N ACP-" + id), std::string::npos) << nat_during;
    EXPECT_NE(filter_during.find("-N ACP-" + id), std::string::npos) << filter_during;
  }
  EXPECT_EQ(sa.status, 0) << sa.out;
  EXPECT_EQ(sb.status, 0) << sb.out;
  const std::string x = std::to_string(px), y = std::to_string(py);
  EXPECT_NE(sa.out.find("A-" + x + ":origin says hello"), std::string::npos) << sa.out;
  EXPECT_NE(sa.out.find("A-" + y + ":REFUSED"), std::string::npos) << sa.out;
  EXPECT_EQ(sa.out.find("A-" + y + ":origin says hello"), std::string::npos) << sa.out;
  EXPECT_NE(sb.out.find("B-" + y + ":origin says hello"), std::string::npos) << sb.out;
  EXPECT_NE(sb.out.find("B-" + x + ":REFUSED"), std::string::npos) << sb.out;
  EXPECT_EQ(sb.out.find("B-" + x + ":origin says hello"), std::string::npos) << sb.out;
  // Each audit log holds its own session's led-in requests, judged by its own policy.
  auto led_in = [&](const std::string& tag) {
    std::vector<std::pair<uint16_t, std::string>> out;  // port, verdict
    std::istringstream in(slurp(dir_ + "/audit-" + tag + ".jsonl"));
    for (std::string line; std::getline(in, line);) {
      auto e = nlohmann::json::parse(line, nullptr, false);
      if (e.is_discarded() || e.value("kind", "") != "request") continue;
      if (e["action"].value("via", "") != "transparent" || e["action"].value("host", "") != a)
        continue;
      out.emplace_back(e["action"].value("port", 0), e.value("verdict", ""));
    }
    std::sort(out.begin(), out.end());
    return out;
  };
  using Led = std::vector<std::pair<uint16_t, std::string>>;
  auto expect_led = [](Led want) {
    std::sort(want.begin(), want.end());
    return want;
  };
  EXPECT_EQ(led_in("A"), expect_led({{px, "allow"}, {py, "deny"}}))
      << slurp(dir_ + "/audit-A.jsonl");
  EXPECT_EQ(led_in("B"), expect_led({{py, "allow"}, {px, "deny"}}))
      << slurp(dir_ + "/audit-B.jsonl");
  // Nothing of either session is left: no chain, no jump to one, in nat or filter, v4 or v6.
  for (const char* tool : {"iptables", "ip6tables"})
    for (const char* table : {"nat", "filter"}) {
      const std::string rules = run({tool, "-w", "-t", table, "-S"}).out;
      for (const auto& id : {ida, idb})
        EXPECT_EQ(rules.find(id), std::string::npos) << tool << " -t " << table << "\n" << rules;
    }
}

// The IPv4 counterpart of kForgedIpv6Source, with probes: forged(kind, addr, opt) makes a socket
// bound to addr with opt (IP_FREEBIND: any process; IP_TRANSPARENT: CAP_NET_RAW or
// CAP_NET_ADMIN); probe(tag, addr, opt, udp, tcp) sends a datagram (a DNS query) to each
// (name, (host, port)) of udp and a SYN to each of tcp from addr, and prints whether anything
// answered and whether a half-open connection from addr was left behind (ss shows it to anyone);
// control(tag, udp) sends the same datagrams from the socket's own address.
constexpr const char* kForgedIpv4Probe =
    "import os, re, socket, struct, subprocess, sys, time\n"
    "IP_FREEBIND, IP_TRANSPARENT = 15, 19\n"
    "q = struct.pack('>HHHHHH', 9, 0x0100, 1, 0, 0, 0) + b'\\x04exfi\\x04test\\0' + "
    "struct.pack('>HH', 1, 1)\n"
    "def forged(kind, addr, opt):\n"
    "    s = socket.socket(socket.AF_INET, kind)\n"
    "    s.setsockopt(socket.IPPROTO_IP, opt, 1)\n"
    "    s.bind((addr, 0))\n"
    "    s.settimeout(2)\n"
    "    return s\n"
    "def half_open(addr):\n"
    "    pat = re.compile(r'(^|\\s)' + re.escape(addr) + ':')\n"
    "    for i in range(20):\n"
    "        out = subprocess.run(['ss', '-Htn', 'state', 'syn-recv'], capture_output=True,\n"
    "                             text=True).stdout\n"
    "        if pat.search(out): return True\n"
    "        time.sleep(0.05)\n"
    "    return False\n"
    "def probe(tag, addr, opt, udp, tcp):\n"
    "    for name, dst in udp:\n"
    "        try:\n"
    "            s = forged(socket.SOCK_DGRAM, addr, opt)\n"
    "            s.sendto(q, dst)\n"
    "            s.recvfrom(2048)\n"
    "            print('%s REPLIED %s' % (tag, name))\n"
    "        except OSError as e:\n"
    "            print('%s NO-REPLY %s %s' % (tag, name, e))\n"
    "    for name, dst in tcp:\n"
    "        c = forged(socket.SOCK_STREAM, addr, opt)\n"
    "        c.setblocking(False)\n"
    "        err = c.connect_ex(dst)\n"
    "        print('%s HALF-OPEN %s %s (connect errno %d)' % (tag, name, half_open(addr), err))\n"
    "        c.close()\n"
    "def control(tag, udp):\n"
    "    for name, dst in udp:\n"
    "        p = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "        p.settimeout(5)\n"
    "        p.sendto(q, dst)\n"
    "        p.recvfrom(2048)\n"
    "        print('%s CONTROL-ANSWERED %s' % (tag, name))\n";

// A UDP echo server for the forged-source test: answers each datagram and appends its source
// address to a file.
constexpr const char* kUdpEchoPy =
    "import socket, sys\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.bind((sys.argv[1], int(sys.argv[2])))\n"
    "open(sys.argv[3], 'w').close()\n"
    "while True:\n"
    "    d, src = s.recvfrom(2048)\n"
    "    with open(sys.argv[3], 'a') as f: f.write(src[0] + '\\n')\n"
    "    s.sendto(d, src)\n";

// A forged IPv4 source: 10.200.<n>.99, no address of this host, routed (for the test only) via
// the test host's namespace, which drops what it gets for it: a reply stays on the test's veth.
// The agent (nobody) can bind it with IP_FREEBIND, but the kernel does not route from an address
// the host lacks without IP_TRANSPARENT (ENETUNREACH), and ACP drops CAP_NET_RAW and
// CAP_NET_ADMIN from the agent even as root: nothing is sent. A process in the session's cgroup
// that can forge (the test moves a root helper there; IP_TRANSPARENT) is stopped by the wall: the
// filter chain's `-m addrtype ! --src-type LOCAL -j DROP` refuses its datagrams (EPERM in OUTPUT)
// to the session's DNS and to an --allow'ed UDP endpoint (an echo server of the test on this
// host's end of the veth, which logs every sender), and its SYNs to the proxy, to a led-in
// destination and to an --allow'ed TCP endpoint: nothing answers, nothing receives a datagram
// from the forged address, no half-open connection is left. (On IPv4 the kernel itself leaves no
// half-open connection for these SYNs here; the datagrams are what only the wall stops.) The
// same datagrams from the helper's own address are answered: its traffic is the session's.
TEST_F(IptablesDoor, AForgedIpv4SourceGetsNoReplyAndLeavesNoHalfOpenConnection) {
  const std::string a = host_->addr4(), h = host_->host_addr4();
  const std::string forged = a.substr(0, a.rfind('.')) + ".99";
  ASSERT_TRUE(acp::vmtest::sh("ip route add " + forged + "/32 via " + a));
  const uint16_t tcp_port = free_port(), udp_port = free_port();
  {
    auto wrapper = std::exchange(origin_wrapper_, {});  // on this host, not in the namespace
    ASSERT_TRUE(start_origin(tcp_port, h));
    origin_wrapper_ = wrapper;
  }
  const std::string echo_log = dir_ + "/echo.log";
  extra_origins_.push_back(
      Proc::start({"/usr/bin/python3", "-c", kUdpEchoPy, h, std::to_string(udp_port), echo_log},
                  dir_ + "/echo.out"));  // stopped in TearDown
  ASSERT_TRUE(acp::vmtest::wait_until([&] { return std::filesystem::exists(echo_log); },
                                      std::chrono::seconds(10)));
  const std::string d = dir_ + "/gates";
  ASSERT_EQ(::mkdir(d.c_str(), 0777), 0);
  ::chmod(d.c_str(), 0777);
  const std::string udp =
      "[('DNS', ('127.0.0.53', 53)), ('ECHO', ('" + h + "', " + std::to_string(udp_port) + "))]";
  const std::string tcp = "[('PROXY', ('127.0.0.1', " + std::to_string(proxy_port_) +
                          ")), ('DOOR', ('" + a + "', 9)), ('ALLOWED', ('" + h + "', " +
                          std::to_string(tcp_port) + "))]";
  const std::string args = "'" + forged + "', ";
  const std::string agent_py =
      std::string(kForgedIpv4Probe) + "probe('AGENT-FREEBIND', " + args + "IP_FREEBIND, " + udp +
      ", " + tcp + ")\n" + "open(sys.argv[1] + '/pid', 'w').write('%d\\n' % os.getpid())\n" +
      "for i in range(600):\n" + "    if os.path.exists(sys.argv[1] + '/helped'): break\n" +
      "    time.sleep(0.05)\n" + "control('AGENT', " + udp + ")\n";
  Proc acp = Proc::start(acp_run(
      write_policy("policy.yml", "default: allow\n"), {"/usr/bin/python3", "-c", agent_py, d},
      {"--backend=iptables", "--door=both", "--allow=" + h + ":" + std::to_string(tcp_port),
       "--allow=" + h + ":" + std::to_string(udp_port) + "/udp"}));
  const bool agent_ready = acp::vmtest::wait_until(
      [&] { return slurp(d + "/pid").find("\n") != std::string::npos; }, std::chrono::seconds(30));
  // The agent's cgroup (cgroup v2: the "0::" line, read from outside: the agent has its own
  // cgroup namespace, where it is "/"), where the helper moves itself before exec.
  std::string cgroup;
  if (agent_ready) {
    std::string pid = slurp(d + "/pid");
    pid.pop_back();
    std::istringstream lines(slurp("/proc/" + pid + "/cgroup"));
    for (std::string line; std::getline(lines, line);)
      if (line.rfind("0::", 0) == 0) cgroup = line.substr(3);
  }
  auto mount = acp::cgroup2_mount_point();
  Proc helper;
  if (agent_ready && !cgroup.empty() && mount.ok()) {
    const std::string helper_py = std::string(kForgedIpv4Probe) + "probe('HELPER-TRANSPARENT', " +
                                  args + "IP_TRANSPARENT, " + udp + ", " + tcp + ")\n" +
                                  "control('HELPER', " + udp + ")\n";
    helper = run({"sh", "-c", "echo $$ > \"$1\" && exec /usr/bin/python3 -c \"$0\"", helper_py,
                  *mount + cgroup + "/cgroup.procs"});
  }
  std::ofstream(d + "/helped") << "done\n";
  acp.finish();
  acp::vmtest::sh("ip route del " + forged + "/32");
  ASSERT_TRUE(agent_ready) << acp.out;
  ASSERT_FALSE(cgroup.empty()) << slurp(d + "/pid");
  ASSERT_TRUE(mount.ok()) << mount.error().message();
  EXPECT_EQ(acp.status, 0) << acp.out;
  // The agent: the kernel does not route from an address this host lacks.
  for (const char* t : {"DNS", "ECHO"})
    EXPECT_NE(acp.out.find(std::string("AGENT-FREEBIND NO-REPLY ") + t + " [Errno 101]"),
              std::string::npos)
        << acp.out;
  for (const char* t : {"PROXY", "DOOR", "ALLOWED"})
    EXPECT_NE(acp.out.find(std::string("AGENT-FREEBIND HALF-OPEN ") + t + " False"),
              std::string::npos)
        << acp.out;
  for (const char* t : {"DNS", "ECHO"})
    EXPECT_NE(acp.out.find(std::string("AGENT CONTROL-ANSWERED ") + t), std::string::npos)
        << acp.out;
  // The helper that can forge: EPERM, the wall dropped its datagrams in OUTPUT...
  for (const char* t : {"DNS", "ECHO"})
    EXPECT_NE(helper.out.find(std::string("HELPER-TRANSPARENT NO-REPLY ") + t + " [Errno 1]"),
              std::string::npos)
        << helper.out;
  EXPECT_EQ(helper.out.find("REPLIED"), std::string::npos) << helper.out;
  // ...so the echo server heard only the agent's and the helper's own addresses;
  const std::string heard = slurp(echo_log);
  EXPECT_EQ(acp::vmtest::count_lines(heard, forged), 0u) << heard;
  EXPECT_GE(acp::vmtest::count_lines(heard, h), 2u) << heard;
  // ...and no SYN of it left a half-open connection.
  for (const char* t : {"PROXY", "DOOR", "ALLOWED"})
    EXPECT_NE(helper.out.find(std::string("HELPER-TRANSPARENT HALF-OPEN ") + t + " False"),
              std::string::npos)
        << helper.out;
  for (const char* t : {"DNS", "ECHO"})
    EXPECT_NE(helper.out.find(std::string("HELPER CONTROL-ANSWERED ") + t), std::string::npos)
        << helper.out;
}

// A killed acp leaves the nat chain with the filter chain (the agent's connections are led to a
// door nobody holds: refused, never let out), until `acp gc --kill` removes both.
TEST_F(IptablesDoor, AKilledAcpLeavesTheAgentWalledUntilGcRemovesBothTables) {
  const uint16_t plain = free_port();
  ASSERT_TRUE(start_origin(plain, host_->addr4()));
  // A directory the agent (nobody) may write to, with the fifo it waits on.
  const std::string d = dir_ + "/gates";
  ASSERT_EQ(::mkdir(d.c_str(), 0777), 0);
  ::chmod(d.c_str(), 0777);
  const std::string gate = d + "/gate";
  ASSERT_EQ(::mkfifo(gate.c_str(), 0666), 0);
  ::chmod(gate.c_str(), 0666);
  const std::string url = "http://" + host_->addr4() + ":" + std::to_string(plain) + "/";
  const std::string script =
      "echo ready > " + d + "/ready; read x < " + gate + "; curl --noproxy '*' -sS -m 5 " + url +
      " > " + d + "/after 2>&1 || echo REFUSED >> " + d + "/after; echo done > " + d + "/finished";
  Proc s =
      Proc::start(door_run(write_policy("policy.yml", "default: allow\n"), {"sh", "-c", script}));
  for (int i = 0; i < 400 && !std::filesystem::exists(d + "/ready"); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(std::filesystem::exists(d + "/ready")) << "the agent never got ready";
  const std::string nat_before = nat_rules();
  ASSERT_NE(nat_before.find("REDIRECT"), std::string::npos) << nat_before;
  ASSERT_EQ(::kill(s.pid, SIGKILL), 0);
  s.reap();
  EXPECT_EQ(nat_rules(), nat_before) << "the nat chain stays with the filter chain";
  std::ofstream(gate) << "go\n";
  for (int i = 0; i < 400 && !std::filesystem::exists(d + "/finished"); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const std::string after = slurp(d + "/after");
  EXPECT_NE(after.find("REFUSED"), std::string::npos) << after;
  EXPECT_EQ(after.find("origin says hello"), std::string::npos) << after;
  auto gc = run({ACP_BINARY, "gc", "--kill"});
  EXPECT_EQ(gc.status, 0) << gc.out;
  EXPECT_EQ(nat_rules().find("ACP-"), std::string::npos) << nat_rules();
  auto chains = acp::backend::list_iptables_chains(acp::backend::kSessionChainPrefix);
  ASSERT_TRUE(chains.ok());
  EXPECT_TRUE(chains->empty());
}

}  // namespace
