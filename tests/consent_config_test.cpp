#include "acp/proxy/acp_config.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "consent_test_support.hpp"

namespace {

using acp::config::Config;
using acp::config::load_config;
using acp::config::parse_config;
using acp::config::read_secret_file;
using acp::config::render_config;
using acp::testing::TempDir;

TEST(AcpConfig, AMissingFileGivesTheDefaultsWithTheWebPageOnLoopback8444) {
  TempDir d;
  auto c = load_config(d / "nope.yml");
  ASSERT_TRUE(c.ok()) << c.error().message();
  EXPECT_EQ(c->source, "(defaults)");
  EXPECT_TRUE(c->web.enabled);
  EXPECT_EQ(c->web.listen, "127.0.0.1:8444");
  EXPECT_FALSE(c->webhook.enabled);
  EXPECT_FALSE(c->telegram.enabled);
  EXPECT_FALSE(c->prompt.enabled);
  EXPECT_TRUE(c->policy.empty());
}

TEST(AcpConfig, ReadsEveryChannel) {
  auto c = parse_config(R"(policy: /etc/acp/policy.yml
channels:
  web: {enabled: false, listen: "[::1]:9000", token_file: /tmp/t}
  prompt:
    enabled: true
  webhook:
    enabled: true
    url: https://hooks.example/acp
    secret_file: /etc/acp/wh.secret
    timeout: 2m
    retries: 3
    callback_listen: 127.0.0.1:8445
  telegram:
    enabled: true
    api_base: https://127.0.0.1:9443
    chat_id: "-100123"
    ca_file: /tmp/ca.pem
)",
                        "c.yml");
  ASSERT_TRUE(c.ok()) << c.error().message();
  EXPECT_EQ(c->policy, "/etc/acp/policy.yml");
  EXPECT_FALSE(c->web.enabled);
  EXPECT_EQ(c->web.listen, "[::1]:9000");
  EXPECT_TRUE(c->prompt.enabled);
  EXPECT_EQ(c->webhook.url, "https://hooks.example/acp");
  EXPECT_EQ(c->webhook.timeout, std::chrono::seconds(120));
  EXPECT_EQ(c->webhook.retries, 3);
  EXPECT_EQ(c->webhook.callback_listen, "127.0.0.1:8445");
  EXPECT_EQ(c->telegram.chat_id, "-100123");
  EXPECT_EQ(c->telegram.api_base, "https://127.0.0.1:9443");
  EXPECT_EQ(c->telegram.ca_file, "/tmp/ca.pem");
}

TEST(AcpConfig, RenderRoundTrips) {
  Config c;
  c.policy = "/etc/acp/policy.yml";
  c.webhook.enabled = true;
  c.webhook.url = "http://127.0.0.1:9/x";
  c.telegram.chat_id = "42";
  auto back = parse_config(render_config(c), "rendered");
  ASSERT_TRUE(back.ok()) << back.error().message() << "\n" << render_config(c);
  EXPECT_EQ(back->policy, c.policy);
  EXPECT_TRUE(back->webhook.enabled);
  EXPECT_EQ(back->webhook.url, c.webhook.url);
  EXPECT_EQ(back->telegram.chat_id, "42");
  EXPECT_EQ(back->web.listen, c.web.listen);
}

TEST(AcpConfig, TlsInspectionIsOffByDefaultAndReadAndRendered) {
  auto d = parse_config("channels: {}\n", "c.yml");
  ASSERT_TRUE(d.ok()) << d.error().message();
  EXPECT_FALSE(d->tls_inspection.enabled);
  EXPECT_EQ(render_config(*d).find("tls_inspection"), std::string::npos);

  auto c = parse_config(R"(tls_inspection:
  enabled: true
  exclude: ["*.pinned.example", api.bank.example]
  upstream_ca: /etc/acp/origins.pem
)",
                        "c.yml");
  ASSERT_TRUE(c.ok()) << c.error().message();
  EXPECT_TRUE(c->tls_inspection.enabled);
  EXPECT_EQ(c->tls_inspection.exclude,
            (std::vector<std::string>{"*.pinned.example", "api.bank.example"}));
  EXPECT_EQ(c->tls_inspection.upstream_ca, "/etc/acp/origins.pem");
  auto back = parse_config(render_config(*c), "rendered");
  ASSERT_TRUE(back.ok()) << back.error().message() << "\n" << render_config(*c);
  EXPECT_TRUE(back->tls_inspection.enabled);
  EXPECT_EQ(back->tls_inspection.exclude, c->tls_inspection.exclude);
  EXPECT_EQ(back->tls_inspection.upstream_ca, c->tls_inspection.upstream_ca);

  auto bad = parse_config("tls_inspection:\n  exclude: a.example\n", "c.yml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message().find("exclude must be a list"), std::string::npos)
      << bad.error().message();
}

TEST(AcpConfig, ErrorsNameTheLineAndWhatIsExpected) {
  struct Case {
    const char* text;
    const char* needle;
  } cases[] = {
      {"channels:\n  wbe: {enabled: true}\n", "c.yml:2: unknown key 'wbe'"},
      {"channels:\n  web:\n    enabled: yes please\n", "enabled must be true or false"},
      {"channels:\n  web:\n    listen: 0.0.0.0:8444\n", "must be a loopback address"},
      {"channels:\n  web:\n    listen: localhost\n", "must be HOST:PORT"},
      {"channels:\n  webhook:\n    retries: 99\n", "retries must be a number from 0 to 10"},
      {"channels:\n  webhook:\n    timeout: soon\n", "timeout must be a duration"},
      {"channels:\n  webhook: {enabled: true}\n", "url is not http(s)"},
      {"channels:\n  telegram: {enabled: true}\n", "has no chat_id"},
      {"channels: [web]\n", "channels must be a mapping"},
  };
  for (const auto& k : cases) {
    auto c = parse_config(k.text, "c.yml");
    ASSERT_FALSE(c.ok()) << k.text;
    EXPECT_NE(c.error().message().find(k.needle), std::string::npos)
        << "got: " << c.error().message() << "\nwanted: " << k.needle;
  }
}

TEST(AcpConfig, SecretFilesMustBePrivate) {
  TempDir d;
  const std::string p = d / "secret";
  acp::testing::write_lines(p, {"s3cr3t  "});
  ASSERT_EQ(::chmod(p.c_str(), 0644), 0);
  auto open = read_secret_file(p);
  ASSERT_FALSE(open.ok());
  EXPECT_NE(open.error().message().find("mode 644"), std::string::npos) << open.error().message();
  EXPECT_NE(open.error().message().find("chmod 600"), std::string::npos);
  ASSERT_EQ(::chmod(p.c_str(), 0600), 0);
  auto ok = read_secret_file(p);
  ASSERT_TRUE(ok.ok()) << ok.error().message();
  EXPECT_EQ(*ok, "s3cr3t");
  EXPECT_FALSE(read_secret_file(d / "missing").ok());
}

}  // namespace
