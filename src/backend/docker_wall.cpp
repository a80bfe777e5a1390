#include "acp/backend/docker_wall.hpp"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>

#include "acp/backend/command.hpp"
#include "acp/util/session_id.hpp"

namespace acp::backend {
namespace {

constexpr uint32_t kPoolBase = 0x0AE70000;  // 10.231.0.0/16
constexpr uint32_t kPoolSubnets = 4096;     // /28s in it
constexpr int kSubnetPrefix = 28;

std::string tail(const std::string& s) {
  std::string t = s;
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  return t;
}

std::string ip4(uint32_t host_order) {
  in_addr a{htonl(host_order)};
  char buf[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &a, buf, sizeof buf);
  return buf;
}

bool valid_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool valid_env_key(const std::string& k) {
  if (k.empty() || (k[0] >= '0' && k[0] <= '9')) return false;
  return std::all_of(k.begin(), k.end(), [](char c) { return valid_name_char(c) || c == '_'; });
}

// The variables ACP sets in the container: --env cannot override them.
const std::set<std::string>& acp_env_keys() {
  static const std::set<std::string> keys = {
      "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",     "http_proxy",    "https_proxy", "all_proxy",
      "NO_PROXY",   "no_proxy",    "ACP_PROXY_URL", "ACP_CONTAINED", "ACP_SANDBOX", "ACP_SESSION"};
  return keys;
}

Result<CommandOutput> docker_cmd(const DockerCli& docker, const std::vector<std::string>& args) {
  return run_command(docker.command(args));
}

bool address_on_interface(const std::string& ifname, const std::string& addr) {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return false;
  bool found = false;
  for (ifaddrs* i = list; i && !found; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || ifname != i->ifa_name) continue;
    char buf[INET_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, buf, sizeof buf);
    found = addr == buf;
  }
  ::freeifaddrs(list);
  return found;
}

}  // namespace

std::vector<std::string> DockerCli::command(const std::vector<std::string>& args) const {
  std::vector<std::string> a{path};
  if (!host.empty()) a.insert(a.end(), {"-H", host});
  a.insert(a.end(), args.begin(), args.end());
  return a;
}

std::optional<DockerCli> find_docker() {
  DockerCli cli;
  if (const char* e = std::getenv("ACP_DOCKER"); e && *e == '/' && ::access(e, X_OK) == 0)
    cli.path = e;
  else if (auto t = find_tool("docker"))
    cli.path = *t;
  else
    return std::nullopt;
  if (const char* h = std::getenv("DOCKER_HOST"); h && *h) cli.host = h;
  return cli;
}

std::string docker_object_name(std::string_view id) {
  return "acp-" + std::string(id);
}
std::string docker_bridge_name(std::string_view id) {
  return "acp" + std::string(id);
}
std::string docker_chain_name(std::string_view id) {
  return std::string(kDockerChainPrefix) + std::string(id);
}
std::optional<std::string> session_id_of_docker_chain(std::string_view chain) {
  if (chain.substr(0, kDockerChainPrefix.size()) != kDockerChainPrefix) return std::nullopt;
  std::string id(chain.substr(kDockerChainPrefix.size()));
  if (!valid_session_id(id)) return std::nullopt;
  return id;
}

std::vector<std::string> candidate_subnets(std::string_view session_id, size_t count) {
  uint32_t start = 0;
  for (char c : session_id) start = start * 31 + static_cast<unsigned char>(c);
  std::vector<std::string> out;
  for (size_t i = 0; i < count; ++i) {
    uint32_t n = (start + static_cast<uint32_t>(i)) % kPoolSubnets;
    out.push_back(ip4(kPoolBase + (n << (32 - kSubnetPrefix))) + "/" +
                  std::to_string(kSubnetPrefix));
  }
  return out;
}

bool subnet_overlaps_routes(const std::string& subnet, const std::string& routes) {
  auto slash = subnet.find('/');
  in_addr a{};
  if (slash == std::string::npos || ::inet_pton(AF_INET, subnet.substr(0, slash).c_str(), &a) != 1)
    return true;
  const int len = std::stoi(subnet.substr(slash + 1));
  const uint32_t mask = len == 0 ? 0 : ~uint32_t{0} << (32 - len);
  const uint32_t net = ntohl(a.s_addr) & mask;
  std::istringstream in(routes);
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string iface, dest, gw, flags, refcnt, use, metric, rmask;
    if (!(f >> iface >> dest >> gw >> flags >> refcnt >> use >> metric >> rmask)) continue;
    // /proc/net/route prints addresses as hex in network byte order, read as a host integer.
    uint32_t d = ntohl(static_cast<uint32_t>(std::stoul(dest, nullptr, 16)));
    uint32_t m = ntohl(static_cast<uint32_t>(std::stoul(rmask, nullptr, 16)));
    if (m == 0) continue;  // the default route overlaps everything and routes nothing in
    const uint32_t common = m & mask;
    if ((d & common) == (net & common)) return true;
  }
  return false;
}

Result<DockerNetwork> create_docker_network(const DockerCli& docker,
                                            const std::string& session_id) {
  if (!valid_session_id(session_id)) return make_error("invalid session id " + session_id);
  std::string routes;
  {
    std::ifstream in("/proc/net/route");
    std::stringstream ss;
    ss << in.rdbuf();
    routes = ss.str();
  }
  DockerNetwork net;
  net.name = docker_object_name(session_id);
  net.bridge = docker_bridge_name(session_id);
  std::string last_error = "no free /28 in 10.231.0.0/16";
  for (const auto& subnet : candidate_subnets(session_id, 32)) {
    if (subnet_overlaps_routes(subnet, routes)) continue;
    in_addr a{};
    ::inet_pton(AF_INET, subnet.substr(0, subnet.find('/')).c_str(), &a);
    const std::string gw = ip4(ntohl(a.s_addr) + 1);
    auto r = docker_cmd(docker,
                        {"network", "create", "--driver=bridge", "--internal", "--subnet=" + subnet,
                         "--gateway=" + gw, "--opt=com.docker.network.bridge.name=" + net.bridge,
                         "--opt=com.docker.network.bridge.enable_ip_masquerade=false",
                         "--label=" + std::string(kDockerLabel) + "=" + session_id, net.name});
    if (!r) return r.error();
    if (r->exit_code == 0) {
      net.subnet = subnet;
      net.gateway = gw;
      // The proxy binds to the gateway: it must be the host's address on this bridge (docker
      // versions differ in whether an --internal bridge gets it).
      if (!address_on_interface(net.bridge, gw)) {
        (void)docker_cmd(docker, {"network", "rm", net.name});
        return make_error("docker created network " + net.name + " but the gateway " + gw +
                          " is not on the host's bridge " + net.bridge +
                          ": this dockerd does not assign internal gateways; acp cannot listen "
                          "there");
      }
      return net;
    }
    last_error = tail(r->err);
    // Another network (of docker or of another session) has it: try the next one.
    if (last_error.find("overlap") == std::string::npos) break;
  }
  return make_error("docker network create " + net.name + " failed: " + last_error);
}

Status remove_docker_objects(const DockerCli& docker, const std::string& session_id) {
  if (!valid_session_id(session_id)) return make_error("invalid session id " + session_id);
  const std::string name = docker_object_name(session_id);
  Status first;
  auto c = docker_cmd(docker, {"rm", "-f", "-v", name});
  if (!c)
    first = c.error();
  else if (c->exit_code != 0 && c->err.find("No such container") == std::string::npos)
    first = make_error("docker rm -f " + name + ": " + tail(c->err));
  auto n = docker_cmd(docker, {"network", "rm", name});
  if (!n) {
    if (first) first = n.error();
  } else if (n->exit_code != 0 && n->err.find("not found") == std::string::npos &&
             n->err.find("No such network") == std::string::npos && first) {
    first = make_error("docker network rm " + name + ": " + tail(n->err));
  }
  return first;
}

Result<std::string> render_docker_firewall(const DockerFirewallSpec& s, IpFamily family) {
  if (!session_id_of_docker_chain(s.chain))
    return make_error("invalid docker firewall chain \"" + s.chain + "\"");
  if (s.bridge.size() < 4 || s.bridge.size() >= IFNAMSIZ ||
      !std::all_of(s.bridge.begin(), s.bridge.end(), valid_name_char))
    return make_error("invalid bridge name \"" + s.bridge + "\"");
  in_addr a{};
  if (::inet_pton(AF_INET, s.gateway.c_str(), &a) != 1)
    return make_error("invalid gateway address \"" + s.gateway + "\"");
  if (s.proxy_port == 0) return make_error("no proxy port");
  const bool v4 = family == IpFamily::kV4;
  const std::string& c = s.chain;
  std::ostringstream o;
  o << "*filter\n:" << c << " - [0:0]\n";
  if (v4) {
    o << "-A " << c << " -d " << s.gateway << "/32 -p tcp -m tcp --dport " << s.proxy_port
      << " -j ACCEPT\n";
    // The transparent door (nat PREROUTING below leads other TCP there).
    if (s.door_port != 0)
      o << "-A " << c << " -d " << s.gateway << "/32 -p tcp -m tcp --dport " << s.door_port
        << " -j ACCEPT\n";
    // The session's DNS responder (the container's --dns).
    o << "-A " << c << " -d " << s.gateway << "/32 -p udp -m udp --dport 53 -j ACCEPT\n";
    o << "-A " << c << " -d " << s.gateway << "/32 -p tcp -m tcp --dport 53 -j ACCEPT\n";
  }
  o << "-A " << c << " -p tcp -j REJECT --reject-with tcp-reset\n";
  o << "-A " << c << " -j REJECT --reject-with "
    << (v4 ? "icmp-port-unreachable" : "icmp6-port-unreachable") << "\n";
  // Into the host from the bridge: the chain decides. Through the host (routed, either way):
  // never; the same chain rejects it (the proxy's address is not forwarded to).
  o << "-I INPUT 1 -i " << s.bridge << " -j " << c << "\n";
  o << "-I FORWARD 1 -i " << s.bridge << " -j " << c << "\n";
  o << "-I FORWARD 1 -o " << s.bridge << " -j " << c << "\n";
  o << "COMMIT\n";
  // The transparent door: committed after the wall, in the same input. What the wall lets
  // through goes where it was going; other TCP to the door, DNS to the session's responder.
  // Routing then sees a local destination (INPUT, the chain above), never FORWARD.
  if (v4 && s.door_port != 0) {
    o << "*nat\n:" << c << " - [0:0]\n";
    o << "-A " << c << " -d " << s.gateway << "/32 -p tcp -m tcp --dport " << s.proxy_port
      << " -j RETURN\n";
    o << "-A " << c << " -d " << s.gateway << "/32 -p tcp -m tcp --dport 53 -j RETURN\n";
    o << "-A " << c << " -d " << s.gateway << "/32 -p udp -m udp --dport 53 -j RETURN\n";
    o << "-A " << c << " -p tcp -j DNAT --to-destination " << s.gateway << ":" << s.door_port
      << "\n";
    o << "-A " << c << " -p udp -m udp --dport 53 -j DNAT --to-destination " << s.gateway
      << ":53\n";
    o << "-I PREROUTING 1 -i " << s.bridge << " -j " << c << "\n";
    o << "COMMIT\n";
  }
  return o.str();
}

namespace {
// The built-in chains a session's ACPD-<id> chains are reached from (filter; nat for the door).
const std::vector<std::string>& docker_hooks() {
  static const std::vector<std::string> hooks = {"INPUT", "FORWARD", "PREROUTING"};
  return hooks;
}
}  // namespace

std::vector<std::string> docker_jumps_in_listing(const std::string& text,
                                                 const std::string& chain) {
  return jumps_in_listing(text, chain, docker_hooks());
}

Status install_docker_firewall(const DockerFirewallSpec& spec) {
  return install_chain(spec.chain, docker_hooks(),
                       [&](IpFamily f) { return render_docker_firewall(spec, f); });
}

Status remove_docker_firewall(const std::string& chain) {
  if (!session_id_of_docker_chain(chain)) return make_error("invalid chain \"" + chain + "\"");
  return remove_chain(chain, docker_hooks());
}

Status validate_container_spec(const ContainerSpec& s) {
  if (!valid_session_id(s.session_id)) return make_error("invalid session id " + s.session_id);
  if (s.image.empty() || s.image.front() == '-' ||
      s.image.find_first_of(" \t\n") != std::string::npos)
    return make_error("--image=" + s.image + ": not an image name");
  if (s.workspace) {
    const std::string& w = *s.workspace;
    if (w.empty() || w.front() != '/')
      return make_error("--workspace=" + w + ": must be an absolute directory");
    if (w.find_first_of(",\n") != std::string::npos)
      return make_error("--workspace=" + w + ": commas and newlines are not supported");
    struct stat st {};
    if (::stat(w.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      return make_error("--workspace=" + w + ": not a directory");
  }
  for (const auto& k : s.pass_env) {
    if (!valid_env_key(k))
      return make_error("--env=" + k + ": give a variable name (letters, digits, _)");
    if (acp_env_keys().count(k))
      return make_error("--env=" + k + ": acp sets this variable itself in the container");
  }
  if (s.command.empty() || s.command.front().empty())
    return make_error("no agent command: usage: acp contain [OPTIONS] -- CMD [ARGS...]");
  return {};
}

std::vector<std::string> docker_run_argv(const DockerCli& docker, const ContainerSpec& s) {
  const std::string name = docker_object_name(s.session_id);
  std::vector<std::string> a = docker.command({"run", "--rm", "--interactive"});
  if (s.tty) a.push_back("--tty");
  a.push_back("--name=" + name);
  a.push_back("--label=" + std::string(kDockerLabel) + "=" + s.session_id);
  a.push_back("--network=" + name);
  // The embedded DNS (127.0.0.11) forwards only to the session's responder, which answers by
  // the policy; without a responder, nowhere. Never the host's resolvers: a query that reaches
  // one leaks its name (docs/backends.md, "Name resolution").
  a.push_back("--dns=" + (s.dns.empty() ? std::string("0.0.0.0") : s.dns));
  for (const char* h : kDockerHardening) a.emplace_back(h);
  for (const char* kv : {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                         "all_proxy", "ACP_PROXY_URL"})
    a.push_back(std::string("--env=") + kv + "=" + s.proxy_url);
  // Every request meets the proxy: an image's NO_PROXY is cleared.
  a.emplace_back("--env=NO_PROXY=");
  a.emplace_back("--env=no_proxy=");
  a.emplace_back("--env=ACP_CONTAINED=1");
  a.emplace_back("--env=ACP_SANDBOX=1");
  a.push_back("--env=ACP_SESSION=" + s.session_id);
  // KEY alone: docker takes the value from its own environment (acp's), and it stays out of
  // argv (visible in ps).
  for (const auto& k : s.pass_env) a.push_back("--env=" + k);
  if (s.workspace) {
    a.push_back("--mount=type=bind,source=" + *s.workspace + ",target=/workspace" +
                (s.writable ? "" : ",readonly"));
    a.emplace_back("--workdir=/workspace");
  }
  a.push_back(s.image);
  a.insert(a.end(), s.command.begin(), s.command.end());
  return a;
}

Result<std::vector<std::string>> list_docker_sessions(const DockerCli& docker) {
  std::set<std::string> ids;
  const std::string filter = "--filter=label=" + std::string(kDockerLabel);
  const std::string fmt = "--format={{.Label \"" + std::string(kDockerLabel) + "\"}}";
  for (auto args : {std::vector<std::string>{"ps", "-a", filter, fmt},
                    std::vector<std::string>{"network", "ls", filter, fmt}}) {
    auto r = docker_cmd(docker, args);
    if (!r) return r.error();
    if (r->exit_code != 0) return make_error("docker " + args[0] + ": " + tail(r->err));
    std::istringstream in(r->out);
    std::string line;
    while (std::getline(in, line))
      if (valid_session_id(line)) ids.insert(line);
  }
  return std::vector<std::string>(ids.begin(), ids.end());
}

bool docker_container_running(const DockerCli& docker, const std::string& session_id) {
  auto r = docker_cmd(docker,
                      {"inspect", "--format={{.State.Running}}", docker_object_name(session_id)});
  return r && r->exit_code == 0 && tail(r->out) == "true";
}

bool docker_backend_supported(std::string* why) {
  static std::once_flag once;
  static bool supported = false;
  static std::string reason;
  std::call_once(once, [] {
    if (::geteuid() != 0) {
      reason = "privileges: not root (the session's firewall rules need CAP_NET_ADMIN)";
      return;
    }
    auto docker = find_docker();
    if (!docker) {
      reason = "the docker CLI is not installed (apt-get install docker.io)";
      return;
    }
    for (IpFamily f : netfilter_families())
      for (const char* t : {iptables_tool(f), iptables_restore_tool(f)})
        if (!find_tool(t)) {
          reason = std::string(t) + " not found: apt-get install iptables";
          return;
        }
    auto r = docker_cmd(*docker, {"version", "--format={{.Server.Version}}"});
    if (!r || r->exit_code != 0) {
      reason = "dockerd is not reachable" +
               (r ? ": " + tail(r->err) : std::string(": ") + r.error().message());
      return;
    }
    supported = true;
  });
  if (why) *why = reason;
  return supported;
}

}  // namespace acp::backend
