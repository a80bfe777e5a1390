// The walls behind acp/backend/wall.hpp: bpf, iptables, preload, none, docker.
#include "acp/backend/wall.hpp"

#include "acp/backend/docker_wall.hpp"
#include "acp/backend/iptables_wall.hpp"
#include "acp/backend/preload.hpp"
#include "acp/kernel/pinned_session.hpp"
#include "acp/kernel/sock_programs.hpp"

namespace acp::backend {
namespace {

constexpr const char* kUnixGapTail =
    ": the agent can reach unix sockets (docker.sock, D-Bus, tmux); see docs/security.md";

// The session programs on the cgroup, pinned under the session's pin directory.
class BpfWall final : public Wall {
 public:
  Kind kind() const override { return Kind::kBpf; }

  Status build(const WallSpec& spec) override {
    if (spec.cgroup_fd < 0) return make_error("the bpf wall needs the session cgroup", EINVAL);
    pin_dir_ = spec.pin_dir;
    const uint32_t mode = spec.audit_only ? ACP_MODE_AUDIT : ACP_MODE_ENFORCE;
    kernel::SockConfig cfg{mode, spec.session_number};
    cfg.door_port4 = spec.door_port4;
    cfg.door_port6 = spec.door_port6;
    cfg.dns_port4 = spec.dns_port4;
    cfg.dns_port6 = spec.dns_port6;
    auto loaded = kernel::SockPrograms::load(cfg);
    if (!loaded) return loaded.error();
    progs_.emplace(std::move(*loaded));
    for (const auto& name : spec.allow_unix)
      if (auto st = progs_->allow_unix(name); !st) return st;
    // Attached before the agent exists: from its first instruction the wall holds.
    return progs_->attach(spec.cgroup_fd);
  }

  // The pins own the links: the wall keeps holding if acp is killed.
  Status pin() override {
    if (auto st = progs_->pin(pin_dir_); !st) return st;
    pinned_ = true;
    return {};
  }

  Status unpin() override {
    if (!pinned_) return {};
    if (auto st = kernel::detach_and_unpin(pin_dir_); !st) return st;
    pinned_ = false;
    return {};
  }

  Status allow(const std::vector<kernel::Endpoint>& endpoints) override {
    for (const auto& ep : endpoints)
      if (auto st = progs_->allow(ep); !st) return st;
    return {};
  }

  // An unpinned SockPrograms detaches everything when destroyed.
  Status remove() override {
    progs_.reset();
    return {};
  }

  std::string unix_gap() const override {
    if (!progs_ || progs_->unix_walled()) return {};
    return "local IPC is NOT walled on this kernel (" + progs_->unix_why() + ")" + kUnixGapTail;
  }

  int events_fd() const override { return progs_ ? progs_->events_fd() : -1; }

  int door_origin_fd() const override {
    return progs_ && progs_->door_on() ? progs_->map_fd("door_origin") : -1;
  }

 private:
  std::optional<kernel::SockPrograms> progs_;
  std::string pin_dir_;
  bool pinned_ = false;
};

// Per-session iptables and ip6tables chains matching the cgroup. They hold the allow list, so
// they go in at allow(), still before the agent exists; like pins they outlive a killed acp.
class IptablesWall final : public Wall {
 public:
  Kind kind() const override { return Kind::kIptables; }

  Status build(const WallSpec& spec) override {
    auto rel = cgroup_match_path(spec.cgroup_path, spec.cgroup2_root);
    if (!rel) return rel.error();
    chains_ = ChainSpec{session_chain_name(spec.session_id), *rel, {}};
    chains_.door_port4 = spec.door_port4;
    chains_.door_port6 = spec.door_port6;
    chains_.dns_port4 = spec.dns_port4;
    chains_.dns_port6 = spec.dns_port6;
    return {};
  }

  Status allow(const std::vector<kernel::Endpoint>& endpoints) override {
    chains_.allow = endpoints;
    if (auto st = install_iptables_wall(chains_); !st) return st;
    installed_ = true;
    return {};
  }

  Status remove() override {
    if (!installed_) return {};
    if (auto st = remove_iptables_wall(chains_.chain); !st) return st;
    installed_ = false;
    return {};
  }

  std::string unix_gap() const override {
    return std::string("local IPC is NOT walled by the iptables backend") + kUnixGapTail;
  }

  bool door_origin_from_conntrack() const override {
    return chains_.door_port4 != 0 || chains_.door_port6 != 0;
  }

 private:
  ChainSpec chains_;
  bool installed_ = false;
};

// The LD_PRELOAD library: the wall is in the agent's environment.
class PreloadWall final : public Wall {
 public:
  Kind kind() const override { return Kind::kPreload; }

  Status build(const WallSpec& spec) override {
    auto lib = find_preload_library(current_exe_dir(), spec.preload_library_override);
    if (!lib) return lib.error();
    library_ = *lib;
    inherited_ = spec.inherited_ld_preload;
    return {};
  }

  Status allow(const std::vector<kernel::Endpoint>& endpoints) override {
    allow_ = endpoints;
    return {};
  }

  Status remove() override { return {}; }

  std::vector<std::pair<std::string, std::string>> agent_env() const override {
    return preload_env(library_, allow_, inherited_);
  }

  std::string unix_gap() const override {
    return std::string("local IPC is NOT walled by the preload backend") + kUnixGapTail;
  }

 private:
  std::string library_;
  std::optional<std::string> inherited_;
  std::vector<kernel::Endpoint> allow_;
};

// Proxy-only: nothing is walled (the backend's loud warning says so before the agent starts).
class NoWall final : public Wall {
 public:
  Kind kind() const override { return Kind::kNone; }
  Status build(const WallSpec&) override { return {}; }
  Status allow(const std::vector<kernel::Endpoint>&) override { return {}; }
  Status remove() override { return {}; }
  std::string unix_gap() const override { return {}; }
};

// The agent's container on a per-session --internal network; the door on its gateway.
class DockerWall final : public Wall {
 public:
  explicit DockerWall(DockerCli docker) : docker_(std::move(docker)) {}
  Kind kind() const override { return Kind::kDocker; }

  Status build(const WallSpec& spec) override {
    id_ = spec.session_id;
    auto net = create_docker_network(docker_, id_);
    if (!net) return net.error();
    net_ = *net;
    return {};
  }

  std::vector<std::string> door_addresses() const override { return {net_->gateway}; }

  // Only the door: the bridge reaches gateway:port and nothing else.
  Status allow(const std::vector<kernel::Endpoint>& endpoints) override {
    if (endpoints.empty()) return make_error("the docker wall needs the door's endpoint", EINVAL);
    DockerFirewallSpec fw{docker_chain_name(id_), net_->bridge, net_->gateway,
                          endpoints.front().port, door_port_};
    return install_docker_firewall(fw);
  }

  void lead_to_door(uint16_t port) override { door_port_ = port; }
  // nat DNAT keeps the original destination in conntrack (SO_ORIGINAL_DST).
  bool door_origin_from_conntrack() const override { return door_port_ != 0; }

  // The container first (nothing of the agent outlives the wall), then network and firewall.
  Status remove() override {
    if (id_.empty()) return {};
    if (auto st = remove_docker_objects(docker_, id_); !st) return st;
    return remove_docker_firewall(docker_chain_name(id_));
  }

  // A container reaches no unix socket of the host unless one is mounted (none is).
  std::string unix_gap() const override { return {}; }

  const DockerNetwork* network() const { return net_ ? &*net_ : nullptr; }

 private:
  DockerCli docker_;
  std::string id_;
  std::optional<DockerNetwork> net_;
  uint16_t door_port_ = 0;
};

}  // namespace

std::unique_ptr<Wall> make_docker_wall(const DockerCli& docker) {
  return std::make_unique<DockerWall>(docker);
}

const DockerNetwork* docker_network_of(const Wall& wall) {
  const auto* docker = dynamic_cast<const DockerWall*>(&wall);
  return docker ? docker->network() : nullptr;
}

Result<std::unique_ptr<Wall>> make_wall(Kind kind) {
  switch (kind) {
    case Kind::kBpf:
      return std::unique_ptr<Wall>(std::make_unique<BpfWall>());
    case Kind::kIptables:
      return std::unique_ptr<Wall>(std::make_unique<IptablesWall>());
    case Kind::kPreload:
      return std::unique_ptr<Wall>(std::make_unique<PreloadWall>());
    case Kind::kNone:
      return std::unique_ptr<Wall>(std::make_unique<NoWall>());
    case Kind::kDocker:
      break;
  }
  return make_error("the docker backend's wall needs the docker CLI: use make_docker_wall", EINVAL);
}

}  // namespace acp::backend
