// `acp run --inspect-tls` end to end: curl and python3 inside the confined agent, trusting
// only what ACP hands them (CURL_CA_BUNDLE, SSL_CERT_FILE), reach an HTTPS origin on loopback
// through the real proxy; each request inside the CONNECT is judged by method and path by the
// real policy and written to the real audit log. The CA lives in the test's directory
// (--inspect-tls-ca-dir) and the origin's certificate is trusted through
// --inspect-tls-upstream-ca.
#include <sys/stat.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "support/run_fixture.hpp"

namespace {

using acp::vmtest::free_port;
using acp::vmtest::run;
using acp::vmtest::slurp;

class RunTlsInspect : public acp::vmtest::RunFixture {
 protected:
  void SetUp() override {
    RunFixture::SetUp();
    if (IsSkipped()) return;
    tls_port_ = free_port();
    ASSERT_TRUE(start_tls_origin(tls_port_)) << "the TLS origin did not start";
    std::ofstream(dir_ + "/www/denied.html") << "secret\n";
    // First match wins: /denied* is refused, everything else to the origin (the CONNECT
    // included: its path is empty) is allowed.
    const std::string p = std::to_string(tls_port_);
    policy_ = write_policy("tls.yml",
                           "default: deny\nrules:\n"
                           "  - match: { kind: http, host: \"127.0.0.1\", port: " +
                               p +
                               ", path: \"/denied*\" }\n    action: deny\n"
                               "  - match: { kind: http, host: \"127.0.0.1\", port: " +
                               p + " }\n    action: allow\n");
  }
  std::string ca_dir() const { return dir_ + "/ca"; }
  std::string url(const std::string& path) const {
    return "https://127.0.0.1:" + std::to_string(tls_port_) + path;
  }
  std::vector<std::string> inspect(std::vector<std::string> extra = {}) const {
    std::vector<std::string> out = {"--inspect-tls", "--inspect-tls-ca-dir=" + ca_dir()};
    out.insert(out.end(), extra.begin(), extra.end());
    return out;
  }
  std::vector<nlohmann::json> requests() {
    std::vector<nlohmann::json> out;
    for (auto& e : audit_entries())
      if (e.value("kind", "") == "request") out.push_back(e);
    return out;
  }

  uint16_t tls_port_ = 0;
  std::string policy_;
};

TEST_F(RunTlsInspect, CurlAndPythonAreJudgedPerPath) {
  const std::string script =
      "set -u\n"
      "echo \"BUNDLE=$CURL_CA_BUNDLE $SSL_CERT_FILE $REQUESTS_CA_BUNDLE $NODE_EXTRA_CA_CERTS\"\n"
      "curl -sS -o /dev/null -w 'CURL_OK=%{http_code}\\n' \"$1/\"\n"
      "curl -sS -o /dev/null -w 'CURL_DENIED=%{http_code}\\n' \"$1/denied.html\"\n"
      "python3 - \"$1\" <<'EOF'\n"
      "import sys, urllib.request, urllib.error\n"
      "for p in ('/', '/denied.html'):\n"
      "    try:\n"
      "        r = urllib.request.urlopen(sys.argv[1] + p, timeout=20)\n"
      "        print('PY', p, r.status, r.read().decode().strip())\n"
      "    except urllib.error.HTTPError as e:\n"
      "        print('PY', p, e.code)\n"
      "EOF\n";
  auto r = run(acp_run(policy_, {"/bin/sh", "-c", script, "sh", url("")},
                       inspect({"--inspect-tls-upstream-ca=" + cert_path()})));
  EXPECT_EQ(r.status, 0) << r.out;
  const std::string bundle = ca_dir() + "/bundle.pem";
  EXPECT_NE(r.out.find("BUNDLE=" + bundle + " " + bundle + " " + bundle + " " + bundle),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("CURL_OK=200"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("CURL_DENIED=403"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("PY / 200 origin says hello"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("PY /denied.html 403"), std::string::npos) << r.out;

  // The audit log has each inner request with its method and path.
  int get_allowed = 0, get_denied = 0, connects = 0;
  for (const auto& e : requests()) {
    const auto& a = e["action"];
    if (a.value("method", "") == "CONNECT") ++connects;
    if (a.value("method", "") == "GET" && a.value("path", "") == "/" &&
        e.value("verdict", "") == "allow")
      ++get_allowed;
    if (a.value("method", "") == "GET" && a.value("path", "") == "/denied.html" &&
        e.value("verdict", "") == "deny")
      ++get_denied;
  }
  EXPECT_EQ(get_allowed, 2) << slurp(audit());
  EXPECT_EQ(get_denied, 2) << slurp(audit());
  EXPECT_GE(connects, 2) << slurp(audit());

  // The CA: key root-only in a root-only directory, certificate and bundle world-readable.
  struct stat st {};
  ASSERT_EQ(stat((ca_dir() + "/private/ca.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_uid, 0u);
  ASSERT_EQ(stat((ca_dir() + "/private").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(stat((ca_dir() + "/ca.crt").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
}

// Without --inspect-tls-upstream-ca the origin's self-signed certificate is checked against
// the system store and refused: the agent gets a 502 naming the reason, the origin nothing.
TEST_F(RunTlsInspect, AnUntrustedOriginCertificateIsRefused) {
  auto r = run(acp_run(
      policy_, {"/bin/sh", "-c", "curl -sS -w '\\nCODE=%{http_code}\\n' \"$1/\"", "sh", url("")},
      inspect()));
  EXPECT_NE(r.out.find("CODE=502"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Upstream certificate refused"), std::string::npos) << r.out;
  bool audited = false;
  for (const auto& e : audit_entries())
    audited =
        audited || (e.value("kind", "") == "tls" && e.value("event", "") == "upstream_refused");
  EXPECT_TRUE(audited) << slurp(audit());
}

// An excluded host is a blind tunnel: the client verifies the origin's own certificate (and
// would refuse ACP's leaf), and only the CONNECT is judged.
TEST_F(RunTlsInspect, AnExcludedHostIsTunnelledUntouched) {
  auto r = run(acp_run(policy_,
                       {"/bin/sh", "-c",
                        "curl -sS --cacert \"$2\" -o /dev/null -w 'CODE=%{http_code}\\n' "
                        "\"$1/denied.html\"",
                        "sh", url(""), cert_path()},
                       inspect({"--inspect-tls-exclude=127.0.0.*"})));
  EXPECT_NE(r.out.find("CODE=200"), std::string::npos) << r.out;
  auto req = requests();
  ASSERT_EQ(req.size(), 1u) << slurp(audit());
  EXPECT_EQ(req[0]["action"].value("method", ""), "CONNECT");
}

// Without --inspect-tls nothing changes: the trust variables are the caller's.
TEST_F(RunTlsInspect, OffByDefault) {
  auto r = run(acp_run(policy_, {"/bin/sh", "-c", "echo \"CA=${CURL_CA_BUNDLE:-none}\""}));
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("CA="), std::string::npos) << r.out;
  // Whatever the caller had (or nothing), never ACP's bundle.
  EXPECT_EQ(r.out.find("bundle.pem"), std::string::npos) << r.out;
}

}  // namespace
