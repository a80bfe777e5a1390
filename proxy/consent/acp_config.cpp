// /etc/acp/config.yml: parsed strictly with the policy loader's YAML model (one YAML reader in
// the project), every error as FILE:LINE.
#include "acp/proxy/acp_config.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/ip/address.hpp>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include "acp/proxy/control.hpp"
#include "acp/proxy/policy_yaml.hpp"

namespace acp::config {
namespace {

using policy::yaml::Document;
using policy::yaml::kNone;
using policy::yaml::Node;
using policy::yaml::NodeKind;

class Reader {
 public:
  Reader(const Document& d, std::string src) : doc_(d), src_(std::move(src)) {}

  std::string at(const Node& n) const { return src_ + ":" + std::to_string(n.line) + ": "; }

  // Calls `fn(key, value)` for each entry of mapping `n`; unknown keys are errors.
  Status each(const Node& n, const std::string& where,
              const std::map<std::string, std::function<Status(const Node&)>>& keys) const {
    if (n.kind != NodeKind::Mapping) return make_error(at(n) + where + " must be a mapping");
    for (uint32_t k = n.first; k != kNone;) {
      const Node& key = doc_.nodes[k];
      const Node& val = doc_.nodes[key.next];
      std::string name(key.text);
      auto it = keys.find(name);
      if (it == keys.end()) {
        std::string known;
        for (const auto& [kk, _] : keys) known += (known.empty() ? "" : ", ") + kk;
        return make_error(at(key) + "unknown key '" + name + "' in " + where + " (expected " +
                          known + ")");
      }
      if (auto st = it->second(val); !st) return st;
      k = val.next;
    }
    return {};
  }

  Status text(const Node& n, const std::string& key, std::string& out) const {
    if (n.kind != NodeKind::Scalar) return make_error(at(n) + key + " must be a value");
    out = std::string(n.text);
    return {};
  }

  Status strings(const Node& n, const std::string& key, std::vector<std::string>& out) const {
    if (n.kind != NodeKind::Sequence) return make_error(at(n) + key + " must be a list");
    out.clear();
    for (uint32_t i = n.first; i != kNone; i = doc_.nodes[i].next) {
      const Node& item = doc_.nodes[i];
      if (item.kind != NodeKind::Scalar) return make_error(at(item) + key + " must hold values");
      out.emplace_back(item.text);
    }
    return {};
  }

  Status boolean(const Node& n, const std::string& key, bool& out) const {
    if (n.kind == NodeKind::Scalar && n.plain && (n.text == "true" || n.text == "false")) {
      out = n.text == "true";
      return {};
    }
    return make_error(at(n) + key + " must be true or false");
  }

  Status integer(const Node& n, const std::string& key, int lo, int hi, int& out) const {
    int v = 0;
    auto t = n.text;
    auto r = std::from_chars(t.data(), t.data() + t.size(), v);
    if (n.kind != NodeKind::Scalar || r.ec != std::errc() || r.ptr != t.data() + t.size() ||
        v < lo || v > hi)
      return make_error(at(n) + key + " must be a number from " + std::to_string(lo) + " to " +
                        std::to_string(hi));
    out = v;
    return {};
  }

  Status duration(const Node& n, const std::string& key, std::chrono::seconds& out) const {
    if (n.kind != NodeKind::Scalar || !consent::parse_duration(std::string(n.text), out))
      return make_error(at(n) + key + " must be a duration like 10s, 2m or 30");
    return {};
  }

  Status loopback_listen(const Node& n, const std::string& key, std::string& out) const {
    if (auto st = text(n, key, out); !st) return st;
    auto colon = out.rfind(':');
    std::string host = colon == std::string::npos ? "" : out.substr(0, colon);
    if (host.size() > 1 && host.front() == '[' && host.back() == ']')
      host = host.substr(1, host.size() - 2);
    int port = 0;
    auto ps = out.substr(colon == std::string::npos ? out.size() : colon + 1);
    auto r = std::from_chars(ps.data(), ps.data() + ps.size(), port);
    boost::system::error_code ec;
    auto addr = boost::asio::ip::make_address(host, ec);
    if (ec || r.ec != std::errc() || r.ptr != ps.data() + ps.size() || port < 1 || port > 65535)
      return make_error(at(n) + key + " must be HOST:PORT (e.g. 127.0.0.1:8444), got '" + out +
                        "'");
    if (!addr.is_loopback())
      return make_error(at(n) + key + " must be a loopback address (127.0.0.1 or [::1]): the " +
                        "channel would otherwise be reachable from the network");
    return {};
  }

 private:
  const Document& doc_;
  std::string src_;
};

}  // namespace

Result<Config> parse_config(const std::string& text, const std::string& source) {
  Config c;
  c.source = source;
  auto doc = policy::yaml::parse(text, source);
  if (!doc) return doc.error();
  if (doc->nodes.empty()) return c;  // an empty file: the defaults
  Reader r(*doc, source);
  const Node& root = doc->nodes[0];
  auto web = [&](const Node& n) {
    return r.each(
        n, "channels.web",
        {{"enabled", [&](const Node& v) { return r.boolean(v, "enabled", c.web.enabled); }},
         {"listen", [&](const Node& v) { return r.loopback_listen(v, "listen", c.web.listen); }},
         {"token_file", [&](const Node& v) { return r.text(v, "token_file", c.web.token_file); }}});
  };
  auto prompt = [&](const Node& n) {
    return r.each(
        n, "channels.prompt",
        {{"enabled", [&](const Node& v) { return r.boolean(v, "enabled", c.prompt.enabled); }}});
  };
  auto webhook = [&](const Node& n) {
    auto& w = c.webhook;
    return r.each(
        n, "channels.webhook",
        {{"enabled", [&](const Node& v) { return r.boolean(v, "enabled", w.enabled); }},
         {"url", [&](const Node& v) { return r.text(v, "url", w.url); }},
         {"secret_file", [&](const Node& v) { return r.text(v, "secret_file", w.secret_file); }},
         {"timeout", [&](const Node& v) { return r.duration(v, "timeout", w.timeout); }},
         {"retries", [&](const Node& v) { return r.integer(v, "retries", 0, 10, w.retries); }},
         {"callback_listen", [&](const Node& v) {
            return r.loopback_listen(v, "callback_listen", w.callback_listen);
          }}});
  };
  auto telegram = [&](const Node& n) {
    auto& t = c.telegram;
    return r.each(
        n, "channels.telegram",
        {{"enabled", [&](const Node& v) { return r.boolean(v, "enabled", t.enabled); }},
         {"api_base", [&](const Node& v) { return r.text(v, "api_base", t.api_base); }},
         {"token_file", [&](const Node& v) { return r.text(v, "token_file", t.token_file); }},
         {"chat_id", [&](const Node& v) { return r.text(v, "chat_id", t.chat_id); }},
         {"ca_file", [&](const Node& v) { return r.text(v, "ca_file", t.ca_file); }}});
  };
  auto tls = [&](const Node& n) {
    auto& t = c.tls_inspection;
    return r.each(
        n, "tls_inspection",
        {{"enabled", [&](const Node& v) { return r.boolean(v, "enabled", t.enabled); }},
         {"exclude", [&](const Node& v) { return r.strings(v, "exclude", t.exclude); }},
         {"upstream_ca", [&](const Node& v) { return r.text(v, "upstream_ca", t.upstream_ca); }}});
  };
  auto st = r.each(
      root, "the config",
      {{"policy", [&](const Node& v) { return r.text(v, "policy", c.policy); }},
       {"tls_inspection", tls},
       {"channels", [&](const Node& v) {
          return r.each(
              v, "channels",
              {{"web", web}, {"prompt", prompt}, {"webhook", webhook}, {"telegram", telegram}});
        }}});
  if (!st) return st.error();
  if (c.webhook.enabled && c.webhook.url.rfind("http://", 0) != 0 &&
      c.webhook.url.rfind("https://", 0) != 0)
    return make_error(source + ": channels.webhook is enabled but its url is not http(s)://...");
  if (c.telegram.enabled && c.telegram.chat_id.empty())
    return make_error(source + ": channels.telegram is enabled but has no chat_id (the only " +
                      "chat whose answers count)");
  return c;
}

Result<Config> load_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) {
      Config c;
      c.source = "(defaults)";
      return c;
    }
    return errno_error("cannot read " + path);
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str(), path);
}

std::string render_config(const Config& c) {
  auto b = [](bool v) { return v ? "true" : "false"; };
  auto q = [](const std::string& s) {
    std::string o = "\"";
    for (char ch : s) {
      if (ch == '"' || ch == '\\') o += '\\';
      o += ch;
    }
    return o + "\"";
  };
  std::ostringstream o;
  o << "# ACP configuration, written by `acp init`. Secrets live in the 0600 files named here.\n"
    << "# Reference: docs/consent.md. Changes apply to sessions started afterwards.\n";
  if (!c.policy.empty()) o << "policy: " << q(c.policy) << "\n";
  o << "channels:\n"
    << "  web:\n"
    << "    enabled: " << b(c.web.enabled) << "\n"
    << "    listen: " << q(c.web.listen) << "\n"
    << "    token_file: " << q(c.web.token_file) << "\n"
    << "  prompt:\n"
    << "    enabled: " << b(c.prompt.enabled) << "\n"
    << "  webhook:\n"
    << "    enabled: " << b(c.webhook.enabled) << "\n"
    << "    url: " << q(c.webhook.url) << "\n"
    << "    secret_file: " << q(c.webhook.secret_file) << "\n"
    << "    timeout: " << c.webhook.timeout.count() << "s\n"
    << "    retries: " << c.webhook.retries << "\n";
  if (!c.webhook.callback_listen.empty())
    o << "    callback_listen: " << q(c.webhook.callback_listen) << "\n";
  o << "  telegram:\n"
    << "    enabled: " << b(c.telegram.enabled) << "\n"
    << "    api_base: " << q(c.telegram.api_base) << "\n"
    << "    token_file: " << q(c.telegram.token_file) << "\n"
    << "    chat_id: " << q(c.telegram.chat_id) << "\n"
    << "    ca_file: " << q(c.telegram.ca_file) << "\n";
  const auto& t = c.tls_inspection;
  if (t.enabled || !t.exclude.empty() || !t.upstream_ca.empty()) {
    o << "tls_inspection:\n"
      << "  enabled: " << b(t.enabled) << "\n";
    if (!t.exclude.empty()) {
      o << "  exclude:\n";
      for (const auto& e : t.exclude) o << "    - " << q(e) << "\n";
    }
    if (!t.upstream_ca.empty()) o << "  upstream_ca: " << q(t.upstream_ca) << "\n";
  }
  return o.str();
}

Result<std::string> read_secret_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return errno_error("cannot read secret file " + path);
  if (!S_ISREG(st.st_mode)) return make_error("secret file " + path + " is not a regular file");
  if (st.st_uid != 0 && st.st_uid != ::geteuid())
    return make_error("secret file " + path + " is not owned by root: fix with `sudo chown root " +
                      path + "`");
  if (st.st_mode & 077) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%03o", static_cast<unsigned>(st.st_mode & 0777));
    return make_error("secret file " + path + " is readable by others (mode " + mode +
                      "): fix with `sudo chmod 600 " + path + "`");
  }
  std::ifstream in(path);
  if (!in) return errno_error("cannot read secret file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() &&
         (s.back() == '\n' || s.back() == '\r' || s.back() == ' ' || s.back() == '\t'))
    s.pop_back();
  if (s.empty()) return make_error("secret file " + path + " is empty");
  return s;
}

}  // namespace acp::config
