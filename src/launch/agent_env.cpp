#include "acp/launch/agent_env.hpp"

#include <unistd.h>

#include <algorithm>
#include <unordered_map>

extern char** environ;

namespace acp::launch {
namespace {

std::string_view key_of(std::string_view entry) {
  auto eq = entry.find('=');
  return eq == std::string_view::npos ? entry : entry.substr(0, eq);
}

// Ordered "KEY=VALUE" list with one entry per key.
class EnvList {
 public:
  void set(std::string_view key, std::string_view value) {
    std::string entry = std::string(key) + "=" + std::string(value);
    auto it = index_.find(std::string(key));
    if (it != index_.end()) {
      entries_[it->second] = std::move(entry);
    } else {
      index_.emplace(std::string(key), entries_.size());
      entries_.push_back(std::move(entry));
    }
  }
  void set_entry(const std::string& entry) {
    auto key = key_of(entry);
    if (key.size() == entry.size()) {  // no '=': keep verbatim, it names nothing we manage
      entries_.push_back(entry);
      return;
    }
    set(key, std::string_view(entry).substr(key.size() + 1));
  }
  void erase(std::string_view key) {
    auto it = index_.find(std::string(key));
    if (it == index_.end()) return;
    erased_.push_back(it->second);
    index_.erase(it);
  }
  std::vector<std::string> take() {
    std::sort(erased_.begin(), erased_.end());
    std::vector<std::string> out;
    out.reserve(entries_.size());
    for (size_t i = 0; i < entries_.size(); ++i)
      if (!std::binary_search(erased_.begin(), erased_.end(), i))
        out.push_back(std::move(entries_[i]));
    return out;
  }

 private:
  std::vector<std::string> entries_;
  std::unordered_map<std::string, size_t> index_;
  std::vector<size_t> erased_;
};

}  // namespace

std::vector<std::string> build_agent_env(const std::vector<std::string>& parent_env,
                                         const AgentEnvSettings& s) {
  EnvList env;
  for (const auto& e : parent_env) env.set_entry(e);
  for (const char* k :
       {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"})
    env.set(k, s.proxy_url);
  env.erase("NO_PROXY");
  env.erase("no_proxy");
  env.set("ACP_SANDBOX", "1");
  env.set("ACP_SESSION", s.session_id);
  if (s.user) {
    env.set("HOME", s.user->home);
    env.set("USER", s.user->name);
    env.set("LOGNAME", s.user->name);
    env.set("SHELL", s.user->shell);
  }
  for (const auto& [k, v] : s.extra) env.set(k, v);
  return env.take();
}

std::vector<std::pair<std::string, std::string>> trust_env(const std::string& bundle) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const char* k :
       {"SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"})
    out.emplace_back(k, bundle);
  return out;
}

std::vector<std::string> current_environment() {
  std::vector<std::string> out;
  for (char** e = environ; e && *e; ++e) out.emplace_back(*e);
  return out;
}

std::map<std::string, std::string> env_to_map(const std::vector<std::string>& env) {
  std::map<std::string, std::string> out;
  for (const auto& e : env) {
    auto eq = e.find('=');
    if (eq == std::string::npos) continue;
    out[e.substr(0, eq)] = e.substr(eq + 1);
  }
  return out;
}

std::optional<std::string> env_lookup(const std::vector<std::string>& env, std::string_view key) {
  std::optional<std::string> found;
  for (const auto& e : env) {
    if (e.size() > key.size() && e[key.size()] == '=' &&
        std::string_view(e).substr(0, key.size()) == key)
      found = e.substr(key.size() + 1);
  }
  return found;
}

}  // namespace acp::launch
