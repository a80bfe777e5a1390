// TLS inspection end to end at the ProxyServer: real clients (curl, python3, a raw OpenSSL
// client) through a ProxyServer with a TlsInspector to a real HTTPS origin on loopback whose
// certificate comes from a test CA made here with the openssl tool. The CA of the inspector is
// created in the test's temporary directory.
#include "acp/proxy/tls_inspector.hpp"

#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <boost/asio/ssl.hpp>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "acp/proxy/mcp.hpp"
#include "acp/proxy/proxy_server.hpp"
#include "channel_test_support.hpp"
#include "proxy_test_support.hpp"

namespace {

using namespace acp;
using namespace acp::proxy;
using namespace acp::proxy::testing;
namespace fs = std::filesystem;
namespace ssl = boost::asio::ssl;
using acp::testing::HttpReply;
using acp::testing::HttpRequestMsg;
using acp::testing::TestHttpServer;

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

mode_t mode_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

// The origin answers every request with the target and Host it got.
HttpReply echo(const HttpRequestMsg& req) {
  return {200, "application/json",
          nlohmann::json{{"target", std::string(req.target())},
                         {"host", std::string(req[boost::beast::http::field::host])}}
              .dump()};
}

class TlsInspectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/acp-tls-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    // The origin's world: a test CA, a leaf for localhost/127.0.0.1 from it, and a
    // self-signed leaf for the same names that nobody trusts (the "bad" origin).
    const std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    std::ofstream(file("ext.cnf")) << "subjectAltName=DNS:localhost,IP:127.0.0.1\n";
    std::ofstream(file("ip-only.cnf")) << "subjectAltName=IP:127.0.0.1\n";
    auto r = run_command(
        "cd " + dir_ + " && openssl req -x509" + ec +
        " -keyout test-ca.key -out test-ca.crt -days 2 -subj /CN=acp-test-origin-ca"
        " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign"
        " 2>&1 && openssl req" +
        ec +
        " -keyout origin.key -out origin.csr -subj /CN=localhost 2>&1"
        " && openssl x509 -req -in origin.csr -CA test-ca.crt -CAkey test-ca.key"
        " -CAcreateserial -days 2 -extfile ext.cnf -out origin.crt 2>&1"
        " && openssl req -new -key origin.key -subj /CN=127.0.0.1 -out ip-only.csr 2>&1"
        " && openssl x509 -req -in ip-only.csr -CA test-ca.crt -CAkey test-ca.key"
        " -CAcreateserial -days 2 -extfile ip-only.cnf -out ip-only.crt 2>&1"
        " && openssl req -x509" +
        ec +
        " -keyout bad.key -out bad.crt -days 2 -subj /CN=localhost"
        " -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>&1");
    ASSERT_EQ(r.status, 0) << r.out;
  }
  void TearDown() override {
    if (thread_.joinable()) {
      net::post(io_, [this] { server_->stop(); });
      net::post(io_, [this] { io_.stop(); });
      thread_.join();
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void start(std::vector<std::string> exclude = {}) {
    TlsInspectOptions opts;
    opts.ca_dir = file("acp-ca");
    opts.exclude = std::move(exclude);
    opts.upstream_ca_file = file("test-ca.crt");
    auto insp = TlsInspector::create(opts);
    ASSERT_TRUE(insp.ok()) << insp.error().message();
    inspector_ = *insp;
    ProxyConfig cfg;
    cfg.listen = {tcp::endpoint(net::ip::make_address("127.0.0.1"), 0)};
    cfg.session_id = "test-session";
    cfg.inspect_tls = inspector_;
    server_ = std::make_unique<ProxyServer>(io_, cfg, judge_);
    server_->set_audit_callback([this](nlohmann::json e) {
      std::lock_guard lk(mu_);
      audit_.push_back(std::move(e));
    });
    auto st = server_->start();
    ASSERT_TRUE(st.ok()) << st.error().message();
    port_ = server_->local_endpoints().at(0).port();
    thread_ = std::thread([this] { io_.run(); });
  }

  // Allows every CONNECT and every path but those under /denied.
  void deny_paths_under_denied() {
    judge_.decide = [](const Action& a) {
      if (a.path.rfind("/denied", 0) == 0)
        return Judgement{false, "denied by test rule {path: /denied*}", "req-d", true};
      return Judgement{true, "allowed by test", "req-a", true};
    };
  }

  std::string file(const std::string& name) const { return dir_ + "/" + name; }
  std::string proxy() const { return "http://127.0.0.1:" + std::to_string(port_); }
  // curl through the proxy: "<status>" on stdout, the body in `out`.
  CommandResult curl(const std::string& url, const std::string& cafile,
                     const std::string& extra = "") {
    return run_command("curl -sS --max-time 60 -x " + proxy() + " --cacert " + cafile + " -o " +
                       file("body") + " -w '%{http_code}' " + extra + " '" + url + "' 2>&1");
  }
  std::vector<nlohmann::json> audit() {
    std::lock_guard lk(mu_);
    return audit_;
  }

  std::string dir_;
  net::io_context io_;
  ScriptedJudge judge_{io_};
  std::shared_ptr<TlsInspector> inspector_;
  std::unique_ptr<ProxyServer> server_;
  std::thread thread_;
  uint16_t port_ = 0;
  std::mutex mu_;
  std::vector<nlohmann::json> audit_;
};

TEST_F(TlsInspectTest, CaKeyIsRootOnlyAndTheBundleCarriesTheCa) {
  auto ca = ensure_ca(file("ca"));
  ASSERT_TRUE(ca.ok()) << ca.error().message();
  EXPECT_EQ(mode_of(ca->key), 0600u);
  EXPECT_EQ(mode_of(file("ca/private")), 0700u);
  EXPECT_EQ(mode_of(ca->cert), 0644u);
  EXPECT_EQ(mode_of(ca->bundle), 0644u);
  const std::string cert = slurp(ca->cert);
  const std::string bundle = slurp(ca->bundle);
  EXPECT_NE(bundle.find(cert), std::string::npos);
  // The system CAs come first, so traffic that is not inspected still verifies.
  const std::string system = slurp("/etc/ssl/certs/ca-certificates.crt");
  if (!system.empty()) {
    EXPECT_EQ(bundle.rfind(system.substr(0, 200), 0), 0u);
  }
  auto r = run_command("openssl x509 -noout -text -in " + ca->cert + " 2>&1");
  EXPECT_NE(r.out.find("CA:TRUE"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("prime256v1"), std::string::npos) << r.out;

  // A second call keeps the CA; rotate replaces it.
  auto again = ensure_ca(file("ca"));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->fingerprint, ca->fingerprint);
  auto rotated = rotate_ca(file("ca"));
  ASSERT_TRUE(rotated.ok());
  EXPECT_NE(rotated->fingerprint, ca->fingerprint);
  EXPECT_EQ(mode_of(rotated->key), 0600u);

  // A key others can read is refused rather than used.
  ASSERT_EQ(::chmod(ca->key.c_str(), 0644), 0);
  auto loose = ensure_ca(file("ca"));
  ASSERT_FALSE(loose.ok());
  EXPECT_NE(loose.error().message().find("0600"), std::string::npos) << loose.error().message();
}

TEST_F(TlsInspectTest, LeavesAreMintedPerHostAndCachedWithABound) {
  TlsInspectOptions opts;
  opts.ca_dir = file("ca");
  opts.leaf_cache = 2;
  auto insp = TlsInspector::create(opts);
  ASSERT_TRUE(insp.ok()) << insp.error().message();
  auto use = [&](const std::string& host) {
    SSL* s = SSL_new((*insp)->client_side().native_handle());
    auto st = (*insp)->use_leaf(s, host);
    std::string san;
    if (X509* x = SSL_get_certificate(s)) {
      auto* names =
          static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr));
      for (int i = 0; names && i < sk_GENERAL_NAME_num(names); ++i) {
        auto* n = sk_GENERAL_NAME_value(names, i);
        if (n->type == GEN_DNS)
          san += "DNS:" +
                 std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(n->d.dNSName)));
        if (n->type == GEN_IPADD) san += "IP:" + std::to_string(n->d.iPAddress->length);
      }
      GENERAL_NAMES_free(names);
    }
    SSL_free(s);
    EXPECT_TRUE(st.ok());
    return san;
  };
  EXPECT_EQ(use("a.example"), "DNS:a.example");
  EXPECT_EQ(use("a.example"), "DNS:a.example");
  EXPECT_EQ((*insp)->leaves_minted(), 1u);
  EXPECT_EQ(use("127.0.0.1"), "IP:4");
  EXPECT_EQ(use("::1"), "IP:16");
  EXPECT_EQ((*insp)->leaves_minted(), 3u);
  EXPECT_EQ((*insp)->leaves_cached(), 2u);  // a.example was the least recently used
  use("a.example");
  EXPECT_EQ((*insp)->leaves_minted(), 4u);
}

TEST_F(TlsInspectTest, CurlAllowedPathIs200AndDeniedPathIs403) {
  TestHttpServer origin(echo, file("origin.crt"), file("origin.key"));
  deny_paths_under_denied();
  ASSERT_NO_FATAL_FAILURE(start());
  const std::string base = "https://127.0.0.1:" + std::to_string(origin.port());
  auto ok = curl(base + "/allowed?x=1", inspector_->ca().cert);
  EXPECT_EQ(ok.out, "200") << ok.out;
  auto body = nlohmann::json::parse(slurp(file("body")), nullptr, false);
  EXPECT_EQ(body.value("target", ""), "/allowed?x=1") << slurp(file("body"));
  EXPECT_EQ(body.value("host", ""), "127.0.0.1:" + std::to_string(origin.port()));

  auto no = curl(base + "/denied/x", inspector_->ca().cert);
  EXPECT_EQ(no.out, "403") << no.out;
  EXPECT_NE(slurp(file("body")).find("Blocked by ACP"), std::string::npos);
  EXPECT_EQ(origin.requests(), 1);  // the denied request never reached the origin

  // What the judge saw: the CONNECT at host level, then each request by method and path.
  auto actions = judge_.actions();
  ASSERT_EQ(actions.size(), 4u);
  EXPECT_EQ(actions[0].method, "CONNECT");
  EXPECT_EQ(actions[0].path, "");
  EXPECT_EQ(actions[1].method, "GET");
  EXPECT_EQ(actions[1].path, "/allowed?x=1");
  EXPECT_EQ(actions[1].host, "127.0.0.1");
  EXPECT_EQ(actions[1].port, origin.port());
  EXPECT_EQ(actions[1].kind, "http");
  EXPECT_EQ(actions[3].path, "/denied/x");
}

TEST_F(TlsInspectTest, CurlAskingForHttp2GetsHttp11AndAPost) {
  TestHttpServer origin(echo, file("origin.crt"), file("origin.key"));
  ASSERT_NO_FATAL_FAILURE(start());
  auto r = curl("https://localhost:" + std::to_string(origin.port()) + "/form",
                inspector_->ca().cert, "--http2 -d a=b -w '%{http_code} %{http_version}'");
  EXPECT_EQ(r.out, "200 1.1") << r.out;
  auto actions = judge_.actions();
  ASSERT_EQ(actions.size(), 2u);
  EXPECT_EQ(actions[1].method, "POST");
  EXPECT_EQ(actions[1].host, "localhost");
}

TEST_F(TlsInspectTest, PythonThroughTheProxyAllowedAndDenied) {
  TestHttpServer origin(echo, file("origin.crt"), file("origin.key"));
  deny_paths_under_denied();
  ASSERT_NO_FATAL_FAILURE(start());
  std::ofstream(file("client.py"))
      << "import os, ssl, sys, urllib.request, urllib.error\n"
         "ctx = ssl.create_default_context(cafile=sys.argv[1])\n"
         "h = urllib.request.ProxyHandler({'https': sys.argv[2]})\n"
         "o = urllib.request.build_opener(h, urllib.request.HTTPSHandler(context=ctx))\n"
         "for path in ('/allowed', '/denied'):\n"
         "    try:\n"
         "        r = o.open(sys.argv[3] + path, timeout=60)\n"
         "        print(path, r.status, r.read().decode())\n"
         "    except urllib.error.HTTPError as e:\n"
         "        print(path, e.code, e.read().decode())\n";
  auto r = run_command("python3 " + file("client.py") + " " + inspector_->ca().bundle + " " +
                       proxy() + " https://localhost:" + std::to_string(origin.port()) + " 2>&1");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("/allowed 200 {\"host\":\"localhost:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("/denied 403 {\"error\":\"Blocked by ACP\""), std::string::npos) << r.out;
}

TEST_F(TlsInspectTest, UpstreamWithABadCertificateIsRefused) {
  TestHttpServer origin(echo, file("bad.crt"), file("bad.key"));
  ASSERT_NO_FATAL_FAILURE(start());
  auto r = curl("https://localhost:" + std::to_string(origin.port()) + "/x", inspector_->ca().cert);
  EXPECT_EQ(r.out, "502") << r.out;
  const std::string body = slurp(file("body"));
  EXPECT_NE(body.find("Upstream certificate refused"), std::string::npos) << body;
  EXPECT_NE(body.find("self-signed certificate"), std::string::npos) << body;
  EXPECT_EQ(origin.requests(), 0);
  auto a = audit();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].value("event", ""), "upstream_refused");
  EXPECT_EQ(a[0].value("host", ""), "localhost");
  // One refuse(): the audit entry gives the reason the client was sent.
  EXPECT_EQ(a[0].value("reason", ""), nlohmann::json::parse(body).value("reason", "?"));
}

TEST_F(TlsInspectTest, UpstreamNameIsChecked) {
  // ip-only.crt is from the trusted test CA but names only 127.0.0.1 (SAN and CN), not
  // localhost.
  TestHttpServer origin(echo, file("ip-only.crt"), file("origin.key"));
  ASSERT_NO_FATAL_FAILURE(start());
  auto r = curl("https://localhost:" + std::to_string(origin.port()) + "/x", inspector_->ca().cert);
  EXPECT_EQ(r.out, "502") << r.out;
  EXPECT_EQ(origin.requests(), 0);
  EXPECT_NE(slurp(file("body")).find("mismatch"), std::string::npos) << slurp(file("body"));
}

TEST_F(TlsInspectTest, ExcludedHostIsTunnelledUntouched) {
  TestHttpServer origin(echo, file("origin.crt"), file("origin.key"));
  deny_paths_under_denied();
  ASSERT_NO_FATAL_FAILURE(start({"local*"}));
  // Verifies against the origin's own CA only: the client sees the origin's certificate.
  auto r = curl("https://localhost:" + std::to_string(origin.port()) + "/denied/but-tunnelled",
                file("test-ca.crt"));
  EXPECT_EQ(r.out, "200") << r.out;
  auto actions = judge_.actions();
  ASSERT_EQ(actions.size(), 1u);
  EXPECT_EQ(actions[0].method, "CONNECT");
  EXPECT_EQ(inspector_->leaves_minted(), 0u);
  // Not excluded: the same client, trusting only the origin's CA, refuses the minted leaf.
  auto inspected =
      curl("https://127.0.0.1:" + std::to_string(origin.port()) + "/x", file("test-ca.crt"));
  EXPECT_NE(inspected.out.find("000"), std::string::npos) << inspected.out;
}

// A raw client: CONNECT `authority`, TLS with `sni`, one request with `host_header`.
struct RawTlsResult {
  bool handshake = false;
  unsigned status = 0;
  std::string body;
};
RawTlsResult raw_tls_request(uint16_t proxy_port, const std::string& authority,
                             const std::string& sni, const std::string& host_header) {
  RawTlsResult out;
  RawClient c(proxy_port);
  c.send("CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n\r\n");
  auto res = c.read_response(true);
  if (!res || res->result_int() != 200) return out;
  ssl::context ctx(ssl::context::tls_client);
  ctx.set_verify_mode(ssl::verify_none);  // the check under test is the proxy's
  ssl::stream<tcp::socket&> s(c.socket(), ctx);
  if (!sni.empty()) SSL_set_tlsext_host_name(s.native_handle(), sni.c_str());
  boost::system::error_code ec;
  s.handshake(ssl::stream_base::client, ec);
  if (ec) return out;
  out.handshake = true;
  http::request<http::empty_body> req{http::verb::get, "/x", 11};
  req.set(http::field::host, host_header);
  http::write(s, req, ec);
  beast::flat_buffer buf;
  http::response<http::string_body> r;
  http::read(s, buf, r, ec);
  if (ec) return out;
  out.status = r.result_int();
  out.body = r.body();
  return out;
}

TEST_F(TlsInspectTest, SniOrHostDisagreeingWithTheConnectIsDenied) {
  TestHttpServer origin(echo, file("origin.crt"), file("origin.key"));
  ASSERT_NO_FATAL_FAILURE(start());
  const std::string port = std::to_string(origin.port());
  const std::string authority = "localhost:" + port;

  auto good = raw_tls_request(port_, authority, "localhost", authority);
  EXPECT_EQ(good.status, 200u) << good.body;

  auto sni = raw_tls_request(port_, authority, "evil.example", authority);
  EXPECT_EQ(sni.status, 403u) << sni.body;
  EXPECT_NE(sni.body.find("SNI (evil.example)"), std::string::npos) << sni.body;

  auto host = raw_tls_request(port_, authority, "localhost", "evil.example");
  EXPECT_EQ(host.status, 403u) << host.body;
  EXPECT_NE(host.body.find("Host header (evil.example)"), std::string::npos) << host.body;

  auto port_differs = raw_tls_request(port_, authority, "localhost", "localhost:1");
  EXPECT_EQ(port_differs.status, 403u) << port_differs.body;

  EXPECT_EQ(origin.requests(), 1);
  auto a = audit();
  ASSERT_EQ(a.size(), 3u);
  for (const auto& e : a) EXPECT_EQ(e.value("event", ""), "name_mismatch") << e.dump();
  // One refuse(): each audit entry gives the reason its client was sent, in order.
  EXPECT_EQ(a[0].value("reason", ""), nlohmann::json::parse(sni.body).value("reason", "?"));
  EXPECT_EQ(a[1].value("reason", ""), nlohmann::json::parse(host.body).value("reason", "?"));
  EXPECT_EQ(a[2].value("reason", ""),
            nlohmann::json::parse(port_differs.body).value("reason", "?"));
}

}  // namespace

// MCP over HTTPS: once the tunnel is inspected, the MCP gate of the plain-HTTP path judges each
// tools/call inside it. A refused call is answered by the proxy inside the TLS with a JSON-RPC
// error and never reaches the origin; an allowed one does.
TEST_F(TlsInspectTest, McpToolCallsInsideAnInspectedTunnelAreJudged) {
  TestHttpServer origin(echo, file("origin.crt"), file("origin.key"));
  judge_.decide = [](const Action& a) {
    bool deny = a.kind == "mcp" && a.tool == "delete_file";
    return Judgement{!deny, deny ? "test rule denies mcp tool delete_file" : "ok", "req-m", true};
  };
  ASSERT_NO_FATAL_FAILURE(start());
  const std::string url = "https://127.0.0.1:" + std::to_string(origin.port()) + "/mcp";
  const std::string post =
      "-X POST -H 'Content-Type: application/json' -H 'Accept: "
      "application/json, text/event-stream' --data-binary ";
  auto no = curl(url, inspector_->ca().cert,
                 post + R"('{"jsonrpc":"2.0","id":7,"method":"tools/call",)"
                        R"("params":{"name":"delete_file","arguments":{"path":"/"}}}')");
  EXPECT_EQ(no.out, "200") << no.out;
  auto reply = nlohmann::json::parse(slurp(file("body")), nullptr, false);
  EXPECT_EQ(reply.value("id", 0), 7) << slurp(file("body"));
  EXPECT_EQ(reply["error"].value("code", 0), acp::mcp::kCodeDenied) << reply.dump();
  EXPECT_EQ(origin.requests(), 0);  // never forwarded

  auto ok = curl(url, inspector_->ca().cert,
                 post + R"('{"jsonrpc":"2.0","id":8,"method":"tools/call",)"
                        R"("params":{"name":"echo","arguments":{"text":"hi"}}}')");
  EXPECT_EQ(ok.out, "200") << ok.out;
  EXPECT_EQ(origin.requests(), 1);
  auto body = nlohmann::json::parse(slurp(file("body")), nullptr, false);
  EXPECT_EQ(body.value("target", ""), "/mcp") << slurp(file("body"));

  std::vector<Action> mcp_seen;
  for (const auto& a : judge_.actions())
    if (a.kind == "mcp") mcp_seen.push_back(a);
  ASSERT_EQ(mcp_seen.size(), 2u);
  EXPECT_EQ(mcp_seen[0].tool, "delete_file");
  EXPECT_EQ(mcp_seen[0].server, "127.0.0.1");
  EXPECT_EQ(mcp_seen[1].tool, "echo");
}
