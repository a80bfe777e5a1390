// `acp policy check` and `acp policy explain`, run as the built binary.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

struct CliRun {
  int status = -1;
  std::string out;  // stdout and stderr
};

CliRun acp(const std::string& args) {
  CliRun r;
  std::string cmd = std::string(ACP_BINARY) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

class PolicyCli : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/acp-policy-cli-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    for (const auto& f : files_) std::remove(f.c_str());
    rmdir(dir_.c_str());
  }
  std::string write(const std::string& name, const std::string& text) {
    std::string path = dir_ + "/" + name;
    FILE* f = std::fopen(path.c_str(), "w");
    EXPECT_NE(f, nullptr);
    std::fputs(text.c_str(), f);
    std::fclose(f);
    files_.push_back(path);
    return path;
  }
  std::string dir_;
  std::vector<std::string> files_;
};

const char* kPolicy = R"(default: deny
rules:
  - match: { kind: http, host: "*.example.com" }
    action: allow
  - match: { kind: http, host: "pay.example.net", port: 443 }
    action: ask
    timeout: 45
)";

TEST_F(PolicyCli, CheckOk) {
  std::string f = write("good.yml", kPolicy);
  CliRun r = acp("policy check " + f);
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(r.out, f + ": OK, 2 rules, default deny\n");
}

TEST_F(PolicyCli, CheckUpstreamWarnsAboutUnreachableRules) {
  CliRun r =
      acp(std::string("policy check ") + ACP_SOURCE_DIR + "/compat/upstream-policies/default.yml");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("OK, 23 rules, default ask"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("warning: "), std::string::npos) << r.out;
}

TEST_F(PolicyCli, CheckError) {
  std::string f =
      write("bad.yml", "default: ask\nrules:\n  - match: { hots: a }\n    action: deny\n");
  CliRun r = acp("policy check " + f);
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.out, f + ":3: unknown field 'hots' in match (expected kind, host, method, name, "
                       "args, port, path, tool or server; did you mean 'host'?)\n");
}

TEST_F(PolicyCli, ExplainRule) {
  std::string f = write("p.yml", kPolicy);
  CliRun r = acp("policy explain " + f + " --host=Pay.Example.NET. --port=443");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("verdict: ask\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("rule 2 (line 5) is the first that matches"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("rule:    match: { kind: http, host: \"pay.example.net\", port: 443 }, "
                       "action: ask, timeout: 45"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("timeout: 45 s"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("host named literally: yes"), std::string::npos) << r.out;

  r = acp("policy explain " + f + " --host=api.example.com --method=POST --path=/v1");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("port=80 method=POST path=/v1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("verdict: allow\nreason:  rule 1 (line 3)"), std::string::npos) << r.out;
}

TEST_F(PolicyCli, CheckWarnsAboutPathRulesThatCannotHold) {
  std::string f = write("paths.yml", R"(default: deny
rules:
  - match: { host: "internal.example", path: "/%61dmin/*" }
    action: deny
  - match: { host: "internal.example" }
    action: allow
)");
  CliRun r = acp("policy check " + f);
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("warning: " + f +
                       ":3: rule 1 (deny) path \"/%61dmin/*\" is not in canonical form"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("warning: " + f +
                       ":3: rule 1 (deny) matches paths, but a CONNECT to internal.example:443 "
                       "is allow (rule 2)"),
            std::string::npos)
      << r.out;
}

TEST_F(PolicyCli, ExplainJudgesTheCanonicalForm) {
  std::string f = write("p.yml", R"(default: allow
rules:
  - match: { host: "127.0.0.1", path: "/admin/*" }
    action: deny
)");
  CliRun r = acp("policy explain " + f + " --host=0x7f.1 --port=80 --path=/pub/%2e%2e/%61dmin/x");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("host=127.0.0.1 port=80 method=GET path=/admin/x"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("verdict: deny"), std::string::npos) << r.out;
  r = acp("policy explain " + f + " --host=127.0.0.1 --port=80 --path=/admin%2Fx");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("--path: the path holds an encoded '/'"), std::string::npos) << r.out;
  r = acp("policy explain " + f + " --host=1.2.3.999");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("--host: host '1.2.3.999' ends in a number"), std::string::npos) << r.out;
}

TEST_F(PolicyCli, ExplainDefault) {
  std::string f = write("p.yml", kPolicy);
  CliRun r = acp("policy explain " + f + " --host=pay.example.net --port=8443");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("verdict: deny\nreason:  no rule matched; the policy default applies"),
            std::string::npos)
      << r.out;
  r = acp("policy explain " + dir_ + "/missing.yml --host=x");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("No such file or directory"), std::string::npos) << r.out;
}

}  // namespace
