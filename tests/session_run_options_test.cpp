#include "acp/session/run_options.hpp"

#include "acp/cli/command_options.hpp"
#include "acp/session/docker_session.hpp"

#include <gtest/gtest.h>

namespace {

struct Parsed {
  acp::RunOptions opts;
  bool parse_ok = true;
  std::string error;
};

Parsed parse(std::vector<std::string> args) {
  Parsed p;
  CLI::App app;
  auto* run = app.add_subcommand("run");
  acp::add_run_options(run, p.opts);
  args.insert(args.begin(), "run");
  std::reverse(args.begin(), args.end());  // CLI11 parses a reversed vector
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    p.parse_ok = false;
    p.error = e.what();
  }
  return p;
}

TEST(RunOptions, CommandAfterDoubleDashKeepsItsOwnFlags) {
  auto p = parse({"--proxy-port=9000", "--", "curl", "-x", "http://a", "--proxy-port", "1"});
  ASSERT_TRUE(p.parse_ok) << p.error;
  EXPECT_EQ(p.opts.proxy_port, 9000);
  EXPECT_EQ(p.opts.command,
            (std::vector<std::string>{"curl", "-x", "http://a", "--proxy-port", "1"}));
}

TEST(RunOptions, CommandWithoutDoubleDashStopsOptionParsing) {
  auto p = parse({"python3", "--audit-only"});
  ASSERT_TRUE(p.parse_ok) << p.error;
  EXPECT_FALSE(p.opts.audit_only);
  EXPECT_EQ(p.opts.command, (std::vector<std::string>{"python3", "--audit-only"}));
}

TEST(RunOptions, RepeatedAllowAndFlags) {
  auto p = parse({"--allow=127.0.0.1:5432", "--allow", "[::1]:53/udp", "--audit-only", "--user",
                  "nobody", "--allow-root", "--", "true"});
  ASSERT_TRUE(p.parse_ok) << p.error;
  EXPECT_EQ(p.opts.allow, (std::vector<std::string>{"127.0.0.1:5432", "[::1]:53/udp"}));
  EXPECT_TRUE(p.opts.audit_only);
  EXPECT_TRUE(p.opts.allow_root);
  EXPECT_EQ(p.opts.user, "nobody");
}

TEST(RunOptions, MissingCommandIsAnError) {
  auto p = parse({"--audit-only"});
  EXPECT_FALSE(p.parse_ok);
}

TEST(RunOptions, PortOutOfRangeIsAnError) {
  EXPECT_FALSE(parse({"--proxy-port=0", "--", "true"}).parse_ok);
  EXPECT_FALSE(parse({"--proxy-port=70000", "--", "true"}).parse_ok);
  EXPECT_FALSE(parse({"--proxy-port=http", "--", "true"}).parse_ok);
}

TEST(RunOptions, UnknownBackendIsRefusedWithWhatIsSupported) {
  auto p = parse({"--backend=ebpf", "--", "true"});
  ASSERT_TRUE(p.parse_ok);
  auto st = acp::validate_run_options(p.opts);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message().find("--backend=ebpf"), std::string::npos);
  EXPECT_NE(st.error().message().find("bpf"), std::string::npos);
}

TEST(RunOptions, DefaultsAreEnforceAutoAndNoPort) {
  auto p = parse({"--", "true"});
  ASSERT_TRUE(p.parse_ok);
  EXPECT_EQ(p.opts.backend, "auto");
  EXPECT_FALSE(p.opts.proxy_port.has_value());
  EXPECT_FALSE(p.opts.audit_only);
  EXPECT_TRUE(acp::validate_run_options(p.opts).ok());
}

TEST(RunOptions, EveryBackendNameIsAcceptedAndIsolationIsAnAlias) {
  for (const char* b : {"auto", "bpf", "iptables", "preload", "none"}) {
    auto p = parse({std::string("--backend=") + b, "--", "true"});
    ASSERT_TRUE(p.parse_ok) << p.error;
    EXPECT_TRUE(acp::validate_run_options(p.opts).ok()) << b;
    EXPECT_EQ(acp::requested_backend(p.opts), b);
  }
  auto p = parse({"--isolation=preload", "--", "true"});
  ASSERT_TRUE(p.parse_ok) << p.error;
  EXPECT_TRUE(acp::validate_run_options(p.opts).ok());
  EXPECT_EQ(acp::requested_backend(p.opts), "preload");
}

TEST(RunOptions, ConflictingOrImpossibleBackendChoicesAreRefused) {
  auto both = parse({"--backend=bpf", "--isolation=preload", "--", "true"});
  ASSERT_TRUE(both.parse_ok);
  auto st = acp::validate_run_options(both.opts);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message().find("disagree"), std::string::npos);
  auto docker = parse({"--backend=docker", "--", "true"});
  EXPECT_TRUE(acp::validate_run_options(docker.opts).ok());
  auto docker_user = parse({"--backend=docker", "--user=nobody", "--", "true"});
  auto dst = acp::validate_run_options(docker_user.opts);
  ASSERT_FALSE(dst.ok());
  EXPECT_NE(dst.error().message().find("do not apply"), std::string::npos);
  auto docker_tls = parse({"--backend=docker", "--inspect-tls", "--", "true"});
  auto tst = acp::validate_run_options(docker_tls.opts);
  ASSERT_FALSE(tst.ok());
  EXPECT_NE(tst.error().message().find("trust ACP's CA"), std::string::npos);
  auto audit = parse({"--backend=iptables", "--audit-only", "--", "true"});
  auto ast = acp::validate_run_options(audit.opts);
  ASSERT_FALSE(ast.ok());
  EXPECT_NE(ast.error().message().find("bpf"), std::string::npos);
  auto bad = parse({"--isolation=sandbox", "--", "true"});
  ASSERT_FALSE(acp::validate_run_options(bad.opts).ok());
}

}  // namespace

// auto (the default): both where the wall (bpf, iptables) in enforce mode can lead connections
// and DNS to the proxy, proxy anywhere else; an explicit transparent or both is refused where
// it cannot.
TEST(RunOptions, DoorIsBothByDefaultWhereTheWallLeadsInAndTransparentOnlyThere) {
  auto p = parse({"--", "true"});
  ASSERT_TRUE(p.parse_ok) << p.error;
  EXPECT_EQ(p.opts.door, "auto");
  EXPECT_EQ(acp::effective_door(p.opts, /*leads_in=*/true), "both");
  EXPECT_EQ(acp::effective_door(p.opts, /*leads_in=*/false), "proxy");
  auto audit = parse({"--audit-only", "--", "true"});
  ASSERT_TRUE(audit.parse_ok) << audit.error;
  EXPECT_EQ(acp::effective_door(audit.opts, true), "proxy");
  auto inspect = parse({"--inspect-tls", "--", "true"});
  ASSERT_TRUE(inspect.parse_ok) << inspect.error;
  EXPECT_TRUE(acp::validate_run_options(inspect.opts).ok());
  EXPECT_EQ(acp::effective_door(inspect.opts, true), "proxy");
  for (const char* backend : {"iptables", "docker", "preload", "none"}) {
    auto d = parse({std::string("--backend=") + backend, "--", "true"});
    ASSERT_TRUE(d.parse_ok) << d.error;
    EXPECT_TRUE(acp::validate_run_options(d.opts).ok()) << backend;
  }
  auto explicit_proxy = parse({"--door=proxy", "--", "true"});
  EXPECT_EQ(acp::effective_door(explicit_proxy.opts, true), "proxy");
  for (const char* door : {"transparent", "both", "proxy", "auto"}) {
    auto d = parse({std::string("--door=") + door, "--backend=bpf", "--", "true"});
    ASSERT_TRUE(d.parse_ok) << d.error;
    EXPECT_TRUE(acp::validate_run_options(d.opts).ok()) << door;
  }
  EXPECT_FALSE(parse({"--door=sideways", "--", "true"}).parse_ok);
  // The iptables wall leads them in too (nat REDIRECT), and docker's (nat DNAT on its
  // bridge: both only, its explicit proxy stays); the others cannot.
  for (const char* door : {"transparent", "both"}) {
    auto d = parse({std::string("--door=") + door, "--backend=iptables", "--", "true"});
    ASSERT_TRUE(d.parse_ok) << d.error;
    EXPECT_TRUE(acp::validate_run_options(d.opts).ok()) << door;
  }
  for (const char* door : {"both", "auto", "proxy"}) {
    auto d = parse({std::string("--door=") + door, "--backend=docker", "--", "true"});
    ASSERT_TRUE(d.parse_ok) << d.error;
    auto c = acp::contain_options_for_run(d.opts);
    ASSERT_TRUE(c.ok()) << door << ": " << c.error().message();
    EXPECT_EQ(c->door, door) << "auto is resolved when the session is planned";
  }
  auto docker_transparent = parse({"--door=transparent", "--backend=docker", "--", "true"});
  ASSERT_TRUE(docker_transparent.parse_ok);
  auto dt = acp::contain_options_for_run(docker_transparent.opts);
  ASSERT_FALSE(dt.ok());
  EXPECT_NE(dt.error().message().find("--door=both"), std::string::npos) << dt.error().message();
  for (const char* backend : {"preload", "none"}) {
    auto d = parse({"--door=both", std::string("--backend=") + backend, "--", "true"});
    ASSERT_TRUE(d.parse_ok) << d.error;
    auto st = acp::validate_run_options(d.opts);
    ASSERT_FALSE(st.ok()) << backend;
    EXPECT_NE(st.error().message().find("needs the bpf, iptables or docker backend"),
              std::string::npos)
        << st.error().message();
  }
  auto tls = parse({"--door=both", "--inspect-tls", "--", "true"});
  ASSERT_TRUE(tls.parse_ok) << tls.error;
  EXPECT_FALSE(acp::validate_run_options(tls.opts).ok());
}
