// acp init [--channel=web|prompt|webhook|telegram]... [--force] [--config=PATH] [--dir=DIR]:
// writes the config (0644), a starter policy (0644) and the channels' secrets (0600), all
// root-owned when run as root, each atomically. Existing files are kept unless --force.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "acp/cli/commands.hpp"
#include "acp/proxy/acp_config.hpp"
#include "acp/proxy/policy.hpp"
#include "acp/util/atomic_file.hpp"
#include "acp/util/random_id.hpp"

namespace acp::cli {
namespace {

struct InitOptions {
  std::vector<std::string> channels;
  bool force = false;
  std::string config;  // default: DIR/config.yml
  std::string dir;     // default: the config's directory, else /etc/acp
  std::string webhook_url;
  std::string telegram_chat_id;
};

struct File {
  std::string path;
  std::string content;
  unsigned mode;
  std::string what;
};

std::string starter_policy() {
  return "# ACP policy, written by `acp init` from the built-in policy (upstream's default.yml).\n"
         "# First matching rule wins; `default` applies when none matches. Actions: allow, ask,\n"
         "# deny; `timeout` is how long an `ask` waits for a human (seconds). Check a change with\n"
         "# `acp policy check FILE`, try a host with `acp policy explain FILE --host=H`, and send\n"
         "# SIGHUP to a running `acp run` to reload. Reference: docs/policy.md.\n#\n" +
         std::string(policy::Policy::builtin_default_text());
}

// Where the files go: --dir, else the config's directory, else /etc/acp.
std::string init_dir(const InitOptions& o) {
  namespace fs = std::filesystem;
  if (!o.dir.empty()) return o.dir;
  if (!o.config.empty() && fs::path(o.config).has_parent_path())
    return fs::path(o.config).parent_path().string();
  return "/etc/acp";
}

// The config for the chosen channels; an error (exit 2) names what is missing.
Result<config::Config> channel_config(const std::set<std::string>& chans, const InitOptions& o,
                                      const std::string& dir) {
  config::Config c;
  c.policy = dir + "/policy.yml";
  c.web.enabled = chans.count("web") > 0;
  c.web.token_file = dir + "/web.token";
  c.prompt.enabled = chans.count("prompt") > 0;
  c.webhook.secret_file = dir + "/webhook.secret";
  c.telegram.token_file = dir + "/telegram.token";
  if (chans.count("webhook")) {
    if (o.webhook_url.empty())
      return make_error(
          "--channel=webhook needs --webhook-url=URL (where the consent requests are POSTed, "
          "http:// or https://)");
    c.webhook.enabled = true;
    c.webhook.url = o.webhook_url;
  }
  // Telegram answers count only from one chat: without its id the channel stays off, and the
  // next steps say what to fill in.
  if (chans.count("telegram") && !o.telegram_chat_id.empty()) {
    c.telegram.enabled = true;
    c.telegram.chat_id = o.telegram_chat_id;
  }
  return c;
}

// The config, the starter policy and a fresh secret for each enabled channel that needs one.
Result<std::vector<File>> files_to_write(const config::Config& c, const std::string& config_path) {
  std::vector<File> files;
  files.push_back({config_path, config::render_config(c), 0644, "config"});
  files.push_back({c.policy, starter_policy(), 0644, "starter policy"});
  if (c.web.enabled) {
    auto tok = util::random_hex(32);
    if (!tok) return tok.error();
    files.push_back({c.web.token_file, *tok + "\n", 0600, "web page token"});
  }
  if (c.webhook.enabled) {
    auto sec = util::random_hex(32);
    if (!sec) return sec.error();
    files.push_back({c.webhook.secret_file, *sec + "\n", 0600, "webhook HMAC secret"});
  }
  return files;
}

// Without --force, nothing is written when any of the files exists; says which.
bool refuse_existing(const std::vector<File>& files) {
  std::vector<std::string> existing;
  for (const auto& f : files) {
    struct stat st {};
    if (::lstat(f.path.c_str(), &st) == 0) existing.push_back(f.path);
  }
  if (existing.empty()) return false;
  std::fprintf(stderr, "acp init: these files exist and are kept:\n");
  for (const auto& p : existing) std::fprintf(stderr, "  %s\n", p.c_str());
  std::fprintf(stderr,
               "acp init: nothing was written; run again with --force to replace them (a "
               "replaced token or secret must be given anew to whoever uses it)\n");
  return true;
}

bool write_files(const std::vector<File>& files) {
  for (const auto& f : files) {
    auto st = util::create_directories(std::filesystem::path(f.path).parent_path(), 0755);
    if (st) st = util::write_file_atomic(f.path, f.content, f.mode);
    if (!st) {
      std::fprintf(stderr, "acp init: %s: %s\n", f.what.c_str(), st.error().message().c_str());
      return false;
    }
    std::printf("wrote %s (%s, mode %04o)\n", f.path.c_str(), f.what.c_str(), f.mode);
  }
  return true;
}

void print_next_steps(const config::Config& c, const std::set<std::string>& chans,
                      const std::string& config_path) {
  std::string on;
  for (const auto& [name, enabled] : {std::pair<const char*, bool>{"web", c.web.enabled},
                                      {"prompt", c.prompt.enabled},
                                      {"webhook", c.webhook.enabled},
                                      {"telegram", c.telegram.enabled}})
    if (enabled) on += (on.empty() ? "" : ", ") + std::string(name);
  const std::string cfg_arg =
      config_path == config::kDefaultConfigPath ? std::string() : " --config=" + config_path;
  std::printf("\nConsent channels enabled: %s\n\nNext steps:\n", on.empty() ? "none" : on.c_str());
  std::printf("  1. Review the policy: %s (check it with `acp policy check %s`).\n",
              c.policy.c_str(), c.policy.c_str());
  if (c.web.enabled)
    std::printf(
        "  2. Run an agent: sudo acp run%s -- CMD. It prints the web page's address,\n"
        "     http://%s/?token=<the token in %s>; open it in a browser on this machine.\n",
        cfg_arg.c_str(), c.web.listen.c_str(), c.web.token_file.c_str());
  else
    std::printf("  2. Run an agent: sudo acp run%s -- CMD\n", cfg_arg.c_str());
  if (c.webhook.enabled)
    std::printf(
        "  - Webhook: give the receiver at %s the secret in %s; it verifies the HMAC-SHA256\n"
        "    signature of each request with it.\n",
        c.webhook.url.c_str(), c.webhook.secret_file.c_str());
  if (chans.count("telegram")) {
    std::printf(
        "  - Telegram: put the bot's token (from @BotFather) in %s, root-owned, mode 600:\n"
        "      sudo install -m 600 -o root /dev/stdin %s   (paste the token, then Ctrl-D)\n",
        c.telegram.token_file.c_str(), c.telegram.token_file.c_str());
    if (c.telegram.enabled)
      std::printf("    Answers count only from chat %s.\n", c.telegram.chat_id.c_str());
    else
      std::printf(
          "    Then set channels.telegram.chat_id to the chat whose answers count and\n"
          "    enabled: true in %s (or rerun with --telegram-chat-id=ID --force).\n",
          config_path.c_str());
  }
  if (c.prompt.enabled)
    std::printf("  - Prompt: questions appear on the terminal that runs `acp run`.\n");
  std::printf(
      "  Anyone can also answer with `sudo acp pending`, `acp approve ID`, `acp deny ID`.\n");
}

int run_init(const InitOptions& o) {
  std::set<std::string> chans(o.channels.begin(), o.channels.end());
  if (chans.empty()) chans.insert("web");
  const std::string dir = init_dir(o);
  const std::string config_path = o.config.empty() ? dir + "/config.yml" : o.config;
  auto c = channel_config(chans, o, dir);
  if (!c) {
    std::fprintf(stderr, "acp init: %s\n", c.error().message().c_str());
    return 2;
  }
  auto files = files_to_write(*c, config_path);
  if (!files) {
    std::fprintf(stderr, "acp init: %s\n", files.error().message().c_str());
    return 1;
  }
  // The rendered config must load as acp run will load it.
  if (auto parsed = config::parse_config(files->front().content, config_path); !parsed) {
    std::fprintf(stderr, "acp init: %s\n", parsed.error().message().c_str());
    return 2;
  }
  if (!o.force && refuse_existing(*files)) return 1;
  if (::geteuid() != 0)
    std::fprintf(stderr,
                 "acp init: warning: not root: the files will be owned by uid %u; acp run as "
                 "root refuses secrets it does not own (use sudo for %s)\n",
                 ::geteuid(), dir.c_str());
  if (!write_files(*files)) return 1;
  print_next_steps(*c, chans, config_path);
  return 0;
}

}  // namespace

void register_init(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand(
      "init",
      "Write the ACP config (/etc/acp/config.yml), a starter policy and the consent channels'\n"
      "secrets (0600). Existing files are kept unless --force.");
  auto o = std::make_shared<InitOptions>();
  cmd->add_option("--channel", o->channels,
                  "Consent channel to enable (repeatable): web, prompt, webhook, telegram; "
                  "default web")
      ->check(CLI::IsMember({"web", "prompt", "webhook", "telegram"}))
      ->delimiter(',');
  cmd->add_flag("--force", o->force, "Replace existing files (new token and secrets)");
  cmd->add_option("--config", o->config, "Where the config goes (default DIR/config.yml)");
  cmd->add_option("--dir", o->dir,
                  "Directory for the policy and secrets (default: the config's directory, "
                  "else /etc/acp)");
  cmd->add_option("--webhook-url", o->webhook_url, "The webhook channel's URL (http(s)://...)");
  cmd->add_option("--telegram-chat-id", o->telegram_chat_id,
                  "The only Telegram chat whose answers count");
  cmd->callback([o, &exit_code] { exit_code = run_init(*o); });
}

}  // namespace acp::cli
