// The session's steps, in the order session_builder.hpp gives, each with its undo.
#include "acp/session/session_builder.hpp"

#include <unistd.h>

#include <chrono>
#include <ctime>

#include "acp/backend/docker_wall.hpp"
#include "acp/backend/preload.hpp"
#include "acp/cgroup/mounts.hpp"
#include "acp/kernel/bpffs.hpp"
#include "acp/launch/agent_env.hpp"
#include "acp/launch/task_limit.hpp"
#include "acp/proxy/proxy_server.hpp"
#include "acp/session/session_status.hpp"
#include "acp/session/test_pause.hpp"
#include "acp/session/undo_stack.hpp"
#include "acp/util/session_id.hpp"

namespace acp {
namespace {

constexpr auto kKillTimeout = std::chrono::seconds(10);

class SessionBuild {
 public:
  SessionBuild(boost::asio::io_context& io, SessionPlan plan) : io_(io), plan_(std::move(plan)) {}

  Result<BuiltSession> run() {
    for (auto step :
         {&SessionBuild::name_session, &SessionBuild::record_step, &SessionBuild::cgroup_step,
          &SessionBuild::door_step, &SessionBuild::wall_step, &SessionBuild::late_door_step,
          &SessionBuild::pins_step, &SessionBuild::proxy_step, &SessionBuild::allow_step}) {
      if (auto st = (this->*step)(); !st) return undo_after(st.error());
    }
    undo_.dismiss();  // complete: what must outlive acp stays (pins, chains, cgroup, record)
    return std::move(out_);
  }

 private:
  Error undo_after(const Error& e) {
    if (auto st = undo_.unwind(); !st)
      return make_error(e.message() + "; undoing the session failed: " + st.error().message() +
                            "; run `sudo acp gc --kill` to remove what is left of session " + id_,
                        e.err);
    return e;
  }

  // The container bounds a docker agent; every other session as root has a cgroup.
  bool wants_cgroup() const { return plan_.root && plan_.kind != backend::Kind::kDocker; }

  // Before the agent step nothing runs in the cgroup; if something does, the wall stays over it.
  Status cgroup_is_empty() const {
    if (!out_.cgroup) return {};
    auto populated = out_.cgroup->populated();
    if (!populated) return populated.error();
    if (*populated)
      return make_error("processes run in " + out_.record.cgroup + ": the wall stays over them");
    return {};
  }

  // The id and where its parts go; nothing is made yet.
  Status name_session() {
    if (wants_cgroup()) {
      auto root = cgroup2_mount_point();
      if (!root) return root.error();
      out_.cgroup2_root = *root;
    }
    if (plan_.kind == backend::Kind::kBpf)
      if (auto st = kernel::ensure_bpffs(); !st) return st;
    if (plan_.id.empty()) {
      auto fresh = new_session_id();  // fails closed without randomness
      if (!fresh) return fresh.error();
      id_ = *fresh;
    } else {
      id_ = plan_.id;
    }
    SessionRecord& rec = out_.record;
    rec = plan_.record;
    rec.id = id_;
    rec.acp_pid = ::getpid();
    rec.acp_start_time = process_start_time(::getpid());
    rec.backend = std::string(backend::kind_name(plan_.kind));
    rec.mode = plan_.audit_only ? "audit" : "enforce";
    rec.cgroup = wants_cgroup() ? session_cgroup_path(out_.cgroup2_root, id_) : std::string();
    // The path only: the directory is made in the wall step, after the record. A pin
    // directory without a record looks orphaned to another acp's housekeeping, which would take
    // it down while this session is being built.
    if (plan_.kind == backend::Kind::kBpf) {
      auto dir = kernel::session_pin_path(id_);
      if (!dir) return dir.error();
      rec.pin_dir = *dir;
    }
    rec.started_at = static_cast<int64_t>(std::time(nullptr));
    return {};
  }

  // First, so that nobody takes the half-built session for an orphan. Without root there is
  // no record (/run/acp is root's): such a session is not in acp status.
  Status record_step() {
    if (!plan_.root) return {};
    if (auto st = write_session_record(kSessionRecordDir, out_.record); !st) return st;
    undo_.push("remove the session record",
               [id = id_] { return remove_session_record(kSessionRecordDir, id); });
    return {};
  }

  // Its undo kills what is in it before removing it (nothing, before the agent step).
  Status cgroup_step() {
    if (!wants_cgroup()) return {};
    const std::string path = out_.record.cgroup;
    auto made = Cgroup::create(path);
    if (!made) return made.error();
    made->release();  // it outlives acp with the wall; teardown_session() removes it
    out_.cgroup.emplace(std::move(*made));
    undo_.push("remove the session cgroup " + path, [path]() -> Status {
      auto cg = Cgroup::open(path);
      if (!cg) return cg.error().err == ENOENT ? Status{} : Status{cg.error()};
      if (auto st = cg->kill_all(kKillTimeout); !st) return st;
      if (auto st = cg->remove(); !st) return st;
      // The last session out leaves no empty acp/ cgroup behind (fails harmlessly otherwise).
      ::rmdir(path.substr(0, path.rfind('/')).c_str());
      return {};
    });
    if (plan_.test_pauses) test_pause_point("cgroup");
    return {};
  }

  // Before the wall: its connect hooks need the listeners' ports. Nothing undoes them but
  // their closing with the builder (or with the proxy, which takes them over).
  Status door_step() {
    if (plan_.door == Door::kProxy) return {};
    const bool walled = plan_.kind == backend::Kind::kBpf ||
                        plan_.kind == backend::Kind::kIptables ||
                        plan_.kind == backend::Kind::kDocker;
    if (!walled || plan_.audit_only)
      return make_error(std::string("--door=transparent or both needs the bpf, iptables or docker "
                                    "backend in enforce mode; this session is ") +
                            std::string(backend::kind_name(plan_.kind)) +
                            (plan_.audit_only ? " in audit mode" : "") + ": use --door=proxy",
                        EINVAL);
    // Docker: the door listens on the network's gateway, which the wall step makes.
    if (plan_.kind == backend::Kind::kDocker) return {};
    auto door = proxy::open_door_listeners(io_);
    if (!door) return door.error();
    door_ = std::move(*door);
    out_.record.door = door_name(plan_.door);
    return {};
  }

  Status wall_step() {
    if (plan_.wall) {
      out_.wall = std::move(plan_.wall);
    } else {
      auto wall = backend::make_wall(plan_.kind);
      if (!wall) return wall.error();
      out_.wall = std::move(*wall);
    }
    if (!out_.record.pin_dir.empty())
      if (auto made = kernel::session_pin_dir(id_); !made) return made.error();
    backend::WallSpec spec;
    spec.session_id = id_;
    spec.session_number = session_id_number(id_);
    spec.audit_only = plan_.audit_only;
    spec.cgroup_path = out_.record.cgroup;
    spec.cgroup_fd = out_.cgroup ? out_.cgroup->fd() : -1;
    spec.cgroup2_root = out_.cgroup2_root;
    spec.pin_dir = out_.record.pin_dir;
    spec.allow_unix = plan_.allow_unix;
    if (door_) {
      spec.door_port4 = door_->port4;
      spec.door_port6 = door_->port6;
      spec.dns_port4 = door_->dns_port4;
      spec.dns_port6 = door_->dns_port6;
    }
    const auto env = launch::current_environment();
    spec.preload_library_override = launch::env_lookup(env, backend::kPreloadLibEnv);
    spec.inherited_ld_preload = launch::env_lookup(env, "LD_PRELOAD");
    backend::Wall* w = out_.wall.get();
    undo_.push("take the " + out_.record.backend + " wall down", [this, w]() -> Status {
      if (auto st = cgroup_is_empty(); !st) return st;
      return w->remove();
    });
    if (auto st = w->build(spec); !st) return st;
    if (auto gap = w->unix_gap(); !gap.empty()) out_.notices.push_back(std::move(gap));
    return {};
  }

  static constexpr uint16_t kDockerDoorPortFirst = 1023;
  static constexpr uint16_t kDockerDoorPortLast = 900;

  // Docker's door, once its network is there: a listener on the gateway, whose port the
  // firewall (allow step) leads the bridge's other TCP to.
  Status late_door_step() {
    if (plan_.door == Door::kProxy || plan_.kind != backend::Kind::kDocker) return {};
    const auto where = out_.wall->door_addresses();
    boost::system::error_code ec;
    const auto gateway = where.empty() ? boost::asio::ip::address()
                                       : boost::asio::ip::make_address(where.front(), ec);
    if (ec || !gateway.is_v4())
      return make_error("the docker wall names no IPv4 gateway for the transparent door", EINVAL);
    // A port below 1024: while acp is gone (killed with its docker run) the nat chain still
    // leads the container's connections here, and no unprivileged local process may bind it
    // to receive them. The gateway address is the session's own, so one is nearly always free.
    Result<std::shared_ptr<proxy::DoorListeners>> door = make_error("no port tried");
    for (uint16_t port = kDockerDoorPortFirst; port >= kDockerDoorPortLast; --port) {
      door = proxy::open_door_listeners_on(io_, gateway.to_v4(), std::nullopt, port);
      if (door || door.error().err != EADDRINUSE) break;
    }
    if (!door) return door.error();
    door_ = std::move(*door);
    out_.wall->lead_to_door(door_->port4);
    out_.record.door = door_name(plan_.door);
    return {};
  }

  Status pins_step() {
    backend::Wall* w = out_.wall.get();
    if (auto st = w->pin(); !st) return st;
    undo_.push("unpin " + out_.record.pin_dir, [this, w]() -> Status {
      if (auto st = cgroup_is_empty(); !st) return st;
      return w->unpin();
    });
    if (plan_.test_pauses) test_pause_point("attached");
    return {};
  }

  Status proxy_step() {
    SessionProxyConfig pcfg = plan_.proxy;
    pcfg.session_id = id_;
    // The walled backends serve only the session's own cgroup (docs/architecture.md).
    if (plan_.kind == backend::Kind::kBpf || plan_.kind == backend::Kind::kIptables)
      pcfg.client_cgroup = out_.record.cgroup;
    // For the web page: the pins' counters and denied connects (not through the control
    // socket: the session's own loop serves it).
    pcfg.session_status = [id = id_] {
      return session_status_to_json(read_session_status(id, false));
    };
    pcfg.agent_command.clear();
    for (const auto& arg : out_.record.command)
      pcfg.agent_command += (pcfg.agent_command.empty() ? "" : " ") + arg;
    pcfg.listen_addresses = out_.wall->door_addresses();
    // Docker: the container's DNS points at the session's responder on the gateway
    // (docs/backends.md, "Name resolution").
    if (const auto* net = backend::docker_network_of(*out_.wall)) {
      pcfg.dns_gateway = net->gateway;
      pcfg.dns_subnet = net->subnet;
    }
    if (door_) {
      pcfg.door = door_;
      pcfg.door_origin_fd = out_.wall->door_origin_fd();
      pcfg.door_origin_conntrack = out_.wall->door_origin_from_conntrack();
      if (pcfg.door_origin_fd < 0 && !pcfg.door_origin_conntrack)
        return make_error("the " + out_.record.backend + " wall leads no connection to the door");
    }
    auto proxy = SessionProxy::start(io_, pcfg);
    if (!proxy) return proxy.error();
    out_.proxy = std::move(*proxy);
    SessionProxy* door = out_.proxy.get();
    undo_.push("stop the session proxy", [door] {
      door->stop();
      return Status{};
    });
    SessionRecord& rec = out_.record;
    rec.proxy.clear();
    for (const auto& ep : door->endpoints()) rec.proxy.push_back(kernel::to_string(ep));
    rec.control = door->control_path();
    rec.audit_log = door->audit_path();
    rec.channels = door->channel_descriptions();  // world-readable: they hold no secret
    return {};
  }

  // The door and --allow: the wall's undo takes these down with it.
  // --door=transparent: the explicit listener stays walled (a connect to it is led to the
  // transparent door, which refuses ACP's own listeners as destinations).
  Status allow_step() {
    if (plan_.door != Door::kTransparent) out_.allow = out_.proxy->endpoints();
    out_.allow.insert(out_.allow.end(), plan_.extra_allow.begin(), plan_.extra_allow.end());
    return out_.wall->allow(out_.allow);
  }

  boost::asio::io_context& io_;
  SessionPlan plan_;
  BuiltSession out_;
  UndoStack undo_;
  std::string id_;
  std::shared_ptr<proxy::DoorListeners> door_;
};

}  // namespace

Result<Door> parse_door(const std::string& name) {
  if (name == "proxy") return Door::kProxy;
  if (name == "transparent") return Door::kTransparent;
  if (name == "both") return Door::kBoth;
  return make_error("--door=" + name + ": unknown door; choose proxy, transparent or both", EINVAL);
}

const char* door_name(Door d) {
  switch (d) {
    case Door::kProxy:
      return "proxy";
    case Door::kTransparent:
      return "transparent";
    case Door::kBoth:
      return "both";
  }
  return "?";
}

Result<BuiltSession> build_session(boost::asio::io_context& io, SessionPlan plan) {
  return SessionBuild(io, std::move(plan)).run();
}

Result<PreparedAgent> prepare_agent(const AgentPlan& plan) {
  PreparedAgent out;
  launch::AgentEnvSettings env;
  env.proxy_url = plan.proxy_url;
  env.session_id = plan.session_id;
  env.user = plan.user;
  env.extra = plan.extra_env;
  launch::AgentSpec& spec = out.spec;
  spec.argv = plan.argv;
  spec.env = launch::build_agent_env(launch::current_environment(), env);
  spec.uid = plan.user->uid;
  spec.gid = plan.user->gid;
  spec.groups = plan.user->groups;
  spec.cgroup_fd = plan.cgroup_fd;
  spec.without_cgroup = plan.cgroup_fd < 0;
  spec.cgroup_path = plan.cgroup_path;
  // A fork bomb in the agent stays bounded (launch/task_limit.hpp says how).
  auto tasks =
      launch::apply_task_limit(plan.cgroup2_root, plan.cgroup_path, plan.user->uid, plan.max_tasks);
  if (!tasks) return make_error("limit the agent's tasks: " + tasks.error().message());
  if (tasks->kind == launch::TaskLimit::Kind::kRlimitNproc) spec.rlimit_nproc = tasks->value;
  out.task_limit = tasks->description;
  // Only applied to a root agent (--allow-root): see AgentSpec. Hidden: ACP's config and
  // secrets (tokens, webhook secret), grants, the control sockets and the CA key (it could mint
  // certificates the agent trusts), wherever the config puts them.
  spec.readonly_paths = {kernel::kBpffsMountPoint, "/var/log/acp"};
  if (!plan.cgroup2_root.empty())
    spec.readonly_paths.insert(spec.readonly_paths.begin(), plan.cgroup2_root);
  spec.hidden_paths = launch::agent_hidden_paths(plan.secret_paths);
  if (!plan.trust_bundle.empty()) spec.visible_paths = {plan.trust_bundle};
  return out;
}

}  // namespace acp
