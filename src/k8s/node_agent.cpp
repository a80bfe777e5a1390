// The node agent: watcher -> confiner + proxy registry, and the node gate (PodGate) that
// refuses every pod it has not classified; /healthz, /readyz and /metrics. One thread, one
// io_context.
#include "acp/k8s/node_agent.hpp"

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "acp/cgroup/mounts.hpp"
#include "acp/k8s/pod_confiner.hpp"
#include "acp/k8s/pod_gate.hpp"
#include "acp/k8s/pod_watcher.hpp"
#include "acp/kernel/bpffs.hpp"
#include "acp/kernel/event_reader.hpp"
#include "acp/kernel/pinned_session.hpp"
#include "acp/proxy/metrics_server.hpp"
#include "acp/proxy/request_target.hpp"
#include "acp/util/fd_limit.hpp"
#include "acp/util/prometheus_text.hpp"

// GCC 12 misreads asio's awaitable frame allocator (operator new/delete of
// awaitable_frame_base) as a mismatched pair in coroutines: a known false positive.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace acp::k8s {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using error_code = boost::system::error_code;

void log(const std::string& line) {
  std::fprintf(stderr, "acp node-agent: %s\n", line.c_str());
}

// A confined pod's refused attempts (its wall's ring buffer) into the audit log, with the pod's
// namespace/name.
class PodEvents : public std::enable_shared_from_this<PodEvents> {
 public:
  PodEvents(asio::io_context& io, std::string key, NodeProxy& proxy)
      : stream_(io), key_(std::move(key)), proxy_(proxy) {}

  Status start(const std::string& pin_dir) {
    auto pinned = kernel::PinnedSession::open(pin_dir);
    if (!pinned) return pinned.error();
    auto reader = kernel::EventReader::create(pinned->map_fd("events"),
                                              [this](const acp_event& e) { on_event(e); });
    if (!reader) return reader.error();
    reader_.emplace(std::move(*reader));
    stream_.assign(::dup(reader_->epoll_fd()));
    (void)reader_->consume();  // what came while nobody read (an agent restart)
    arm();
    return {};
  }
  void stop() {
    error_code ec;
    stream_.cancel(ec);
    stream_.close(ec);
  }

 private:
  void arm() {
    stream_.async_wait(asio::posix::stream_descriptor::wait_read,
                       [self = shared_from_this()](const error_code& ec) {
                         if (ec) return;
                         (void)self->reader_->consume();
                         self->arm();
                       });
  }
  void on_event(const acp_event& e) {
    nlohmann::json entry = kernel::event_to_json(e);
    entry["kind"] = "connect";
    entry["session"] = key_;
    proxy_.record(std::move(entry));
  }

  asio::posix::stream_descriptor stream_;
  std::optional<kernel::EventReader> reader_;
  std::string key_;
  NodeProxy& proxy_;
};

// What the agent knows about each pod that wants a wall.
struct Tracked {
  Pod pod;
  bool confined = false;
  std::string cgroup;
  std::shared_ptr<PodEvents> events;
};

class Agent final : public PodWatchHandler {
 public:
  Agent(asio::io_context& io, const NodeAgentConfig& cfg, NodeProxy& proxy, PodConfiner& confiner,
        PodGate& gate, KubeClient& client)
      : io_(io),
        proxy_(proxy),
        confiner_(confiner),
        gate_(gate),
        watcher_(io, client,
                 PodWatcherConfig{.node_name = cfg.node_name, .watch_timeout = cfg.watch_timeout},
                 *this) {
    unknown_allow_ = cfg.unknown_allow;
  }

  PodWatcher& watcher() { return watcher_; }

  void on_list(const std::vector<Pod>& pods) override {
    std::set<std::string> want;
    known_.clear();
    mirrors_.clear();
    for (const auto& p : pods) {
      known_[p.uid] = p.wants_confinement();
      note_mirror(p);
      if (p.wants_confinement()) want.insert(p.uid);
    }
    // Walls of pods that are gone or no longer labelled: from this agent or an earlier one.
    std::set<std::string> stale;
    for (const auto& [uid, t] : tracked_)
      if (!want.count(uid)) stale.insert(uid);
    if (auto pinned = confiner_.pinned_uids()) {
      for (const auto& uid : *pinned)
        if (!want.count(uid)) stale.insert(uid);
    } else {
      log("cannot list pinned pods: " + pinned.error().message());
    }
    for (const auto& uid : stale) release(uid, "gone or no longer labelled at list");
    for (const auto& p : pods)
      if (p.wants_confinement()) apply(p);
    // Every pod cgroup on the node: classified by what the API says, or refused when the API
    // does not know its pod (gone while the agent was away, or not listed yet).
    for (const auto& uid : gate_.pod_uids()) {
      if (known_.count(uid) || mirrors_.count(uid))
        classify(uid);
      else
        unclassify(uid);
    }
    if (gate_.started() && !gate_.armed()) {
      if (auto st = gate_.arm(); !st)
        log("node gate: " + st.error().message() + "; will retry");
      else
        log("node gate armed on the kubepods cgroup: pods the agent has not classified are "
            "refused" +
            std::string(unknown_allow_ ? " (no: --unknown-pods=allow)" : ""));
    }
  }

  void on_event(const WatchEvent& ev) override {
    const Pod& p = ev.pod;
    if (ev.type == WatchEventType::Deleted) {
      known_.erase(p.uid);
      if (auto m = mirrors_.find(p.mirror_uid); m != mirrors_.end() && m->second.api_uid == p.uid) {
        mirrors_.erase(m);
        if (!known_.count(p.mirror_uid)) unclassify(p.mirror_uid);
      }
      release(p.uid, "pod deleted");
      unclassify(p.uid);  // what is left of it reaches nothing
      return;
    }
    known_[p.uid] = p.wants_confinement();
    if (note_mirror(p)) classify(p.mirror_uid);
    if (p.wants_confinement()) {
      apply(p);
      return;
    }
    if (tracked_.count(p.uid) || is_pinned(p.uid))
      release(p.uid,
              p.phase == "Succeeded" || p.phase == "Failed" ? "pod finished" : "label removed");
    classify(p.uid);
  }

  // The kubelet made a pod's cgroup (inotify): classify it now, not at the next retry.
  void on_pod_cgroup(const std::string& uid) {
    auto t = tracked_.find(uid);
    if (t != tracked_.end() && !t->second.confined) {
      try_confine(t->second);
      return;
    }
    // Confined before the gate started (the retry that attached its wall came first): the
    // gate must let it through to that wall, or the pod is refused every socket for good.
    if (t != tracked_.end()) {
      if (auto st = gate_.classify_dir(t->second.cgroup, kernel::GateClass::Walled); !st)
        log("pod " + t->second.pod.key() + ": " + st.error().message() +
            " (the node gate keeps refusing it)");
      return;
    }
    classify(uid);
  }
  // A pod's cgroup went: its wall went with it; a cgroup made again gets a new one.
  void on_pod_cgroup_gone(const std::string& uid) {
    auto t = tracked_.find(uid);
    if (t == tracked_.end()) return;
    t->second.confined = false;
    if (t->second.events) t->second.events->stop();
    t->second.events.reset();
  }

  void on_error(const std::string& what) override {
    last_error_ = what;
    log(what);
  }

  // Pods whose cgroup was not there, or whose wall failed: try again. A gate that could not
  // start (no kubepods cgroup yet) is tried again too.
  void retry_pending() {
    for (auto& [uid, t] : tracked_)
      if (!t.confined) try_confine(t);
    if (!gate_.started()) {
      if (auto st = gate_.start(); st) {
        log("node gate started on " + gate_.pin_dir());
        for (const auto& uid : gate_.pod_uids()) on_pod_cgroup(uid);
      }
    } else if (!gate_.armed() && watcher_.synced()) {
      if (auto st = gate_.arm(); !st) log("node gate: " + st.error().message() + "; will retry");
    }
  }

  std::string metrics() const {
    using util::MetricType;
    size_t confined = 0, pending = 0;
    uint64_t denied = released_denied_, allowed = released_allowed_;
    struct PodDenied {
      const Pod* pod;
      uint64_t denied;
    };
    std::vector<PodDenied> per_pod;
    for (const auto& [uid, t] : tracked_) {
      if (!t.confined) {
        ++pending;
        continue;
      }
      ++confined;
      if (auto c = confiner_.counters(uid)) {
        denied += c->total_denied();
        allowed += c->total_allowed();
        per_pod.push_back({&t.pod, c->total_denied()});
      }
    }
    const auto d = proxy_.decisions();
    const auto& w = watcher_.counters();
    util::PrometheusText m;
    m.gauge("acp_node_pods_confined", "Pods whose BPF wall stands (attached and pinned).",
            static_cast<double>(confined));
    m.gauge("acp_node_pods_pending", "Labelled pods whose cgroup does not exist yet.",
            static_cast<double>(pending));
    m.family("acp_node_decisions_total", MetricType::Counter, "Proxy decisions by verdict.");
    m.sample(d.allow, {{"verdict", "allow"}});
    m.sample(d.deny, {{"verdict", "deny"}});
    m.counter("acp_node_unknown_client_requests_total",
              "Requests refused because no confined pod has the client's address.",
              d.unknown_client);
    const auto door = proxy_.door_counts();
    m.counter("acp_node_door_connections_total",
              "TCP connections the pods' walls led to their transparent doors.", door.connections);
    m.counter("acp_node_door_refused_total",
              "Of those, refused before judging (no original destination, a local one).",
              door.refused);
    m.family("acp_node_dns_queries_total", MetricType::Counter,
             "The pods' DNS queries answered by their policies, by outcome.");
    m.sample(door.dns_answered, {{"outcome", "synthetic"}});
    m.sample(door.dns_denied, {{"outcome", "nxdomain"}});
    m.gauge("acp_node_dns_names", "Names holding a synthetic address in the pods' doors now.",
            static_cast<double>(door.dns_names));
    m.counter("acp_node_denied_connects_total",
              "connect()/sendmsg()/socket() attempts the kernel refused in confined pods (BPF "
              "counters).",
              denied);
    m.counter("acp_node_allowed_connects_total", "Attempts the kernel let through (to the proxy).",
              allowed);
    m.family("acp_node_pod_denied_connects", MetricType::Gauge,
             "Refused attempts per confined pod.");
    for (const auto& p : per_pod)
      m.sample(p.denied, {{"namespace", p.pod->ns}, {"pod", p.pod->name}});
    gate_metrics(m);
    m.counter("acp_node_watch_restarts_total",
              "Pod watches started again (server timeout, connection lost, error).",
              w.watch_restarts);
    m.counter("acp_node_relists_total", "Lists forced by 410 Gone.", w.relists_gone);
    m.counter("acp_node_watch_errors_total", "Failed lists and watches.", w.errors);
    m.gauge("acp_node_watch_synced", "1 once the pods of the node were listed.",
            watcher_.synced() ? 1 : 0);
    return m.text();
  }

  void gate_metrics(util::PrometheusText& m) const {
    using util::MetricType;
    const PodGateStats g = gate_.stats();
    m.gauge("acp_node_gate_armed", "1 while the node gate stands on the kubepods cgroup.",
            g.armed ? 1 : 0);
    m.gauge("acp_node_unknown_pods_allowed",
            "1 when --unknown-pods=allow: pods the agent has not classified keep their network.",
            unknown_allow_ ? 1 : 0);
    m.family("acp_node_pods_classified", MetricType::Gauge,
             "Pod cgroups the node gate lets through, by class (open: unlabelled; walled: their "
             "own wall stands).");
    m.sample(static_cast<uint64_t>(g.open), {{"class", "open"}});
    m.sample(static_cast<uint64_t>(g.walled), {{"class", "walled"}});
    m.gauge("acp_node_pods_unclassified",
            "Pod cgroups the node gate refuses: not (yet) classified.",
            static_cast<double>(g.unclassified));
    m.counter("acp_node_gate_refused_total",
              "Socket calls the node gate refused because the pod was not classified.",
              g.counters.refused);
    m.counter("acp_node_gate_unknown_allowed_total",
              "Socket calls of unclassified pods let through (--unknown-pods=allow).",
              g.counters.unknown_allowed);
  }

  bool ready() const { return watcher_.synced(); }
  const std::string& last_error() const { return last_error_; }

 private:
  // What the gate lets through for this pod: an unlabelled pod its network; a labelled one only
  // once its own wall stands (try_confine classifies it then). Unknown pods stay refused.
  //
  // A static pod is known by its mirror's claim (kubernetes.io/config.mirror): only ever to let
  // an unlabelled one through, and only for a cgroup no pod of the API has as its own uid. A
  // claim never walls or unwalls anything (a pod that names another's uid would otherwise take
  // that pod's wall down), and a labelled static pod stays refused: its wall would be attached
  // on the word of an annotation.
  void classify(const std::string& uid) {
    auto k = known_.find(uid);
    bool open = k != known_.end() && !k->second;
    if (k == known_.end())
      if (auto m = mirrors_.find(uid); m != mirrors_.end()) open = !m->second.labelled;
    if (!open) return;
    if (auto st = gate_.classify(uid, kernel::GateClass::Open); !st)
      log("pod " + uid + ": " + st.error().message() + " (the node gate keeps refusing it)");
  }
  // Records a mirror pod's claim; true when it is one.
  bool note_mirror(const Pod& p) {
    if (p.mirror_uid.empty()) return false;
    const bool labelled = p.labels.count(kConfineLabel) && p.labels.at(kConfineLabel) == "true";
    mirrors_[p.mirror_uid] = {p.uid, labelled};
    if (labelled)
      log("static pod " + p.key() + " is labelled " + kConfineLabel +
          ": static pods cannot be confined, it stays refused by the node gate");
    return true;
  }
  void unclassify(const std::string& uid) {
    if (auto st = gate_.unclassify(uid); !st) log("pod " + uid + ": " + st.error().message());
  }

  bool is_pinned(const std::string& uid) const {
    return ::access(confiner_.pin_dir(uid).c_str(), F_OK) == 0;
  }

  void apply(const Pod& p) {
    auto [it, fresh] = tracked_.try_emplace(p.uid);
    Tracked& t = it->second;
    const bool changed = fresh || t.pod.ips != p.ips || t.pod.policy_name() != p.policy_name();
    t.pod = p;
    if (!t.confined) {
      try_confine(t);
    } else if (changed) {
      register_pod(t);
    }
  }

  void try_confine(Tracked& t) {
    const Pod& p = t.pod;
    auto r = confiner_.confine(p.uid, parse_qos_class(p.qos_class), &t.cgroup);
    if (!r) {
      log("pod " + p.key() + " (" + p.uid + "): " + r.error().message() + "; will retry");
      return;
    }
    if (*r == ConfineOutcome::NoCgroup) {
      // Known before its cgroup: load and verify now, so the wall is ready when it appears.
      if (auto st = confiner_.prepare(p.uid); !st)
        log("pod " + p.key() + ": programs not prepared: " + st.error().message());
      return;
    }
    t.confined = true;
    // A new wall has a new door_origin map: the door must not read the old one's entries.
    if (*r != ConfineOutcome::Adopted) proxy_.wall_changed(p.uid);
    log("pod " + p.key() + " (" + p.uid + "): " + to_string(*r) + ", cgroup " + t.cgroup);
    proxy_.record({{"kind", "pod_confined"},
                   {"pod", p.key()},
                   {"uid", p.uid},
                   {"cgroup", t.cgroup},
                   {"outcome", to_string(*r)}});
    register_pod(t);
    // Its own wall stands on t.cgroup: the gate lets the pod through to it.
    if (auto st = gate_.classify_dir(t.cgroup, kernel::GateClass::Walled); !st)
      log("pod " + p.key() + ": " + st.error().message() + " (the node gate keeps refusing it)");
    t.events = std::make_shared<PodEvents>(io_, p.key(), proxy_);
    if (auto st = t.events->start(confiner_.pin_dir(p.uid)); !st) {
      log("pod " + p.key() + ": kernel events not read: " + st.error().message());
      t.events.reset();
    }
  }

  void register_pod(Tracked& t) {
    const Pod& p = t.pod;
    // A hostNetwork pod has the node's addresses: requests from them cannot be told apart.
    std::vector<std::string> ips = p.host_network ? std::vector<std::string>{} : p.ips;
    if (auto st = proxy_.set_pod(p.uid, p.key(), ips, p.policy_name()); !st)
      log("pod " + p.key() + ": " + st.error().message() + " (its requests are denied)");
  }

  void release(const std::string& uid, const std::string& why) {
    auto it = tracked_.find(uid);
    const bool pinned = is_pinned(uid);
    if (it == tracked_.end() && !pinned) return;
    const std::string key = it != tracked_.end() ? it->second.pod.key() : "(unknown pod)";
    proxy_.remove_pod(uid);
    confiner_.drop_prepared(uid);
    if (it != tracked_.end() && it->second.events) it->second.events->stop();
    if (pinned) {
      if (auto c = confiner_.counters(uid)) {
        released_denied_ += c->total_denied();
        released_allowed_ += c->total_allowed();
      }
      if (auto st = confiner_.release(uid); !st) {
        log("pod " + key + " (" + uid + "): detach failed: " + st.error().message());
        return;  // still tracked: the next list retries
      }
      log("pod " + key + " (" + uid + "): released (" + why + ")");
      proxy_.record({{"kind", "pod_released"}, {"pod", key}, {"uid", uid}, {"reason", why}});
    }
    if (it != tracked_.end()) tracked_.erase(it);
  }

  asio::io_context& io_;
  NodeProxy& proxy_;
  PodConfiner& confiner_;
  PodGate& gate_;
  PodWatcher watcher_;
  std::map<std::string, Tracked> tracked_;
  std::map<std::string, bool> known_;  // every pod of the node the API told of: labelled?
  struct Mirror {
    std::string api_uid;
    bool labelled = false;
  };
  std::map<std::string, Mirror> mirrors_;  // static pods: the kubelet's uid -> its mirror
  bool unknown_allow_ = false;
  uint64_t released_denied_ = 0;
  uint64_t released_allowed_ = 0;
  std::string last_error_;
};

asio::awaitable<void> retry_loop(asio::io_context& io, Agent& agent,
                                 std::chrono::milliseconds every) {
  asio::steady_timer t(io);
  for (;;) {
    t.expires_after(every);
    error_code ec;
    co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    agent.retry_pending();
  }
}

// /healthz (liveness), /readyz (the node's pods were listed), /metrics.
proxy::HttpReply http_route(const Agent& agent, std::string_view target) {
  if (target == "/healthz") return {200, "text/plain; charset=utf-8", "ok\n"};
  if (target == "/readyz") {
    if (agent.ready()) return {200, "text/plain; charset=utf-8", "ok\n"};
    return {503, "text/plain; charset=utf-8", "pods not listed yet: " + agent.last_error() + "\n"};
  }
  if (target == "/metrics") return {200, util::kPrometheusContentType, agent.metrics()};
  return {404, "text/plain; charset=utf-8", "not found: /healthz, /readyz, /metrics\n"};
}

}  // namespace

int run_node_agent(const NodeAgentConfig& in) {
  NodeAgentConfig cfg = in;
  auto fail = [](const std::string& what) {
    log(what);
    return 1;
  };
  if (cfg.node_name.empty())
    return fail("no node name: set NODE_NAME (the downward API's spec.nodeName) or --node-name");
  if (cfg.cgroup_root.empty()) {
    auto root = cgroup2_mount_point();
    if (!root) return fail(root.error().message());
    cfg.cgroup_root = *root;
  }
  if (!cfg.driver) {
    auto d = detect_cgroup_driver(cfg.cgroup_root);
    if (!d) return fail(d.error().message());
    cfg.driver = *d;
  }
  if (cfg.bpffs_root == kernel::kBpffsMountPoint)
    if (auto st = kernel::ensure_bpffs(); !st) return fail(st.error().message());

  // Every confined pod's door holds two fds per tunnel, besides the API watch and the walls.
  raise_fd_limit_for_tunnels();
  asio::io_context io;
  // The gate first: when an earlier agent's gate stands, this agent's own pod (made while no
  // agent was there) is refused every socket until the gate is told it is the agent's.
  Agent* agent_ptr = nullptr;
  PodGate gate(io,
               PodGateConfig{.cgroup_root = cfg.cgroup_root,
                             .driver = *cfg.driver,
                             .bpffs_root = cfg.bpffs_root,
                             // Audit mode refuses nothing, the gate included.
                             .unknown_allow = cfg.unknown_allow || cfg.audit_mode},
               PodGate::Handler{.pod_cgroup_appeared =
                                    [&agent_ptr](const std::string& uid) {
                                      if (agent_ptr) agent_ptr->on_pod_cgroup(uid);
                                    },
                                .pod_cgroup_gone =
                                    [&agent_ptr](const std::string& uid) {
                                      if (agent_ptr) agent_ptr->on_pod_cgroup_gone(uid);
                                    }});
  if (auto st = gate.start(); !st)
    log("node gate: " + st.error().message() + "; will retry");
  else if (gate.self_uid())
    log("node gate: the agent's own pod " + *gate.self_uid() + " is let through");
  auto proxy = NodeProxy::start(io, cfg.proxy);
  if (!proxy) return fail("node proxy: " + proxy.error().message());
  NodeProxy& node_proxy = **proxy;
  PodConfinerConfig confiner_cfg{.cgroup_root = cfg.cgroup_root,
                                 .driver = *cfg.driver,
                                 .bpffs_root = cfg.bpffs_root,
                                 .allow = node_proxy.endpoints(),
                                 .mode = cfg.audit_mode ? 1u : 0u,
                                 .door = {}};
  if (cfg.proxy.door)
    confiner_cfg.door = [&node_proxy](const std::string& uid, const std::string& pin_dir) {
      return node_proxy.open_door(uid, pin_dir);
    };
  PodConfiner confiner(std::move(confiner_cfg));
  KubeClient client(io, cfg.api);
  Agent agent(io, cfg, **proxy, confiner, gate, client);
  agent_ptr = &agent;

  std::unique_ptr<proxy::MetricsServer> http;  // one of ACP's own endpoints (own_endpoints.hpp)
  if (!cfg.metrics_listen.empty()) {
    auto ep = kernel::parse_endpoint(cfg.metrics_listen);
    if (!ep) return fail("--metrics-listen: " + ep.error().message());
    error_code ec;
    auto addr = proxy::unmapped(asio::ip::make_address(kernel::address_string(ep->addr), ec));
    auto server = proxy::MetricsServer::start(
        io, tcp::endpoint(addr, ep->port),
        "node-agent metrics listener (" + cfg.metrics_listen + ")",
        [&agent](std::string_view target) { return http_route(agent, target); });
    if (!server)
      return fail("--metrics-listen " + cfg.metrics_listen + ": " + server.error().message());
    http = std::move(*server);
  }

  std::string proxies;
  for (const auto& ep : (*proxy)->endpoints()) proxies += " " + kernel::to_string(ep);
  log(std::string("node ") + cfg.node_name + ", cgroup driver " + to_string(*cfg.driver) +
      " under " + cfg.cgroup_root + ", pins under " + cfg.bpffs_root + "/acp, proxy on" + proxies +
      (cfg.proxy.door ? ", a transparent door per pod" : ", no transparent door (--door=proxy)") +
      (cfg.audit_mode ? " (audit mode: nothing is refused)" : "") +
      (cfg.unknown_allow ? "; UNKNOWN PODS ALLOWED: pods not yet classified keep their network "
                           "(--unknown-pods=allow)"
                         : ""));

  asio::signal_set signals(io, SIGINT, SIGTERM, SIGHUP);
  std::function<void()> wait_signal;
  wait_signal = [&] {
    signals.async_wait([&](const error_code& ec, int sig) {
      if (ec) return;
      if (sig == SIGHUP) {
        (*proxy)->reload_policies();
        wait_signal();
        return;
      }
      // The walls stay: a stopped agent leaves its pods confined and without a door.
      log("stopping; confined pods keep their walls (pinned)");
      (*proxy)->stop();
      if (http) http->stop();
      io.stop();
    });
  };
  wait_signal();

  asio::co_spawn(io, agent.watcher().run(), asio::detached);
  asio::co_spawn(io, retry_loop(io, agent, cfg.retry_interval), asio::detached);
  io.run();
  return 0;
}

}  // namespace acp::k8s
