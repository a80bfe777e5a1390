// CONNECT tunnels to plain-HTTP servers under the real `acp run` (issue 13, item 6): a tunnel
// whose client speaks HTTP is judged request by request, so a `path` deny and a `kind: mcp`
// deny hold inside it as they do for absolute-form requests; an MCP body ACP cannot read is
// refused where a kind: mcp rule applies, whatever its headers say. The attackers are real
// clients inside the confined agent (curl --proxytunnel, python3 http.client through
// set_tunnel, raw sockets); the servers are python3 http.server and the official MCP SDK
// server (tests/mcp/server.mjs). Controls show the allowed request working the same way.
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "support/run_fixture.hpp"

namespace {

namespace fs = std::filesystem;
using acp::vmtest::count_lines;
using acp::vmtest::free_port;
using acp::vmtest::port_answers;
using acp::vmtest::Proc;
using acp::vmtest::run;
using acp::vmtest::slurp;
using acp::vmtest::wait_until;
using namespace std::chrono_literals;

const std::string kMcpDir = std::string(ACP_SOURCE_DIR) + "/tests/mcp";

class RunTunnelInspect : public acp::vmtest::RunFixture {
 protected:
  void TearDown() override {
    stop(mcp_);
    stop(own_);
    stop(silent_);
    RunFixture::TearDown();
  }
  static void stop(Proc& p) {
    if (p.pid <= 0) return;
    kill(p.pid, SIGTERM);
    p.finish();
    p.pid = -1;
  }
  std::string readable(const std::string& name, const std::string& text) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    fs::permissions(path, fs::perms::owner_all | fs::perms::group_read | fs::perms::others_read);
    return path;
  }
  // A python3 http.server speaking HTTP/1.1 (kept alive) on 127.0.0.1:port, its request log
  // on its output; stopped (and the log read) by stop(own_).
  bool start_keepalive_origin(uint16_t port) {
    static const char* kServer =
        "import functools, http.server, sys\n"
        "class H(http.server.SimpleHTTPRequestHandler):\n"
        "    protocol_version = 'HTTP/1.1'\n"
        "h = functools.partial(H, directory=sys.argv[2])\n"
        "http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), h).serve_forever()\n";
    own_ = Proc::start({"python3", "-u", "-c", kServer, std::to_string(port), dir_ + "/www"});
    return wait_until([&] { return port_answers(port); }, 10s);
  }
  // The SDK's Streamable HTTP server; its port, or 0. Its log: mcp_log().
  uint16_t start_mcp_server() {
    mcp_ = Proc::start({"node", kMcpDir + "/server.mjs", "http", mcp_log()});
    std::string line;
    char c;
    while (line.find('\n') == std::string::npos && ::read(mcp_.out_fd, &c, 1) == 1) line += c;
    if (line.rfind("PORT ", 0) != 0) return 0;
    return static_cast<uint16_t>(std::stoi(line.substr(5)));
  }
  std::string mcp_log() const { return dir_ + "/mcp-server.log"; }
  std::vector<nlohmann::json> judged(const std::string& kind) {
    std::vector<nlohmann::json> out;
    for (auto& e : audit_entries())
      if (e.contains("action") && e["action"].value("kind", "") == kind) out.push_back(e);
    return out;
  }

  Proc mcp_;
  Proc own_;
  Proc silent_;
};

// An MCP client in python3: http.client through set_tunnel, so every request goes inside one
// CONNECT tunnel (kept alive) to the plain-HTTP SDK server. argv: proxy port, server port.
const char* kTunnelMcpClient = R"PY(
import http.client, json, sys
proxy, server = int(sys.argv[1]), int(sys.argv[2])
c = http.client.HTTPConnection('127.0.0.1', proxy, timeout=30)
c.set_tunnel('127.0.0.1', server)
sid = None
def call(msg, accept_split=False, pad=0):
    body = json.dumps(msg)
    if pad:
        msg['params']['arguments']['pad'] = 'a' * pad
        body = json.dumps(msg)
    c.putrequest('POST', '/mcp', skip_accept_encoding=True)
    c.putheader('Content-Type', 'application/json')
    if accept_split:
        c.putheader('Accept', 'application/json')
        c.putheader('Accept', 'text/event-stream')
    else:
        c.putheader('Accept', 'application/json, text/event-stream')
    if sid:
        c.putheader('Mcp-Session-Id', sid)
    c.putheader('Content-Length', str(len(body)))
    c.endheaders(body.encode())
    r = c.getresponse()
    data = r.read().decode()
    return r.status, r.getheader('mcp-session-id'), data
def rpc(data):
    for line in data.splitlines():
        if line.startswith('data: '):
            return json.loads(line[6:])
    return json.loads(data) if data.strip() else None
st, sid, data = call({'jsonrpc': '2.0', 'id': 1, 'method': 'initialize', 'params': {
    'protocolVersion': '2025-03-26', 'capabilities': {},
    'clientInfo': {'name': 'tunnel', 'version': '1'}}})
print('INIT', st, bool(sid), flush=True)
call({'jsonrpc': '2.0', 'method': 'notifications/initialized'})
for name in sys.argv[3].split(','):
    st, _, data = call({'jsonrpc': '2.0', 'id': 2, 'method': 'tools/call', 'params': {
        'name': name, 'arguments': {'path': '/etc/x', 'text': 'hi'}}})
    print('CALL', name, st, json.dumps(rpc(data)), flush=True)
if len(sys.argv) > 4:
    # The same denied call, over the inspection limit, with Accept split in two lines.
    try:
        st, _, data = call({'jsonrpc': '2.0', 'id': 3, 'method': 'tools/call', 'params': {
            'name': 'delete_file', 'arguments': {'path': '/etc/y'}}}, accept_split=True,
            pad=2 * 1024 * 1024)
        print('BIG', st, data[:200], flush=True)
    except Exception as e:
        print('BIG closed', type(e).__name__, flush=True)
)PY";

// The issue's attack: the same tools/call a `kind: mcp` deny refuses as an absolute-form
// request, sent inside a CONNECT tunnel to the plain-HTTP MCP server. Refused by ACP (JSON-RPC
// -32001); the allowed tool on the same kept-alive tunnel runs.
TEST_F(RunTunnelInspect, McpDenyHoldsInsideAConnectTunnel) {
  if (!fs::exists(kMcpDir + "/node_modules/@modelcontextprotocol/sdk/package.json"))
    GTEST_SKIP() << "tests/mcp/node_modules is not installed: run scripts/install-mcp-deps.sh";
  const uint16_t port = start_mcp_server();
  ASSERT_NE(port, 0) << "the MCP SDK server did not start";
  auto pol = write_policy("mcp.yml",
                          "default: deny\nrules:\n"
                          "  - match: { kind: http, host: \"127.0.0.1\", port: " +
                              std::to_string(port) +
                              " }\n    action: allow\n"
                              "  - match: { kind: mcp, server: \"127.0.0.1\", tool: "
                              "delete_file }\n    action: deny\n"
                              "  - match: { kind: mcp, server: \"127.0.0.1\", tool: "
                              "echo }\n    action: allow\n");
  auto client = readable("client.py", kTunnelMcpClient);
  auto r = run(acp_run(pol, {"/usr/bin/python3", client, std::to_string(proxy_port_),
                             std::to_string(port), "delete_file,echo", "big"}));
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("INIT 200 True"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("CALL delete_file 200"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"code\": -32001"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("echo: hi"), std::string::npos) << r.out;
  // Over the limit with a split Accept: refused before anything reaches the server.
  EXPECT_TRUE(r.out.find("BIG 413") != std::string::npos ||
              r.out.find("BIG closed") != std::string::npos)
      << r.out;
  const std::string log = slurp(mcp_log());
  EXPECT_EQ(count_lines(log, "\"tool\":\"delete_file\""), 0u) << log;
  EXPECT_EQ(count_lines(log, "delete_file"), 0u) << log;  // never even received
  EXPECT_EQ(count_lines(log, "\"tool\":\"echo\""), 1u) << log;
  // Every request in the tunnel was judged: the CONNECT, then each POST, then each tool call.
  size_t connects = 0, posts = 0;
  for (auto& e : judged("http")) {
    connects += e["action"].value("method", "") == "CONNECT";
    posts += e["action"].value("method", "") == "POST";
  }
  EXPECT_EQ(connects, 1u);
  EXPECT_EQ(posts, 5u);  // initialize, initialized, 2 tool calls, the big one
  auto mcp = judged("mcp");
  ASSERT_EQ(mcp.size(), 2u) << slurp(audit());
  EXPECT_EQ(mcp[0]["action"].value("tool", ""), "delete_file");
  EXPECT_EQ(mcp[0].value("verdict", ""), "deny");
  EXPECT_EQ(mcp[1]["action"].value("tool", ""), "echo");
  EXPECT_EQ(mcp[1].value("verdict", ""), "allow");
}

// Absolute-form too: a body over the inspection limit with Accept split in two lines (the
// server joins them) used to be forwarded unread. Refused: the server never sees it.
TEST_F(RunTunnelInspect, OversizedMcpBodyWithASplitAcceptIsRefused) {
  if (!fs::exists(kMcpDir + "/node_modules/@modelcontextprotocol/sdk/package.json"))
    GTEST_SKIP() << "tests/mcp/node_modules is not installed: run scripts/install-mcp-deps.sh";
  const uint16_t port = start_mcp_server();
  ASSERT_NE(port, 0) << "the MCP SDK server did not start";
  // No kind: mcp rule names this server: the transport's signs alone must be read right.
  auto pol = write_policy("mcp.yml",
                          "default: deny\nrules:\n"
                          "  - match: { kind: http, host: \"127.0.0.1\", port: " +
                              std::to_string(port) + " }\n    action: allow\n");
  auto body = readable("big.json", R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":)"
                                   R"({"name":"delete_file","arguments":{"path":"/etc/z","pad":")" +
                                       std::string(2 * 1024 * 1024, 'a') + "\"}}}");
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/mcp";
  auto r = run(acp_run(
      pol, {"/bin/sh", "-c",
            "curl -sS -o /dev/null -w 'PLAIN %{http_code}\\n' -H 'Content-Type: application/json' "
            "-H 'Accept: application/json' -H 'Accept: text/event-stream' --data-binary @" +
                body + " " + url +
                "; curl -sS -p -o /dev/null -w 'TUNNEL %{http_code}\\n' "
                "-H 'Content-Type: application/json' -H 'Accept: application/json' "
                "-H 'Accept: text/event-stream' --data-binary @" +
                body + " " + url}));
  EXPECT_NE(r.out.find("PLAIN 413"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("TUNNEL 413"), std::string::npos) << r.out;
  EXPECT_EQ(count_lines(slurp(mcp_log()), "delete_file"), 0u) << slurp(mcp_log());
}

// The docs' `path: "/admin/*"` deny through a CONNECT tunnel to the same plain-HTTP host:port:
// refused (curl -p and python3 http.client on one kept-alive tunnel), and the origin's log never
// shows it; /pub goes through the same way.
TEST_F(RunTunnelInspect, PathDenyHoldsInsideAConnectTunnel) {
  fs::create_directories(dir_ + "/www/admin");
  std::ofstream(dir_ + "/www/admin/x") << "secret admin page";
  std::ofstream(dir_ + "/www/pub") << "public page";
  const uint16_t port = free_port();
  ASSERT_TRUE(start_keepalive_origin(port)) << "the origin did not start";
  const std::string p = std::to_string(port);
  auto pol = write_policy("path.yml",
                          "default: deny\nrules:\n"
                          "  - match: { kind: http, host: \"127.0.0.1\", path: "
                          "\"/admin/*\" }\n    action: deny\n"
                          "  - match: { kind: http, host: \"127.0.0.1\", port: " +
                              p + " }\n    action: allow\n");
  auto client = readable("keepalive.py", R"PY(
import http.client, sys
c = http.client.HTTPConnection('127.0.0.1', int(sys.argv[1]), timeout=30)
c.set_tunnel('127.0.0.1', int(sys.argv[2]))
for path in ['/pub', '/admin/x', '/pub']:
    c.request('GET', path)
    r = c.getresponse()
    body = r.read().decode()
    print('KEEP', path, r.status, body[:40], flush=True)
)PY");
  auto r = run(acp_run(
      pol, {"/bin/sh", "-c",
            "curl -sS -p -w ' ADMIN %{http_code}\\n' http://127.0.0.1:" + p +
                "/admin/x; curl -sS -p -w ' PUB %{http_code}\\n' http://127.0.0.1:" + p +
                "/pub; /usr/bin/python3 " + client + " " + std::to_string(proxy_port_) + " " + p}));
  EXPECT_NE(r.out.find(" ADMIN 403"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("public page PUB 200"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("KEEP /pub 200 public page"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("KEEP /admin/x 403"), std::string::npos) << r.out;
  EXPECT_EQ(count_lines(r.out, "KEEP /pub 200 public page"), 2u) << r.out;
  EXPECT_EQ(r.out.find("secret admin page"), std::string::npos) << r.out;
  stop(own_);
  EXPECT_EQ(count_lines(own_.out, "/admin"), 0u) << own_.out;
  EXPECT_EQ(count_lines(own_.out, "\"GET /pub HTTP/1.1\" 200"), 3u) << own_.out;
  // One tunnel for the python client: its three requests were each judged.
  size_t admin_denied = 0;
  for (auto& e : judged("http"))
    admin_denied += e["action"].value("path", "") == "/admin/x" && e.value("verdict", "") == "deny";
  EXPECT_EQ(admin_denied, 2u) << slurp(audit());
}

// A server that speaks first (an SMTP-like banner) still works through CONNECT where a path
// rule applies: what comes first is the server's, not HTTP. A client that sends first bytes
// that are neither HTTP nor TLS to a silent server there is refused, and the server never gets
// them.
TEST_F(RunTunnelInspect, ServerSpeaksFirstWorksUnreadableClientBytesAreRefused) {
  static const char* kServer =
      "import socket, sys\n"
      "port, log, banner = int(sys.argv[1]), sys.argv[2], sys.argv[3] == 'banner'\n"
      "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
      "s.bind(('127.0.0.1', port)); s.listen(8)\n"
      "while True:\n"
      "    c, _ = s.accept()\n"
      "    if banner: c.sendall(b'220 banner ready\\r\\n')\n"
      "    c.settimeout(10)\n"
      "    try:\n"
      "        data = c.recv(1024)\n"
      "    except OSError:\n"
      "        data = b''\n"
      "    open(log, 'ab').write(b'GOT ' + data + b'\\n')\n"
      "    if data: c.sendall(b'250 got ' + data)\n"
      "    c.close()\n";
  const uint16_t talker = free_port();
  const std::string talker_log = dir_ + "/talker.log";
  own_ =
      Proc::start({"python3", "-u", "-c", kServer, std::to_string(talker), talker_log, "banner"});
  ASSERT_TRUE(wait_until([&] { return port_answers(talker); }, 10s));
  const uint16_t silent = free_port();
  const std::string silent_log = dir_ + "/silent.log";
  silent_ = Proc::start({"python3", "-u", "-c", kServer, std::to_string(silent), silent_log, "-"});
  ASSERT_TRUE(wait_until([&] { return port_answers(silent); }, 10s));
  // Both probes connected: forget what they left in the logs.
  ASSERT_TRUE(wait_until(
      [&] {
        return count_lines(slurp(silent_log), "GOT") == 1 &&
               count_lines(slurp(talker_log), "GOT") == 1;
      },
      20s));
  fs::remove(silent_log);
  fs::remove(talker_log);
  auto pol = write_policy("banner.yml",
                          "default: deny\nrules:\n"
                          "  - match: { kind: http, host: \"127.0.0.1\", path: "
                          "\"/admin/*\" }\n    action: deny\n"
                          "  - match: { kind: http, host: \"127.0.0.1\" }\n"
                          "    action: allow\n");
  auto client = readable("banner.py", R"PY(
import socket, sys
proxy, port, first = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = socket.create_connection(('127.0.0.1', proxy), timeout=20)
s.sendall(('CONNECT 127.0.0.1:%s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\n\r\n' % (port, port)).encode())
head = b''
while b'\r\n\r\n' not in head:
    head += s.recv(1)
print('CONNECT', head.split(b'\r\n')[0].decode(), flush=True)
if first == 'server':
    print('BANNER', s.recv(1024).decode().strip(), flush=True)
    s.sendall(b'QUIT\r\n')
else:
    s.sendall(b'GET /admin/x\r\n\r\n')  # HTTP/0.9: what a lenient server would still serve
out = b''
while True:
    d = s.recv(1024)
    if not d:
        break
    out += d
print('REPLY', first, repr(out), flush=True)
)PY");
  const std::string run_client = "/usr/bin/python3 " + client + " " + std::to_string(proxy_port_);
  auto r = run(acp_run(pol, {"/bin/sh", "-c",
                             run_client + " " + std::to_string(talker) + " server; " + run_client +
                                 " " + std::to_string(silent) + " client"}));
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(count_lines(r.out, "CONNECT HTTP/1.1 200 Connection Established"), 2u) << r.out;
  EXPECT_NE(r.out.find("BANNER 220 banner ready"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("REPLY server b'250 got QUIT\\r\\n'"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("REPLY client b''"), std::string::npos) << r.out;  // refused: closed
  EXPECT_TRUE(wait_until([&] { return count_lines(slurp(silent_log), "GOT") == 1; }, 20s));
  EXPECT_EQ(slurp(silent_log), "GOT \n");  // connected by the proxy, never sent a byte
  EXPECT_EQ(slurp(talker_log), "GOT QUIT\r\n\n");
  size_t refused = 0;
  for (auto& e : audit_entries()) refused += e.value("event", "") == "tunnel_refused";
  EXPECT_EQ(refused, 1u) << slurp(audit());
}

}  // namespace
