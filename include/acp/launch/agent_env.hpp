// The agent's environment: the caller's, pointed at the consent proxy and at the target user.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "acp/launch/target_user.hpp"

namespace acp::launch {

struct AgentEnvSettings {
  std::string proxy_url;  // e.g. "http://127.0.0.1:8443"
  std::string session_id;
  const TargetUser* user = nullptr;  // when set: HOME, USER, LOGNAME, SHELL from it
  // Applied last, so they override anything above (e.g. ACP_CONTAINED=1, LD_PRELOAD for the
  // preload backend). The caller owns that choice.
  std::vector<std::pair<std::string, std::string>> extra;
};

// Builds the agent's environment from `parent_env` ("KEY=VALUE" strings):
//  - sets HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and their lower-case twins to proxy_url;
//  - sets ACP_SANDBOX=1 and ACP_SESSION=<session_id>;
//  - drops NO_PROXY and no_proxy: every request must meet the proxy (the kernel wall blocks
//    a bypass anyway; dropping it turns a confusing EPERM into a proxied request);
//  - sets HOME, USER, LOGNAME and SHELL for the target user, when given.
// Everything else is kept as it is, PATH, LD_LIBRARY_PATH and LD_PRELOAD included: the wall is
// in the kernel, so no variable can weaken it, and a silently missing variable is a worse
// surprise (sudo's env_reset already strips LD_* when it applies). Order is kept, each key
// appears once (the first occurrence's position, the last value wins), new keys are appended.
std::vector<std::string> build_agent_env(const std::vector<std::string>& parent_env,
                                         const AgentEnvSettings& settings);

// --inspect-tls: SSL_CERT_FILE, NODE_EXTRA_CA_CERTS, REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE,
// each pointing at `bundle` (system CAs + ACP's CA), for AgentEnvSettings::extra.
std::vector<std::pair<std::string, std::string>> trust_env(const std::string& bundle);

// This process's environment as "KEY=VALUE" strings.
std::vector<std::string> current_environment();

// "KEY=VALUE" strings as a map (the last value of a key wins; entries without '=' are skipped).
std::map<std::string, std::string> env_to_map(const std::vector<std::string>& env);

// The value of `key` in "KEY=VALUE" strings (the last one wins), or nullopt.
std::optional<std::string> env_lookup(const std::vector<std::string>& env, std::string_view key);

}  // namespace acp::launch
