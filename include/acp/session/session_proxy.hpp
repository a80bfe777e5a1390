// The door in the wall: the session's consent proxy with everything behind it (policy, consent
// gate, control socket, audit log), wired for one `acp run`. Runs on the session's event loop.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "acp/kernel/endpoint.hpp"
#include "acp/proxy/door_metrics.hpp"
#include "acp/proxy/request_judge.hpp"
#include "acp/util/result.hpp"
#include "acp_abi.h"

namespace acp::proxy {
struct DoorListeners;
}

namespace acp {

struct SessionProxyConfig {
  std::string session_id;
  uint16_t port = 8443;
  bool port_is_explicit = false;  // false: when taken, the next free port is used
  // Where the proxy listens. Empty: 127.0.0.1 and (when usable) ::1. The docker backend gives
  // its network's gateway address only, so only that session's container reaches it.
  std::vector<std::string> listen_addresses;
  std::optional<std::string> policy_path;
  std::string audit_path;     // empty: the default (/var/log/acp/audit.jsonl)
  std::string control_path;   // empty: the default (/run/acp/control.sock)
  std::string grants_path;    // empty: the default (/var/lib/acp/grants.json)
  std::string config_path;    // empty: the default (/etc/acp/config.yml; missing: defaults)
  std::string agent_command;  // for the consent channels: who is asking
  // The session's status for the channels' pages (acp status --json's session object), read
  // on the event loop; empty: none.
  std::function<nlohmann::json()> session_status;
  // --inspect-tls: see docs/tls-inspection.md.
  bool inspect_tls = false;
  std::vector<std::string> inspect_tls_exclude;
  std::string upstream_ca;  // empty: the system store
  std::string ca_dir;       // empty: /var/lib/acp/ca
  // The session's cgroup v2 directory: the proxy serves only clients whose socket the kernel
  // puts there (or below). Empty (docker, preload, none, acp mcp): whoever reaches the listener.
  std::string client_cgroup;
  // false: everything but the proxy listener (`acp mcp` judges stdio tool calls through judge()).
  bool serve_proxy = true;
  // The transparent door (--door=transparent|both, docs/transparent.md): its listeners, opened
  // before the wall, and the wall's door_origin map. Null: no transparent door.
  std::shared_ptr<proxy::DoorListeners> door;
  int door_origin_fd = -1;
  // Instead of door_origin_fd: the original destinations are conntrack's (the iptables wall's
  // nat REDIRECT; backend::Wall::door_origin_from_conntrack).
  bool door_origin_conntrack = false;
  // Set (docker): the session's DNS responder on this gateway, port 53, answering senders in
  // dns_subnet only (proxy::GatewayDns). Empty: none.
  std::string dns_gateway;
  std::string dns_subnet;
};

class SessionProxy {
 public:
  static Result<std::unique_ptr<SessionProxy>> start(boost::asio::io_context& io,
                                                     const SessionProxyConfig& cfg);
  virtual ~SessionProxy() = default;

  // The endpoints the proxy listens on: what the BPF allow map must hold, and nothing else.
  virtual std::vector<kernel::Endpoint> endpoints() const = 0;
  // "http://<first listen address>:<port>", e.g. "http://127.0.0.1:8443"
  virtual std::string proxy_url() const = 0;
  // Where `acp pending/approve/deny` reach this session's consent gate.
  virtual std::string control_path() const = 0;
  // The audit log this session writes to.
  virtual std::string audit_path() const = 0;
  // One line per running consent channel (e.g. the web page's address), for `acp run`. No
  // line holds a secret: they go where the agent may read them (see channel_notice.hpp).
  virtual std::vector<std::string> channel_descriptions() const = 0;
  // The web page's address with its token ("" without a page): for acp's terminal only.
  virtual std::string consent_page_url() const = 0;
  // What a root agent must not read: the channels' secret files (web token, webhook secret,
  // Telegram token), the grants file and the CA's private directory.
  virtual std::vector<std::string> secret_paths() const = 0;
  // With --inspect-tls: the CA bundle the agent must trust (system CAs + ACP's); else empty.
  virtual std::string trust_bundle() const = 0;
  // SIGHUP: reload the policy; a broken new policy keeps the old one and says why.
  virtual void reload_policy() = 0;
  // A denied connect() from the kernel: into the audit log.
  virtual void record_kernel_event(const acp_event& e) = 0;
  virtual void stop() = 0;
  // The policy + consent gate + audit log judge the proxy uses, for other doors (`acp mcp`).
  virtual RequestJudge& judge() = 0;
  // What the door counted (docs/daemon.md, "Metrics"). On the event loop (the gate's pending
  // asks are read there).
  virtual proxy::DoorMetrics metrics() const = 0;
};

}  // namespace acp
