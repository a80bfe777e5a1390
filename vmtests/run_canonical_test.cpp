// Judge the canonical form, forward the same form (issue 13, item 4) under the real `acp run`:
// real clients inside the confined agent (curl --path-as-is, python3 http.client) try the
// spellings that used to pass a path deny or a literal-IP deny, against a python3 origin that
// logs the raw request target it receives, and a test host in a network namespace on a
// private and a unique-local address.
#include <sys/socket.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "support/run_fixture.hpp"
#include "support/wall_fixture.hpp"

namespace {

using acp::vmtest::count_lines;
using acp::vmtest::free_port;
using acp::vmtest::Proc;
using acp::vmtest::run;
using acp::vmtest::slurp;
using namespace std::chrono_literals;

// An origin that writes every request target, as received, to a log and answers
// "seen <target>": what the origin executes is what it logs.
constexpr const char* kLoggingOrigin =
    "import http.server, sys\n"
    "port, log = int(sys.argv[1]), sys.argv[2]\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        with open(log, 'a') as f:\n"
    "            f.write(self.path + ' HOST=' + str(self.headers.get('Host')) + '\\n')\n"
    "        body = ('seen ' + self.path).encode()\n"
    "        self.send_response(200)\n"
    "        self.send_header('Content-Length', str(len(body)))\n"
    "        self.end_headers()\n"
    "        self.wfile.write(body)\n"
    "    def log_message(self, *a):\n"
    "        pass\n"
    "http.server.ThreadingHTTPServer(('127.0.0.1', port), H).serve_forever()\n";

// GET each URL through HTTP_PROXY with http.client, the URL sent exactly as given (absolute
// form, no client-side normalization); prints "<url> HTTP=<status> <body or reason>".
constexpr const char* kRawProxyClient =
    "import http.client, os, sys, urllib.parse\n"
    "p = urllib.parse.urlsplit(os.environ['HTTP_PROXY'])\n"
    "for url in sys.argv[1:]:\n"
    "    c = http.client.HTTPConnection(p.hostname, p.port, timeout=20)\n"
    "    c.putrequest('GET', url, skip_host=True)\n"
    "    c.putheader('Host', urllib.parse.urlsplit(url).netloc)\n"
    "    c.endheaders()\n"
    "    r = c.getresponse()\n"
    "    print(url, 'HTTP=%d' % r.status, r.read().decode(errors='replace').replace('\\n', ' '))\n"
    "    c.close()\n";

class RunCanonical : public acp::vmtest::RunFixture {
 protected:
  // Starts the logging origin on a free loopback port; returns the port (0: did not start).
  uint16_t start_logging_origin() {
    const uint16_t port = free_port();
    extra_origins_.push_back(
        Proc::start({"python3", "-c", kLoggingOrigin, std::to_string(port), origin_log()}));
    acp::vmtest::wait_until([&] { return acp::vmtest::port_answers(port); }, 10s);
    return acp::vmtest::port_answers(port) ? port : 0;
  }
  std::string origin_log() const { return dir_ + "/origin-requests.log"; }
  std::vector<nlohmann::json> request_entries() {
    std::vector<nlohmann::json> out;
    for (auto& e : audit_entries())
      if (e.value("kind", "") == "request") out.push_back(e);
    return out;
  }
};

// `deny path "/admin/*"` holds against every spelling an origin reads as /admin/...: each is
// refused (403 by the rule, or 400 when the spelling stays ambiguous) and the origin's log never
// shows an /admin request; a /pub request reaches it, in the canonical form that was judged.
TEST_F(RunCanonical, PathDenyHoldsAgainstEverySpelling) {
  const uint16_t port = start_logging_origin();
  ASSERT_NE(port, 0) << "the logging origin did not start";
  const std::string p = std::to_string(port);
  auto pol = write_policy("paths.yml",
                          "default: deny\nrules:\n"
                          "  - match: { kind: http, host: \"127.0.0.1\", path: \"/admin/*\" }\n"
                          "    action: deny\n"
                          "  - match: { kind: http, host: \"127.0.0.1\", port: " +
                              p + " }\n    action: allow\n");
  const std::vector<std::string> attacks = {
      "/admin/x",          "/%61dmin/x",          "/%61%64%6d%69%6e/x",
      "/./admin/x",        "//admin/x",           "/admin//x",
      "/pub/../admin/x",   "/pub/%2e%2e/admin/x", "/pub/%2E%2E/admin/x",
      "/pub/.%2e/admin/x", "/%2e/admin/x",        "/pub/..%2Fadmin/x",
      "/admin%2Fx",        "/admin%2fx",          "/admin;/x",
      "/..;/admin/x",      "/admin%5Cx",          "/pub/..\\admin/x",
      "/admin%00/x",       "/%2e%2e/admin/x",
  };
  std::string script;
  for (const auto& a : attacks)
    script += "printf '%s ' '" + a + "'; curl -s -o /dev/null -w 'HTTP=%{http_code}\\n' " +
              "--max-time 20 --path-as-is 'http://127.0.0.1:" + p + a + "'\n";
  // Controls: an allowed path, and one whose spelling is not canonical.
  script +=
      "curl -s --max-time 20 --path-as-is -w ' HTTP=%{http_code}\\n' "
      "'http://127.0.0.1:" +
      p + "/pub/x'\n";
  script +=
      "curl -s --max-time 20 --path-as-is -w ' HTTP=%{http_code}\\n' "
      "'http://127.0.0.1:" +
      p + "/pub/./y/..//%78%7e?q=%7e%2f'\n";
  auto r = run(acp_run(pol, {"sh", "-c", script}));
  EXPECT_EQ(r.status, 0) << r.out;
  for (const auto& a : attacks) {
    const size_t at = r.out.find(a + " HTTP=");
    ASSERT_NE(at, std::string::npos) << a << "\n" << r.out;
    const std::string code = r.out.substr(at + a.size() + 6, 3);
    EXPECT_TRUE(code == "403" || code == "400") << a << " got " << code << "\n" << r.out;
  }
  EXPECT_NE(r.out.find("seen /pub/x HTTP=200"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("seen /pub/x~?q=~%2F HTTP=200"), std::string::npos) << r.out;
  const std::string log = slurp(origin_log());
  EXPECT_EQ(log.find("admin"), std::string::npos) << log;
  EXPECT_EQ(count_lines(log, "/pub/x HOST=127.0.0.1:" + p), 1u) << log;
  EXPECT_EQ(count_lines(log, "/pub/x~?q=~%2F HOST=127.0.0.1:" + p), 1u) << log;
  EXPECT_EQ(count_lines(log, "HOST="), 2u) << log;
  // The audit has what was judged: the canonical path, the rule that denied it.
  size_t denied_by_rule = 0;
  for (const auto& e : request_entries()) {
    const std::string path = e["action"].value("path", "");
    if (path.rfind("/admin/", 0) == 0) {
      EXPECT_EQ(e.value("verdict", ""), "deny") << e.dump();
      EXPECT_EQ(e["rule"].value("index", -1), 0) << e.dump();
      ++denied_by_rule;
    }
  }
  EXPECT_GE(denied_by_rule, 10u) << slurp(audit());
}

// A deny rule naming 127.0.0.1 (written here as 0x7f.1) holds against every spelling of that
// address: each request is judged as host 127.0.0.1 and denied by the rule, even though
// `host: "*"` allows everything else.
TEST_F(RunCanonical, LiteralIpDenyHoldsAgainstEverySpelling) {
  const uint16_t port = start_logging_origin();
  ASSERT_NE(port, 0) << "the logging origin did not start";
  const std::string p = std::to_string(port);
  auto pol = write_policy("ip.yml",
                          "default: deny\nrules:\n"
                          "  - match: { kind: http, host: \"0x7f.1\" }\n    action: deny\n"
                          "  - match: { kind: http, host: \"*\" }\n    action: allow\n");
  const std::vector<std::string> spellings = {
      "127.0.0.1",  "127.1",      "2130706433",         "0x7f.0.0.1",      "0x7f000001",
      "0177.0.0.1", "127.0.0.1.", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "0177.1"};
  std::vector<std::string> argv = {"/usr/bin/python3", "-c", kRawProxyClient};
  for (const auto& s : spellings) argv.push_back("http://" + s + ":" + p + "/x");
  auto r = run(acp_run(pol, argv));
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(acp::vmtest::count_lines(r.out, "HTTP=403"), spellings.size()) << r.out;
  EXPECT_EQ(slurp(origin_log()), "");
  auto req = request_entries();
  ASSERT_EQ(req.size(), spellings.size()) << slurp(audit());
  for (const auto& e : req) {
    EXPECT_EQ(e["action"].value("host", ""), "127.0.0.1") << e.dump();
    EXPECT_EQ(e.value("verdict", ""), "deny") << e.dump();
    EXPECT_EQ(e["rule"].value("index", -1), 0) << e.dump();
  }
  // A name that ends in a number but is no address is refused before anything is judged.
  auto bad = run(acp_run(pol, {"/usr/bin/python3", "-c", kRawProxyClient,
                               "http://1.2.3.256:" + p + "/", "http://example.123:" + p + "/"}));
  EXPECT_EQ(acp::vmtest::count_lines(bad.out, "HTTP=400"), 2u) << bad.out;
  EXPECT_NE(bad.out.find("ends in a number"), std::string::npos) << bad.out;
}

// A private (10.200.N.2) and a unique-local (fd00:acb:N::2) address of a test host in a network
// namespace: `host: "*"` does not reach them (403 naming the range, the host never sees a
// connection); a rule naming the address literally does.
TEST_F(RunCanonical, PrivateAndUniqueLocalAddressesNeedALiteralRule) {
  auto host = acp::vmtest::NetnsHost::create();
  ASSERT_TRUE(host.ok()) << host.error().message();
  auto& h = **host;
  auto t4 = h.bind(SOCK_STREAM, h.addr4());
  auto t6 = h.bind(SOCK_STREAM, h.addr6());
  ASSERT_TRUE(t4.ok() && t6.ok());
  const std::string url4 = "http://" + h.addr4() + ":" + std::to_string(t4->port) + "/";
  const std::string url6 = "http://[" + h.addr6() + "]:" + std::to_string(t6->port) + "/";
  acp::vmtest::Responder responder;
  responder.serve(std::move(*t4));
  responder.serve(std::move(*t6));

  auto glob = write_policy("glob.yml",
                           "default: deny\nrules:\n  - match: { kind: http, host: \"*\" }\n"
                           "    action: allow\n");
  auto r = run(acp_run(glob, {"/usr/bin/python3", "-c", kRawProxyClient, url4, url6}));
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(acp::vmtest::count_lines(r.out, "HTTP=403"), 2u) << r.out;
  EXPECT_NE(r.out.find("a private address (RFC 1918)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("a unique local address (fc00::/7)"), std::string::npos) << r.out;
  EXPECT_EQ(responder.accepted(), 0u);

  auto literal = write_policy("literal.yml",
                              "default: deny\nrules:\n"
                              "  - match: { kind: http, host: \"" +
                                  h.addr4() +
                                  "\" }\n    action: allow\n"
                                  "  - match: { kind: http, host: \"[" +
                                  h.addr6() + "]\" }\n    action: allow\n");
  auto r2 = run(acp_run(literal, {"/usr/bin/python3", "-c", kRawProxyClient, url4, url6}));
  EXPECT_EQ(r2.status, 0) << r2.out;
  EXPECT_EQ(acp::vmtest::count_lines(r2.out, "HTTP=200 ok"), 2u) << r2.out;
  EXPECT_EQ(responder.accepted(), 2u);
}

}  // namespace
