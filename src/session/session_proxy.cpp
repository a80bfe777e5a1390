// SessionProxy: the consent proxy of one `acp run`, with the policy, the consent gate, the
// control socket and the audit log behind it. Everything runs on the session's io_context.
#include "acp/session/session_proxy.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "acp/kernel/door_origin.hpp"
#include "acp/kernel/event_reader.hpp"
#include "acp/kernel/session_maps.hpp"
#include "acp/proxy/acp_config.hpp"
#include "acp/proxy/audit_log.hpp"
#include "acp/proxy/channels.hpp"
#include "acp/proxy/conntrack.hpp"
#include "acp/proxy/consent_gate.hpp"
#include "acp/proxy/consent_judge.hpp"
#include "acp/proxy/control.hpp"
#include "acp/proxy/policy.hpp"
#include "acp/proxy/proxy_server.hpp"
#include "acp/proxy/tls_inspector.hpp"
#include "acp/proxy/web_channel.hpp"
#include "acp/util/unique_fd.hpp"

namespace acp {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

// The transparent door's original destinations: the bpf wall's door_origin map.
using DoorOrigin = std::function<Result<tcp::endpoint>(int, const tcp::endpoint&)>;
DoorOrigin door_origin_lookup(int map_fd) {
  return [map_fd](int, const tcp::endpoint& peer) { return kernel::door_original(map_fd, peer); };
}

// The iptables wall's: conntrack's original destination of the accepted socket.
DoorOrigin door_origin_conntrack() {
  return [](int fd, const tcp::endpoint&) { return proxy::conntrack_original_destination(fd); };
}

constexpr const char* kDefaultAuditPath = "/var/log/acp/audit.jsonl";
constexpr const char* kDefaultControlPath = "/run/acp/control.sock";
constexpr const char* kDefaultGrantsPath = "/var/lib/acp/grants.json";
// When 8443 is taken and no port was asked for, the next free one in this range is used.
constexpr uint16_t kFallbackPortLast = 8499;

class SessionProxyImpl final : public SessionProxy {
 public:
  SessionProxyImpl(asio::io_context& io, const SessionProxyConfig& cfg, policy::Policy initial)
      : io_(io),
        cfg_(cfg),
        policy_(std::move(initial), cfg.policy_path),
        gate_(io,
              consent::GateConfig{.session_id = cfg.session_id,
                                  .grants_path = or_default(cfg.grants_path, kDefaultGrantsPath)}) {
  }

  ~SessionProxyImpl() override {
    for (auto& ch : channels_) gate_.remove_observer(ch.get());
  }

  Status start(const config::Config& config) {
    // Named whether or not the channel is on: a file holding a secret is hidden all the same.
    secret_paths_ = {config.web.token_file, config.webhook.secret_file, config.telegram.token_file,
                     or_default(cfg_.grants_path, kDefaultGrantsPath),
                     or_default(cfg_.ca_dir, proxy::kDefaultCaDir) + "/private"};
    auto audit = audit::AuditLog::open(or_default(cfg_.audit_path, kDefaultAuditPath));
    if (!audit) return audit.error();
    audit_ = std::move(*audit);

    auto control = consent::ControlServer::start(
        io_, or_default(cfg_.control_path, kDefaultControlPath), gate_);
    if (!control) return control.error();
    control_ = std::move(*control);

    judge_ = std::make_unique<consent::ConsentJudge>(
        [this](const Action& a) { return policy_.current()->decide(a); }, gate_, *audit_,
        cfg_.session_id);

    if (cfg_.inspect_tls) {
      proxy::TlsInspectOptions opts;
      if (!cfg_.ca_dir.empty()) opts.ca_dir = cfg_.ca_dir;
      opts.exclude = cfg_.inspect_tls_exclude;
      opts.upstream_ca_file = cfg_.upstream_ca;
      auto insp = proxy::TlsInspector::create(opts);
      if (!insp) return make_error("--inspect-tls: " + insp.error().message());
      inspector_ = std::move(*insp);
    }
    if (cfg_.serve_proxy) {
      if (auto st = start_server(); !st) return st;
      control_->set_stats([this] {
        const auto c = server_->counters();
        return nlohmann::json{{"connections", c.connections},
                              {"requests", c.requests},
                              {"tunnels", c.tunnels},
                              {"allowed", c.allowed},
                              {"denied", c.denied},
                              {"errors", c.errors},
                              {"foreign_clients", c.foreign},
                              {"door_connections", c.door},
                              {"door_refused", c.door_refused},
                              {"dns_answered", c.dns_answered},
                              {"dns_denied", c.dns_denied},
                              {"dns_names", c.dns_names}};
      });
    }
    return start_channels(config);
  }

  // Every enabled channel must start: a session whose human cannot be asked does not run.
  Status start_channels(const config::Config& config) {
    consent::ChannelContext ctx{.session_id = cfg_.session_id,
                                .agent_command = cfg_.agent_command,
                                .audit_path = audit_path(),
                                .proxy_url = proxy_url(),
                                .session_status = cfg_.session_status};
    auto channels = consent::make_channels(io_, gate_, config, ctx);
    if (!channels) return channels.error();
    for (auto& ch : *channels) {
      if (auto st = ch->start(); !st)
        return make_error("consent channel " + ch->name() + " (" + config.source +
                          "): " + st.error().message());
      gate_.add_observer(ch.get());
      channels_.push_back(std::move(ch));
    }
    return {};
  }

  Status start_server() {
    std::shared_ptr<proxy::GatewayDns> gateway_dns;
    if (!cfg_.dns_gateway.empty()) {
      auto dns = proxy::open_gateway_dns(io_, cfg_.dns_gateway, cfg_.dns_subnet);
      if (!dns) return dns.error();
      gateway_dns = std::move(*dns);
    }
    const uint16_t last = cfg_.port_is_explicit ? cfg_.port : kFallbackPortLast;
    Error last_error;
    for (uint32_t port = cfg_.port; port <= last; ++port) {
      proxy::ProxyConfig pc;
      pc.session_id = cfg_.session_id;
      pc.inspect_tls = inspector_;
      pc.client_cgroup = cfg_.client_cgroup;
      pc.own_name = "consent proxy of session " + cfg_.session_id;
      pc.door = cfg_.door;
      pc.gateway_dns = gateway_dns;
      // Docker: the proxy and the door serve only the session's own network. A host process
      // or a container on another network that reaches the gateway address is refused at
      // accept, never judged (or audited, or asked about) as the session.
      if (gateway_dns)
        pc.clients_at = [gw = gateway_dns](const asio::ip::address& a) { return gw->may_ask(a); };
      if (cfg_.door || gateway_dns) {
        if (cfg_.door) {
          pc.door_origin = cfg_.door_origin_conntrack ? door_origin_conntrack()
                                                      : door_origin_lookup(cfg_.door_origin_fd);
          pc.door_client_keeps_original = cfg_.door_origin_conntrack;
          // Docker: the door's DNS answers the containers on the session's network.
          if (gateway_dns)
            pc.door_clients_at = [gw = gateway_dns](const asio::ip::address& a) {
              return gw->may_ask(a);
            };
        }
        // The policy of the moment (SIGHUP reloads it): a name it denies everywhere is NXDOMAIN.
        pc.dns_may_resolve = [this](const std::string& name) {
          return policy_.current()->may_reach(name);
        };
      }
      if (cfg_.listen_addresses.empty()) {
        pc.listen = {
            tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port))};
        if (ipv6_loopback_usable())
          pc.listen.emplace_back(asio::ip::make_address("::1"), static_cast<uint16_t>(port));
      } else {
        for (const auto& a : cfg_.listen_addresses) {
          boost::system::error_code ec;
          auto addr = asio::ip::make_address(a, ec);
          if (ec) return make_error("proxy listen address \"" + a + "\": " + ec.message());
          pc.listen.emplace_back(addr, static_cast<uint16_t>(port));
        }
      }
      auto server = std::make_unique<proxy::ProxyServer>(io_, pc, *judge_);
      auto st = server->start();
      if (st) {
        server_ = std::move(server);
        server_->set_audit_callback([this](nlohmann::json entry) {
          if (auto s = judge_->record_event(std::move(entry)); !s)
            std::fprintf(stderr, "acp: audit log: %s\n", s.error().message().c_str());
        });
        return {};
      }
      last_error = st.error();
      if (st.error().err != EADDRINUSE) break;
    }
    if (last_error.err == EADDRINUSE && cfg_.port_is_explicit)
      return make_error("proxy port " + std::to_string(cfg_.port) + " is in use on " +
                            listen_text() + ": choose another with --proxy-port=N",
                        EADDRINUSE);
    if (last_error.err == EADDRINUSE)
      return make_error("proxy ports " + std::to_string(cfg_.port) + "-" +
                            std::to_string(kFallbackPortLast) +
                            " are all in use: choose a free one with --proxy-port=N",
                        EADDRINUSE);
    return last_error;
  }

  std::vector<kernel::Endpoint> endpoints() const override {
    std::vector<kernel::Endpoint> out;
    if (!server_) return out;
    for (const auto& ep : server_->local_endpoints()) {
      const auto addr = ep.address();
      if (addr.is_v4())
        out.push_back(kernel::endpoint_from_ip4(htonl(addr.to_v4().to_uint()), ep.port()));
      else
        out.push_back(kernel::endpoint_from_ip6(addr.to_v6().to_bytes(), ep.port()));
    }
    return out;
  }

  std::string proxy_url() const override {
    if (!server_) return {};
    const auto ep = server_->local_endpoints().front();
    const auto addr = ep.address();
    const std::string host = addr.is_v6() ? "[" + addr.to_string() + "]" : addr.to_string();
    return "http://" + host + ":" + std::to_string(ep.port());
  }

  std::string trust_bundle() const override {
    return inspector_ ? inspector_->ca().bundle : std::string();
  }

  std::string control_path() const override { return control_->path(); }
  std::string audit_path() const override { return or_default(cfg_.audit_path, kDefaultAuditPath); }

  std::vector<std::string> channel_descriptions() const override {
    std::vector<std::string> out;
    for (const auto& ch : channels_) out.push_back(ch->describe());
    return out;
  }

  std::string consent_page_url() const override {
    for (const auto& ch : channels_)
      if (const auto* web = dynamic_cast<const consent::WebChannel*>(ch.get())) return web->url();
    return "";
  }

  std::vector<std::string> secret_paths() const override { return secret_paths_; }

  void reload_policy() override {
    auto st = policy_.reload();
    if (st) {
      std::fprintf(stderr, "acp: policy reloaded from %s (%zu rules)\n",
                   policy_.current()->source().c_str(), policy_.current()->rule_count());
    } else {
      std::fprintf(stderr, "acp: policy reload failed, keeping the previous policy: %s\n",
                   st.error().message().c_str());
    }
    nlohmann::json entry = {{"kind", "policy_reload"},
                            {"session", cfg_.session_id},
                            {"ok", st.ok()},
                            {"source", policy_.current()->source()}};
    if (!st) entry["error"] = st.error().message();
    // Queued on the audit log's writer thread: the event loop never waits for the disk.
    audit_->append_detached(std::move(entry), [](const Error& e) {
      std::fprintf(stderr, "acp: audit log: policy reload not recorded: %s\n", e.message().c_str());
    });
  }

  void record_kernel_event(const acp_event& e) override {
    nlohmann::json entry = kernel::event_to_json(e);
    entry["kind"] = "connect";
    if (auto st = judge_->record_event(std::move(entry)); !st)
      std::fprintf(stderr, "acp: audit log: %s\n", st.error().message().c_str());
  }

  RequestJudge& judge() override { return *judge_; }

  proxy::DoorMetrics metrics() const override {
    proxy::DoorMetrics m;
    if (server_) {
      m.proxy = server_->counters();
      m.latency = server_->latency();
    }
    if (judge_) m.decisions = judge_->metrics();
    if (audit_) m.audit = audit_->stats();
    const auto now = std::chrono::system_clock::now();
    for (const auto& p : gate_.pending()) {
      ++m.asks_pending;
      m.oldest_ask_seconds =
          std::max(m.oldest_ask_seconds, std::chrono::duration<double>(now - p.created).count());
    }
    return m;
  }

  void stop() override {
    for (auto& ch : channels_) {
      gate_.remove_observer(ch.get());
      ch->stop();
    }
    if (server_) server_->stop();
    control_.reset();
    gate_.shutdown("the session ended");
  }

 private:
  static std::string or_default(const std::string& v, const char* d) {
    return v.empty() ? std::string(d) : v;
  }
  std::string listen_text() const {
    if (cfg_.listen_addresses.empty()) return "127.0.0.1 or ::1";
    std::string t;
    for (const auto& a : cfg_.listen_addresses) t += (t.empty() ? "" : " or ") + a;
    return t;
  }
  // [::1] is served when the machine has it (IPv6 can be disabled, or ::1 missing in a netns).
  static bool ipv6_loopback_usable() {
    UniqueFd s(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!s) return false;
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    return ::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }

  asio::io_context& io_;
  SessionProxyConfig cfg_;
  policy::PolicyStore policy_;
  consent::ConsentGate gate_;
  std::unique_ptr<audit::AuditLog> audit_;
  std::unique_ptr<consent::ControlServer> control_;
  std::unique_ptr<consent::ConsentJudge> judge_;
  std::shared_ptr<proxy::TlsInspector> inspector_;
  std::unique_ptr<proxy::ProxyServer> server_;
  std::vector<std::unique_ptr<consent::Channel>> channels_;
  std::vector<std::string> secret_paths_;
};

}  // namespace

Result<std::unique_ptr<SessionProxy>> SessionProxy::start(asio::io_context& io,
                                                          const SessionProxyConfig& cfg) {
  auto config =
      config::load_config(cfg.config_path.empty() ? config::kDefaultConfigPath : cfg.config_path);
  if (!config) return config.error();
  SessionProxyConfig c = cfg;
  // TLS inspection: on with --inspect-tls or the config's tls_inspection.enabled; excludes add
  // up; --inspect-tls-upstream-ca wins over the config's upstream_ca.
  const auto& tls = config->tls_inspection;
  c.inspect_tls = c.inspect_tls || tls.enabled;
  c.inspect_tls_exclude.insert(c.inspect_tls_exclude.end(), tls.exclude.begin(), tls.exclude.end());
  if (c.upstream_ca.empty()) c.upstream_ca = tls.upstream_ca;
  // --policy wins; else the config's policy; else the built-in one.
  if (!c.policy_path && !config->policy.empty()) c.policy_path = config->policy;
  auto initial = c.policy_path ? policy::Policy::load_file(*c.policy_path)
                               : Result<policy::Policy>(policy::Policy::builtin_default());
  if (!initial) return initial.error();
  auto proxy = std::make_unique<SessionProxyImpl>(io, c, std::move(*initial));
  if (auto st = proxy->start(*config); !st) return st.error();
  return std::unique_ptr<SessionProxy>(std::move(proxy));
}

}  // namespace acp
