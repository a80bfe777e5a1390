// `acp init` as the built binary, into a temporary directory (--config): the files it writes,
// their modes, that they load as acp run loads them, and that it keeps existing files.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdio>

#include "acp/proxy/acp_config.hpp"
#include "acp/proxy/policy.hpp"
#include "consent_test_support.hpp"

namespace {

using acp::testing::TempDir;

struct Run {
  int status;
  std::string out;
};

Run acp_init(const std::string& args) {
  std::string cmd = std::string("'") + ACP_BINARY + "' init " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  Run r{-1, {}};
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

unsigned mode_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 0777;
}

TEST(CliInit, WritesConfigPolicyAndTokenThatLoad) {
  TempDir dir;
  const std::string base = dir / "etc/acp";
  auto r = acp_init("--config=" + base + "/config.yml");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(mode_of(base + "/config.yml"), 0644u);
  EXPECT_EQ(mode_of(base + "/policy.yml"), 0644u);
  EXPECT_EQ(mode_of(base + "/web.token"), 0600u);
  EXPECT_EQ(mode_of(base), 0755u);
  auto cfg = acp::config::load_config(base + "/config.yml");
  ASSERT_TRUE(cfg.ok()) << cfg.error().message();
  EXPECT_TRUE(cfg->web.enabled);
  EXPECT_EQ(cfg->web.listen, "127.0.0.1:8444");
  EXPECT_EQ(cfg->web.token_file, base + "/web.token");
  EXPECT_EQ(cfg->policy, base + "/policy.yml");
  EXPECT_FALSE(cfg->webhook.enabled);
  auto tok = acp::config::read_secret_file(base + "/web.token");
  ASSERT_TRUE(tok.ok()) << tok.error().message();
  EXPECT_EQ(tok->size(), 64u);
  auto pol = acp::policy::Policy::load_file(base + "/policy.yml");
  ASSERT_TRUE(pol.ok()) << pol.error().message();
  EXPECT_EQ(pol->rule_count(), acp::policy::Policy::builtin_default().rule_count());
  EXPECT_NE(r.out.find("Next steps"), std::string::npos);
  EXPECT_NE(r.out.find("acp run --config=" + base + "/config.yml"), std::string::npos) << r.out;
}

TEST(CliInit, RefusesToOverwriteAndSaysWhichUnlessForced) {
  TempDir dir;
  const std::string cfg = dir / "config.yml";
  ASSERT_EQ(acp_init("--config=" + cfg).status, 0);
  const auto token = acp::testing::read_lines(dir / "web.token");
  auto again = acp_init("--config=" + cfg + " --channel=web");
  EXPECT_EQ(again.status, 1);
  EXPECT_NE(again.out.find(cfg), std::string::npos) << again.out;
  EXPECT_NE(again.out.find(dir / "web.token"), std::string::npos) << again.out;
  EXPECT_NE(again.out.find("--force"), std::string::npos);
  EXPECT_EQ(acp::testing::read_lines(dir / "web.token"), token);
  auto forced = acp_init("--config=" + cfg + " --force");
  ASSERT_EQ(forced.status, 0) << forced.out;
  EXPECT_NE(acp::testing::read_lines(dir / "web.token"), token);
}

TEST(CliInit, WebhookGetsASecretAndTelegramSaysWhatToFillIn) {
  TempDir dir;
  const std::string cfg = dir / "config.yml";
  auto missing_url = acp_init("--config=" + cfg + " --channel=webhook");
  EXPECT_EQ(missing_url.status, 2);
  EXPECT_NE(missing_url.out.find("--webhook-url"), std::string::npos);
  auto r = acp_init("--config=" + cfg +
                    " --channel=webhook,telegram --channel=prompt "
                    "--webhook-url=https://hooks.example/acp");
  ASSERT_EQ(r.status, 0) << r.out;
  auto c = acp::config::load_config(cfg);
  ASSERT_TRUE(c.ok()) << c.error().message();
  EXPECT_FALSE(c->web.enabled);
  EXPECT_TRUE(c->prompt.enabled);
  EXPECT_TRUE(c->webhook.enabled);
  EXPECT_EQ(c->webhook.url, "https://hooks.example/acp");
  EXPECT_EQ(mode_of(dir / "webhook.secret"), 0600u);
  EXPECT_TRUE(acp::config::read_secret_file(dir / "webhook.secret").ok());
  // No chat id given: telegram stays off, and the output says what to put where.
  EXPECT_FALSE(c->telegram.enabled);
  EXPECT_NE(r.out.find(dir / "telegram.token"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("chat_id"), std::string::npos) << r.out;
  EXPECT_EQ(mode_of(dir / "web.token"), 0u);  // web not asked for: no token

  TempDir dir2;
  auto t = acp_init("--config=" + (dir2 / "config.yml") +
                    " --channel=telegram --telegram-chat-id=12345");
  ASSERT_EQ(t.status, 0) << t.out;
  auto c2 = acp::config::load_config(dir2 / "config.yml");
  ASSERT_TRUE(c2.ok());
  EXPECT_TRUE(c2->telegram.enabled);
  EXPECT_EQ(c2->telegram.chat_id, "12345");
}

TEST(CliInit, UnknownChannelIsAUsageError) {
  TempDir dir;
  auto r = acp_init("--config=" + (dir / "config.yml") + " --channel=pigeon");
  EXPECT_NE(r.status, 0);
  EXPECT_EQ(mode_of(dir / "config.yml"), 0u);
}

}  // namespace
