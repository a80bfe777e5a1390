// acp export: format names and the validation of what the user asked for.
#include <pwd.h>

#include <algorithm>
#include <array>

#include "acp/export/export.hpp"
#include "acp/proxy/policy.hpp"
#include "renderers.hpp"

namespace acp::exporter {
namespace {

constexpr std::array<std::pair<Format, std::string_view>, 8> kNames{{
    {Format::Nftables, "nftables"},
    {Format::Iptables, "iptables"},
    {Format::Ip6tables, "ip6tables"},
    {Format::Pf, "pf"},
    {Format::AwsSg, "aws-sg"},
    {Format::AzureNsg, "azure-nsg"},
    {Format::GcpFirewall, "gcp-firewall"},
    {Format::Compose, "compose"},
}};

bool is_cloud(Format f) {
  return f == Format::AwsSg || f == Format::AzureNsg || f == Format::GcpFirewall;
}
bool is_host_firewall(Format f) {
  return f == Format::Nftables || f == Format::Iptables || f == Format::Ip6tables;
}

bool is_loopback(const kernel::Endpoint& ep) {
  if (kernel::is_ipv4(ep)) return ep.addr[12] == 127;
  static const std::array<uint8_t, 16> kLoop{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  return ep.addr == kLoop;
}

// Validation errors carry no errno: the message says everything.
Error bad(std::string msg) {
  return make_error(std::move(msg));
}

Result<uint32_t> resolve_uid(const std::string& user) {
  if (!user.empty() && user.size() <= 10 &&
      std::all_of(user.begin(), user.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    unsigned long v = std::stoul(user);
    if (v <= 0xfffffffeUL) return static_cast<uint32_t>(v);
  }
  struct passwd pw {};
  struct passwd* found = nullptr;
  std::array<char, 4096> buf{};
  if (getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || !found)
    return bad("--uid=" + user + ": no such user here; give a numeric uid for another machine");
  return static_cast<uint32_t>(found->pw_uid);
}

Result<std::string> check_cgroup(std::string path) {
  while (!path.empty() && path.front() == '/') path.erase(path.begin());
  while (!path.empty() && path.back() == '/') path.pop_back();
  auto ok_char = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-' || c == '@' || c == ':' || c == '/';
  };
  if (path.empty() || !std::all_of(path.begin(), path.end(), ok_char) ||
      path.find("//") != std::string::npos || path == "." || path == ".." ||
      path.find("../") != std::string::npos || path.find("/..") != std::string::npos ||
      path.rfind("./", 0) == 0)
    return bad(
        "--cgroup=" + path +
        ": expected a cgroup v2 path below the root, e.g. acp or system.slice/agent.service");
  return path;
}

bool valid_name(const std::string& n) {
  if (n.empty() || n.size() > 40 || n.front() < 'a' || n.front() > 'z') return false;
  if (n.back() == '-') return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

}  // namespace

std::string_view format_name(Format f) {
  for (const auto& [fmt, name] : kNames)
    if (fmt == f) return name;
  return "?";
}

const std::vector<Format>& all_formats() {
  static const std::vector<Format> all = [] {
    std::vector<Format> v;
    for (const auto& [fmt, name] : kNames) v.push_back(fmt);
    return v;
  }();
  return all;
}

Result<Format> parse_format(std::string_view name) {
  std::string known;
  for (const auto& [fmt, n] : kNames) {
    if (n == name) return fmt;
    known += known.empty() ? "" : ", ";
    known += n;
  }
  return bad("--format=" + std::string(name) + ": unknown format; expected one of " + known);
}

Result<ExportSpec> make_spec(const ExportOptions& o) {
  auto format = parse_format(o.format);
  if (!format) return format.error();
  ExportSpec s;
  s.format = *format;
  const std::string fname(format_name(s.format));
  if (o.proxy_port == 0) return bad("--proxy-port=0: expected a port from 1 to 65535");
  s.proxy_port = o.proxy_port;

  if (!valid_name(o.name))
    return bad("--name=" + o.name +
               ": expected lowercase letters, digits and '-', starting with a letter, "
               "at most 40 characters (cloud resource names)");
  s.name = o.name;

  // Options that mean nothing for this format are refused rather than silently dropped.
  if (s.format != Format::Compose && (o.acp_image || o.agent_image))
    return bad("--acp-image/--agent-image apply to --format=compose only");
  if (s.format == Format::Compose) {
    if (!o.allow.empty())
      return bad("--allow=" + o.allow.front() +
                 ": compose cannot express it: the agent's network is internal and reaches "
                 "only the acp service; attach the service it needs to the `isolated` network");
    if (!o.proxy_addresses.empty())
      return bad("--proxy-address: compose reaches the proxy as the service `acp`; drop it");
  }
  if ((o.uid || o.cgroup) && !is_host_firewall(s.format) && s.format != Format::Pf)
    return bad(std::string(o.uid ? "--uid" : "--cgroup") + " does not apply to " + fname +
               ": it filters whole machines or containers, not one user's or cgroup's sockets");
  if (o.uid && o.cgroup) return bad("--uid and --cgroup: give one of them, not both");
  if (s.format == Format::Pf && o.cgroup)
    return bad("--cgroup does not apply to pf: macOS has no cgroups; give --uid=USER");
  if (s.format == Format::Pf && !o.uid)
    return bad("pf needs --uid=USER: macOS pf matches the agent's sockets by their user");
  if (o.uid) {
    auto uid = resolve_uid(*o.uid);
    if (!uid) return uid.error();
    s.selector.kind = Selector::Kind::Uid;
    s.selector.uid = *uid;
  } else if (o.cgroup) {
    auto cg = check_cgroup(*o.cgroup);
    if (!cg) return cg.error();
    s.selector.cgroup = *cg;
  }

  // The proxy's endpoints.
  std::vector<std::string> addrs = o.proxy_addresses;
  if (addrs.empty() && is_cloud(s.format))
    return bad(fname +
               " needs --proxy-address=ADDR: the ACP host's address as the agent's machine "
               "sees it (a security group never sees loopback)");
  if (addrs.empty() && s.format != Format::Compose) addrs = {"127.0.0.1", "::1"};
  for (const auto& a : addrs) {
    std::string text = a;
    if (text.find(':') != std::string::npos && text.front() != '[') text = "[" + text + "]";
    auto ep = kernel::parse_endpoint(text + ":" + std::to_string(s.proxy_port));
    if (!ep || a.find('/') != std::string::npos)
      return bad("--proxy-address=" + a + ": expected a numeric IPv4 or IPv6 address");
    if (is_cloud(s.format) && is_loopback(*ep))
      return bad("--proxy-address=" + a + ": " + fname +
                 " filters traffic leaving the machine and never sees loopback; give the ACP "
                 "host's own address");
    s.proxy.push_back(*ep);
  }
  for (const auto& a : o.allow) {
    auto ep = kernel::parse_endpoint(a);
    if (!ep) return bad("--allow=" + ep.error().context);
    if (is_cloud(s.format) && is_loopback(*ep))
      return bad("--allow=" + a + ": " + fname + " never sees loopback traffic");
    s.allow.push_back(*ep);
  }

  if (o.policy) {
    auto p = policy::Policy::load_file(*o.policy);
    if (!p) return p.error();
    s.policy_path = *o.policy;
    s.policy_summary = std::to_string(p->rule_count()) + " rules, default " +
                       std::string(to_string(p->default_verdict()));
  }
  s.acp_image = o.acp_image.value_or("acp:latest");
  s.agent_image = o.agent_image.value_or("your-agent:latest");
  return s;
}

std::string render(const ExportSpec& s) {
  switch (s.format) {
    case Format::Nftables:
      return detail::render_nftables(s);
    case Format::Iptables:
      return detail::render_iptables(s, false);
    case Format::Ip6tables:
      return detail::render_iptables(s, true);
    case Format::Pf:
      return detail::render_pf(s);
    case Format::AwsSg:
      return detail::render_aws_sg(s);
    case Format::AzureNsg:
      return detail::render_azure_nsg(s);
    case Format::GcpFirewall:
      return detail::render_gcp_firewall(s);
    case Format::Compose:
      return detail::render_compose(s);
  }
  return {};
}

namespace detail {

std::string addr_text(const kernel::Endpoint& ep) {
  return kernel::address_string(ep.addr);
}

std::string cidr(const kernel::Endpoint& ep) {
  return addr_text(ep) + (kernel::is_ipv4(ep) ? "/32" : "/128");
}

std::vector<Entry> entries(const ExportSpec& s) {
  std::vector<Entry> v;
  for (const auto& ep : s.proxy) v.push_back({ep, "consent proxy"});
  for (const auto& ep : s.allow) v.push_back({ep, "allow"});
  return v;
}

std::string header(const ExportSpec& s, const std::string& prefix) {
  std::string h;
  h += prefix + "Generated by `acp export --format=" + std::string(format_name(s.format)) +
       "`. The agent reaches only\n";
  h += prefix + "these endpoints; every other destination is refused:\n";
  if (s.format == Format::Compose)
    h += prefix + "  consent proxy: the acp service, port " + std::to_string(s.proxy_port) +
         "/tcp\n";
  for (const auto& e : entries(s))
    h += prefix + "  " + e.what + ": " + kernel::to_string(e.ep) + "\n";
  if (!s.policy_path.empty())
    h += prefix + "Consent policy: " + s.policy_path + " (" + s.policy_summary +
         "), applied by the proxy.\n";
  return h;
}

}  // namespace detail
}  // namespace acp::exporter
