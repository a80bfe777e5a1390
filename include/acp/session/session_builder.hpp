// The one way a session is built, whoever asks for it (`acp run` standalone, the daemon's
// register request): the steps run in this order, each pushing its undo on one UndoStack:
//
//   record   /run/acp/sessions/<id>.json names the builder as owner first, so a concurrent
//            `acp run` or `acp gc` never takes the half-built session for an orphan (root only)
//   cgroup   <cgroup2>/acp/<id>, empty (root only: preload and none without root have none;
//            docker has none: the container bounds the agent)
//   door     --door=transparent|both: the transparent door's listeners (their ports go into
//            the wall; bpf only)
//   wall     the backend's Wall raised around it (acp/backend/wall.hpp): nothing passes
//   pins     the wall made to outlive acp (bpf pins): a killed acp leaves the agent walled
//   proxy    the door: SessionProxy (policy, consent gate, control socket, audit log)
//   allow    the wall opened for the door's endpoints and --allow entries
//   agent    prepare_agent(): the agent's spec (env, user, cgroup, task limit, hidden paths),
//            spawned by the caller (acp run itself, also when the daemon holds the session)
//
// A failure at a step undoes the steps before it, newest first. Before the agent step the
// cgroup is empty; an undo that finds processes in it leaves the wall up over them. A session built
// completely keeps everything; the caller takes it down with teardown_session() when it ends, as
// `acp gc` does for an orphan. The docker backend builds its own (run_docker_session: its door
// listens on the container's network, which must exist first).
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "acp/backend/wall.hpp"
#include "acp/cgroup/cgroup.hpp"
#include "acp/kernel/endpoint.hpp"
#include "acp/launch/agent_launcher.hpp"
#include "acp/launch/target_user.hpp"
#include "acp/session/session_proxy.hpp"
#include "acp/session/session_record.hpp"
#include "acp/util/result.hpp"

namespace acp {

// How the agent reaches the proxy (acp run --door, docs/transparent.md): proxy (HTTP(S)_PROXY
// only; any other connect() is refused), transparent (every TCP connect() the wall refuses is
// led to the proxy instead; the explicit listener is not reachable), both.
enum class Door { kProxy, kTransparent, kBoth };
Result<Door> parse_door(const std::string& name);
const char* door_name(Door d);  // "proxy" | "transparent" | "both"

// What to build. The builder fills in the id, the cgroup, the pins and the door.
struct SessionPlan {
  backend::Kind kind = backend::Kind::kBpf;
  std::string id;  // empty: a new one (new_session_id)
  // The wall, when the caller makes it (docker: make_docker_wall); else make_wall(kind).
  std::unique_ptr<backend::Wall> wall;
  bool root = true;  // the record and the cgroup are root's; without root there are neither
  bool audit_only = false;
  Door door = Door::kProxy;                   // transparent and both: bpf and iptables
  std::vector<kernel::Endpoint> extra_allow;  // --allow
  std::vector<std::string> allow_unix;        // --allow-unix (bpf walls local IPC)
  // Who and what: uid, user, command, policy, config, audit_log, owner, runner_pid.
  SessionRecord record;
  // The door: port, policy, audit, config, control, grants, TLS inspection.
  SessionProxyConfig proxy;
  // `acp run` stops at the test pause points (test_pause.hpp); the daemon does not.
  bool test_pauses = false;
};

struct BuiltSession {
  SessionRecord record;      // written at the record step; the caller writes it again
  std::string cgroup2_root;  // empty without a cgroup
  std::optional<Cgroup> cgroup;
  std::unique_ptr<backend::Wall> wall;
  std::unique_ptr<SessionProxy> proxy;
  std::vector<kernel::Endpoint> allow;  // everything the wall lets through
  // For the caller to print before the agent starts: what this wall leaves open (local IPC).
  std::vector<std::string> notices;
};

// Runs the steps from record to allow on `io` (the proxy lives there). On failure, whatever was
// built is undone and the error says what failed (and what stays up, if an undo failed).
Result<BuiltSession> build_session(boost::asio::io_context& io, SessionPlan plan);

// The agent step's input: the same for a standalone session and one the daemon holds.
struct AgentPlan {
  std::vector<std::string> argv;
  const launch::TargetUser* user = nullptr;
  std::string session_id;
  std::string proxy_url;
  std::string cgroup2_root;  // empty: no cgroup (the agent is a plain child of acp)
  std::string cgroup_path;
  int cgroup_fd = -1;
  uint64_t max_tasks = 4096;
  // Applied last to the environment: the wall's (preload) and the trust bundle's.
  std::vector<std::pair<std::string, std::string>> extra_env;
  std::vector<std::string> secret_paths;  // the door's secrets, hidden from a root agent
  std::string trust_bundle;               // --inspect-tls: left visible
};

struct PreparedAgent {
  launch::AgentSpec spec;  // stdio left to the caller
  std::string task_limit;  // for the record: how the agent's task count is bounded
};

// The agent's spec: environment, user, cgroup, task limit (applied to the cgroup now), and
// what a root agent may not touch.
Result<PreparedAgent> prepare_agent(const AgentPlan& plan);

}  // namespace acp
