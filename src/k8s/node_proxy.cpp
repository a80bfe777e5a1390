// NodeProxy: one ProxyServer, one consent gate, one audit log; a ConsentJudge per pod.
#include "acp/k8s/node_proxy.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <functional>
#include <optional>
#include <stdexcept>

#include "acp/kernel/door_origin.hpp"
#include "acp/kernel/pinned_session.hpp"
#include "acp/proxy/acp_config.hpp"
#include "acp/proxy/audit_log.hpp"
#include "acp/proxy/channels.hpp"
#include "acp/proxy/consent_gate.hpp"
#include "acp/proxy/consent_judge.hpp"
#include "acp/proxy/control.hpp"
#include "acp/proxy/policy.hpp"
#include "acp/proxy/proxy_server.hpp"
#include "acp/proxy/request_target.hpp"

// GCC 12 misreads asio's awaitable frame allocator (operator new/delete of
// awaitable_frame_base) as a mismatched pair in coroutines: a known false positive.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace acp::k8s {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

constexpr const char* kNodeSession = "node-agent";
constexpr size_t kPodDoorConnections = 512;  // open at once through one pod's door

struct PodEntry {
  std::string uid;
  std::string key;  // namespace/name
  std::vector<std::string> ips;
  std::vector<asio::ip::address> addresses;  // ips, parsed once (the DNS check's, per query)
  std::shared_ptr<consent::ConsentJudge> judge;
  // The pod's policy: whether its DNS may hand out an address for a name (Policy::may_reach).
  std::function<bool(const std::string&)> may_reach;
};

// The wall's door_origin map of one pod, opened from its pins when first needed, and again
// after the agent attached a new wall (wall_changed resets it). A miss is a refusal, never a
// reopen: a connection the wall did not lead in costs one lookup.
struct PodDoorMap {
  std::string pin_dir;
  std::optional<kernel::PinnedSession> pins;

  Result<tcp::endpoint> original(const tcp::endpoint& peer) {
    if (!pins) {
      auto opened = kernel::PinnedSession::open(pin_dir);
      if (!opened) return opened.error();
      pins.emplace(std::move(*opened));
    }
    const int fd = pins->map_fd("door_origin");
    if (fd < 0) return make_error("the pod's wall in " + pin_dir + " has no door_origin map");
    return kernel::door_original(fd, peer);
  }
};

// A pod's transparent door: its own ProxyServer (no explicit listener), judged through the
// node's judge with the pod's uid as the session.
struct PodDoorServer {
  PodDoor ports;
  std::shared_ptr<PodDoorMap> map;
  std::unique_ptr<proxy::ProxyServer> server;
};

class NodeProxyImpl;

// Routes each request to the judge of the pod whose address sent it.
class NodeJudge final : public RequestJudge {
 public:
  explicit NodeJudge(NodeProxyImpl& owner) : owner_(owner) {}
  asio::awaitable<Judgement> judge(Action action) override;

 private:
  NodeProxyImpl& owner_;
};

class NodeProxyImpl final : public NodeProxy {
 public:
  NodeProxyImpl(asio::io_context& io, const NodeProxyConfig& cfg)
      : io_(io),
        cfg_(cfg),
        gate_(io, consent::GateConfig{.session_id = kNodeSession, .grants_path = cfg.grants_path}),
        node_judge_(*this) {}

  ~NodeProxyImpl() override {
    for (auto& ch : channels_) gate_.remove_observer(ch.get());
  }

  Status start() {
    auto audit = audit::AuditLog::open(cfg_.audit_path);
    if (!audit) return audit.error();
    audit_ = std::move(*audit);
    if (cfg_.default_policy) {
      auto p = policy::Policy::load_file(*cfg_.default_policy);
      if (!p) return p.error();
      default_policy_ = std::make_shared<policy::PolicyStore>(std::move(*p), cfg_.default_policy);
    } else {
      default_policy_ =
          std::make_shared<policy::PolicyStore>(policy::Policy::builtin_default(), std::nullopt);
    }
    if (!cfg_.control_path.empty()) {
      auto control = consent::ControlServer::start(io_, cfg_.control_path, gate_);
      if (!control) return control.error();
      control_ = std::move(*control);
    }
    proxy::ProxyConfig pc;
    pc.session_id = kNodeSession;
    pc.own_name = "node-agent proxy";  // pods are told apart by address (pod_for_client)
    for (const auto& ep : cfg_.listen) {
      boost::system::error_code ec;
      auto addr = asio::ip::make_address(kernel::address_string(ep.addr), ec);
      if (ec)
        return make_error("proxy listen address " + kernel::to_string(ep) + ": " + ec.message());
      pc.listen.emplace_back(proxy::unmapped(addr), ep.port);
    }
    if (pc.listen.empty()) return make_error("the node proxy needs at least one --proxy-listen");
    server_ = std::make_unique<proxy::ProxyServer>(io_, pc, node_judge_);
    if (auto st = server_->start(); !st) return st;
    if (cfg_.door) {
      // The pods' doors listen where the pods reach the node: the listen addresses.
      for (const auto& ep : server_->local_endpoints()) {
        const auto a = ep.address();
        if (a.is_unspecified())
          return make_error("the transparent door needs a --proxy-listen address the pods reach (" +
                            a.to_string() + " names none); or --door=proxy");
        if (a.is_v4() && !door_addr4_) door_addr4_ = a.to_v4();
        if (a.is_v6() && !door_addr6_) door_addr6_ = a.to_v6();
      }
    }
    return start_channels();
  }

  Status start_channels() {
    auto config = config::load_config(cfg_.config_path);
    if (!config) return config.error();
    consent::ChannelContext ctx{.session_id = kNodeSession,
                                .agent_command = "acp node-agent (confined pods)",
                                .audit_path = cfg_.audit_path,
                                .proxy_url = "",
                                .session_status = {}};
    auto channels = consent::make_channels(io_, gate_, *config, ctx);
    if (!channels) return channels.error();
    for (auto& ch : *channels) {
      if (auto st = ch->start(); !st)
        return make_error("consent channel " + ch->name() + " (" + config->source +
                          "): " + st.error().message());
      gate_.add_observer(ch.get());
      channels_.push_back(std::move(ch));
    }
    return {};
  }

  std::vector<kernel::Endpoint> endpoints() const override {
    std::vector<kernel::Endpoint> out;
    for (const auto& ep : server_->local_endpoints()) {
      const auto addr = ep.address();
      if (addr.is_v4())
        out.push_back(kernel::endpoint_from_ip4(htonl(addr.to_v4().to_uint()), ep.port()));
      else
        out.push_back(kernel::endpoint_from_ip6(addr.to_v6().to_bytes(), ep.port()));
    }
    return out;
  }

  Status set_pod(const std::string& uid, const std::string& key,
                 const std::vector<std::string>& ips,
                 const std::optional<std::string>& policy_name) override {
    Status result;
    consent::ConsentJudge::Policy decide;
    std::function<bool(const std::string&)> may_reach = [](const std::string&) { return false; };
    if (!policy_name) {
      auto store = default_policy_;
      decide = [store](const Action& a) { return store->current()->decide(a); };
      may_reach = [store](const std::string& n) { return store->current()->may_reach(n); };
    } else {
      auto store = named_policy(*policy_name);
      if (store) {
        auto s = *store;
        decide = [s](const Action& a) { return s->current()->decide(a); };
        may_reach = [s](const std::string& n) { return s->current()->may_reach(n); };
      } else {
        result = store.error();
        std::string why = store.error().message();
        decide = [why](const Action&) -> PolicyDecision {
          throw std::runtime_error("the pod's policy cannot be used: " + why);
        };
      }
    }
    auto entry = std::make_shared<PodEntry>();
    entry->uid = uid;
    entry->key = key;
    entry->ips = ips;
    for (const auto& ip : ips) {
      boost::system::error_code ec;
      const auto a = asio::ip::make_address(ip, ec);
      if (!ec) entry->addresses.push_back(proxy::unmapped(a));
    }
    entry->judge = std::make_shared<consent::ConsentJudge>(std::move(decide), gate_, *audit_, key);
    entry->may_reach = std::move(may_reach);
    forget_pod(uid);  // its door stays open
    for (const auto& ip : ips) by_ip_[ip] = entry;
    by_uid_[uid] = entry;
    return result;
  }

  void remove_pod(const std::string& uid) override {
    if (auto d = doors_.find(uid); d != doors_.end()) {
      add_counts(closed_doors_, *d->second, true);
      d->second->server->stop();
      doors_.erase(d);
    }
    forget_pod(uid);
  }

  void forget_pod(const std::string& uid) {
    auto it = by_uid_.find(uid);
    if (it == by_uid_.end()) return;
    for (const auto& ip : it->second->ips) {
      auto p = by_ip_.find(ip);
      if (p != by_ip_.end() && p->second == it->second) by_ip_.erase(p);
    }
    by_uid_.erase(it);
  }

  void reload_policies() override {
    auto reload = [this](const std::string& name, policy::PolicyStore& s) {
      auto st = s.reload();
      nlohmann::json entry = {{"kind", "policy_reload"},
                              {"session", kNodeSession},
                              {"policy", name},
                              {"ok", st.ok()},
                              {"source", s.current()->source()}};
      if (!st) {
        entry["error"] = st.error().message();
        std::fprintf(stderr, "acp node-agent: policy %s: reload failed, keeping the previous: %s\n",
                     name.c_str(), st.error().message().c_str());
      }
      record(std::move(entry));
    };
    if (cfg_.default_policy) reload("(default)", *default_policy_);
    for (auto& [name, store] : named_) reload(name, *store);
  }

  void record(nlohmann::json event) override {
    if (!event.contains("session")) event["session"] = kNodeSession;
    audit_->append_detached(std::move(event), [](const Error& e) {
      std::fprintf(stderr, "acp node-agent: audit log: %s\n", e.message().c_str());
    });
  }

  DecisionCounts decisions() const override { return counts_; }

  Result<PodDoor> open_door(const std::string& uid, const std::string& pin_dir) override {
    if (!cfg_.door) return PodDoor{};
    if (auto it = doors_.find(uid); it != doors_.end()) return it->second->ports;
    auto listeners = proxy::open_door_listeners_on(io_, door_addr4_, door_addr6_);
    if (!listeners) return listeners.error();
    auto map = std::make_shared<PodDoorMap>();
    map->pin_dir = pin_dir;
    proxy::ProxyConfig pc;
    pc.session_id = uid;  // NodeJudge: a request of this pod's door
    pc.own_name = "transparent door of pod " + uid;
    // One pod's door must not use up the node agent's fds: the other pods' doors, the API
    // watch and the walls share them. Beyond this, a pod's connections are refused (503).
    pc.limits.max_connections = kPodDoorConnections;
    pc.door = *listeners;
    pc.door_origin = [map](int, const tcp::endpoint& peer) { return map->original(peer); };
    pc.dns_may_resolve = [this, uid](const std::string& name) {
      auto it = by_uid_.find(uid);
      return it != by_uid_.end() && it->second->may_reach(name);
    };
    pc.door_clients_at = [this, uid](const asio::ip::address& from) {
      auto it = by_uid_.find(uid);
      if (it == by_uid_.end()) return false;
      const auto& mine = it->second->addresses;
      return std::find(mine.begin(), mine.end(), proxy::unmapped(from)) != mine.end();
    };
    auto door = std::make_unique<PodDoorServer>();
    door->map = map;
    const auto& l = **listeners;
    door->ports.port4 = l.port4;
    door->ports.port6 = l.port6;
    door->ports.dns_port4 = l.dns_port4;
    door->ports.dns_port6 = l.dns_port6;
    if (l.addr4) door->ports.addr4 = htonl(l.addr4->to_uint());
    if (l.addr6) door->ports.addr6 = l.addr6->to_bytes();
    door->server = std::make_unique<proxy::ProxyServer>(io_, std::move(pc), node_judge_);
    if (auto st = door->server->start(); !st) return st.error();
    door->server->set_audit_callback([this, uid](nlohmann::json entry) {
      auto it = by_uid_.find(uid);
      entry["session"] = it != by_uid_.end() ? it->second->key : uid;
      record(std::move(entry));
    });
    PodDoor ports = door->ports;
    doors_[uid] = std::move(door);
    return ports;
  }

  void wall_changed(const std::string& uid) override {
    if (auto d = doors_.find(uid); d != doors_.end()) d->second->map->pins.reset();
  }

  DoorCounts door_counts() const override {
    DoorCounts out = closed_doors_;
    for (const auto& [uid, d] : doors_) add_counts(out, *d);
    return out;
  }

  // The counters of a pod's door into `out` (the names held: only while it is open).
  static void add_counts(DoorCounts& out, const PodDoorServer& d, bool closing = false) {
    const auto c = d.server->counters();
    out.connections += c.door;
    out.refused += c.door_refused;
    out.dns_answered += c.dns_answered;
    out.dns_denied += c.dns_denied;
    if (!closing) out.dns_names += c.dns_names;
  }

  void stop() override {
    for (auto& [uid, d] : doors_) d->server->stop();
    for (auto& ch : channels_) {
      gate_.remove_observer(ch.get());
      ch->stop();
    }
    if (server_) server_->stop();
    control_.reset();
    gate_.shutdown("the node agent stopped");
  }

  // Called by NodeJudge.
  asio::awaitable<Judgement> judge(Action action) {
    // A pod's door names the pod (its session is the pod's uid): the wall that led the
    // connection in is the pod's own. The explicit proxy knows the pod by the client address.
    const bool door = action.session != kNodeSession;
    const auto& index = door ? by_uid_ : by_ip_;
    auto it = index.find(door ? action.session : action.client);
    if (it == index.end()) {
      ++counts_.unknown_client;
      ++counts_.deny;
      Judgement j;
      j.allowed = false;
      j.reason = door ? "pod " + action.session + " is not registered with the node proxy yet"
                      : "client " + action.client + " is not a pod confined by this node's acp";
      record({{"kind", "request"},
              {"verdict", "deny"},
              {"client", action.client},
              {"action", {{"host", action.host}, {"port", action.port}, {"method", action.method}}},
              {"reason", j.reason}});
      co_return j;
    }
    std::shared_ptr<PodEntry> pod = it->second;  // the pod may go away while this waits
    action.session = pod->key;
    Judgement j = co_await pod->judge->judge(std::move(action));
    ++(j.allowed ? counts_.allow : counts_.deny);
    co_return j;
  }

 private:
  Result<std::shared_ptr<policy::PolicyStore>> named_policy(const std::string& name) {
    if (!valid_policy_name(name))
      return make_error("annotation acp.dev/policy=\"" + name +
                        "\" is not a file name in the policy directory");
    if (auto it = named_.find(name); it != named_.end()) return it->second;
    const std::string path = cfg_.policy_dir + "/" + name;
    auto p = policy::Policy::load_file(path);
    if (!p) return p.error();
    auto store = std::make_shared<policy::PolicyStore>(std::move(*p), path);
    named_[name] = store;
    return store;
  }

  asio::io_context& io_;
  NodeProxyConfig cfg_;
  consent::ConsentGate gate_;
  NodeJudge node_judge_;
  std::unique_ptr<audit::AuditLog> audit_;
  std::unique_ptr<consent::ControlServer> control_;
  std::unique_ptr<proxy::ProxyServer> server_;
  std::vector<std::unique_ptr<consent::Channel>> channels_;
  std::shared_ptr<policy::PolicyStore> default_policy_;
  std::map<std::string, std::shared_ptr<policy::PolicyStore>> named_;
  std::map<std::string, std::shared_ptr<PodEntry>> by_uid_;
  std::map<std::string, std::shared_ptr<PodEntry>> by_ip_;
  std::map<std::string, std::unique_ptr<PodDoorServer>> doors_;  // by uid
  std::optional<asio::ip::address_v4> door_addr4_;
  std::optional<asio::ip::address_v6> door_addr6_;
  DoorCounts closed_doors_;  // of pods removed since the start
  DecisionCounts counts_;
};

asio::awaitable<Judgement> NodeJudge::judge(Action action) {
  co_return co_await owner_.judge(std::move(action));
}

}  // namespace

bool valid_policy_name(const std::string& name) {
  if (name.empty() || name.size() > 253 || name.front() == '.') return false;
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
      return false;
  return true;
}

Result<std::unique_ptr<NodeProxy>> NodeProxy::start(asio::io_context& io,
                                                    const NodeProxyConfig& cfg) {
  auto proxy = std::make_unique<NodeProxyImpl>(io, cfg);
  if (auto st = proxy->start(); !st) return st.error();
  return std::unique_ptr<NodeProxy>(std::move(proxy));
}

}  // namespace acp::k8s
