// /etc/acp/config.yml: which consent channels ask the human, and how. Written by `acp init`
// (root-owned 0644); secrets live in separate root-only 0600 files the config names, never in
// the config itself. A missing config file means the defaults below: the web page on
// 127.0.0.1:8444 and nothing else. Unknown keys are errors (a typo must not switch a channel
// off silently). See docs/consent.md.
//
//   policy: /etc/acp/policy.yml          # used by `acp run` when --policy is not given
//   channels:
//     web:      {enabled: true, listen: 127.0.0.1:8444, token_file: /etc/acp/web.token}
//     prompt:   {enabled: false}
//     webhook:  {enabled: false, url: https://hooks.example/acp,
//                secret_file: /etc/acp/webhook.secret, timeout: 10s, retries: 2,
//                callback_listen: 127.0.0.1:8445}
//     telegram: {enabled: false, api_base: https://api.telegram.org,
//                token_file: /etc/acp/telegram.token, chat_id: "12345", ca_file: ""}
//   tls_inspection:                      # docs/tls-inspection.md; off unless enabled
//     enabled: false
//     exclude: ["*.pinned.example"]      # host globs tunnelled untouched
//     upstream_ca: ""                    # origins' CA file (empty: the system store)
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "acp/util/result.hpp"

namespace acp::config {

inline constexpr const char* kDefaultConfigPath = "/etc/acp/config.yml";

struct WebChannel {
  bool enabled = true;
  std::string listen = "127.0.0.1:8444";  // loopback only: the wall keeps the agent off it
  std::string token_file = "/etc/acp/web.token";
};

struct PromptChannel {
  bool enabled = false;
};

struct WebhookChannel {
  bool enabled = false;
  std::string url;  // http:// or https://
  std::string secret_file = "/etc/acp/webhook.secret";
  std::chrono::seconds timeout{10};  // per attempt; the rule's ask timeout still bounds it all
  int retries = 2;                   // extra attempts after the first, bounded
  std::string callback_listen;       // empty: no asynchronous answers
};

struct TelegramChannel {
  bool enabled = false;
  std::string api_base = "https://api.telegram.org";
  std::string token_file = "/etc/acp/telegram.token";
  std::string chat_id;  // answers from any other chat are ignored
  std::string ca_file;  // extra CA bundle for api_base (empty: the system store)
};

// `acp run --inspect-tls` without the flag; the flag's excludes add to these.
struct TlsInspection {
  bool enabled = false;
  std::vector<std::string> exclude;
  std::string upstream_ca;
};

struct Config {
  std::string source;  // the file it came from; "(defaults)" when there was none
  std::string policy;  // empty: the built-in default policy
  WebChannel web;
  PromptChannel prompt;
  WebhookChannel webhook;
  TelegramChannel telegram;
  TlsInspection tls_inspection;
};

// Reads `path`. A missing file gives the defaults; anything malformed is an error naming the
// file, line and key. Checks: listen addresses parse as loopback HOST:PORT, a webhook that is
// enabled has a url, a telegram channel that is enabled has a chat_id.
Result<Config> load_config(const std::string& path = kDefaultConfigPath);
Result<Config> parse_config(const std::string& text, const std::string& source);

// The YAML `acp init` writes (round-trips through parse_config).
std::string render_config(const Config& c);

// Reads a secret file: must be a regular file owned by root (uid 0, or the caller's uid when
// not root, for tests) and not readable by group or others. Trailing whitespace is dropped.
Result<std::string> read_secret_file(const std::string& path);

}  // namespace acp::config
