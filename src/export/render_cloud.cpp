// Cloud firewalls: the agent's machine may talk to the ACP host's proxy port and the allow
// entries, nothing else. JSON in the shape each cloud's own tools take (docs/export.md):
// AWS: the IpPermissions list of `aws ec2 authorize-security-group-egress --ip-permissions`;
// Azure: an ARM template with one network security group; GCP: firewall resources as the
// compute API's firewalls.insert takes them.
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "renderers.hpp"

namespace acp::exporter::detail {
namespace {

using ojson = nlohmann::ordered_json;

std::string dump(const ojson& j) {
  return j.dump(2) + "\n";
}

std::string description(const Entry& e) {
  return std::string("ACP ") + e.what + " " + kernel::to_string(e.ep);
}

}  // namespace

std::string render_aws_sg(const ExportSpec& s) {
  // One permission per (protocol, port), holding every address for it, as AWS groups them.
  std::map<std::pair<std::string, uint16_t>, size_t> index;
  ojson perms = ojson::array();
  for (const auto& e : entries(s)) {
    auto key = std::make_pair(kernel::proto_name(e.ep.proto), e.ep.port);
    auto it = index.find(key);
    if (it == index.end()) {
      ojson p;
      p["IpProtocol"] = key.first;
      p["FromPort"] = e.ep.port;
      p["ToPort"] = e.ep.port;
      p["IpRanges"] = ojson::array();
      p["Ipv6Ranges"] = ojson::array();
      perms.push_back(p);
      it = index.emplace(key, perms.size() - 1).first;
    }
    ojson& p = perms[it->second];
    if (kernel::is_ipv4(e.ep))
      p["IpRanges"].push_back({{"CidrIp", cidr(e.ep)}, {"Description", description(e)}});
    else
      p["Ipv6Ranges"].push_back({{"CidrIpv6", cidr(e.ep)}, {"Description", description(e)}});
  }
  for (auto& p : perms) {
    if (p["IpRanges"].empty()) p.erase("IpRanges");
    if (p["Ipv6Ranges"].empty()) p.erase("Ipv6Ranges");
  }
  return dump(perms);
}

std::string render_azure_nsg(const ExportSpec& s) {
  ojson rules = ojson::array();
  int priority = 100;
  int n = 0;
  for (const auto& e : entries(s)) {
    ojson props;
    props["description"] = description(e);
    props["protocol"] = e.ep.proto == ACP_PROTO_UDP ? "Udp" : "Tcp";
    props["sourceAddressPrefix"] = "*";
    props["sourcePortRange"] = "*";
    props["destinationAddressPrefix"] = addr_text(e.ep);
    props["destinationPortRange"] = std::to_string(e.ep.port);
    props["access"] = "Allow";
    props["priority"] = priority++;
    props["direction"] = "Outbound";
    rules.push_back({{"name", s.name + "-allow-" + std::to_string(++n)}, {"properties", props}});
  }
  // Below the allows, above Azure's default AllowVnetOutBound (65000) and
  // AllowInternetOutBound (65001): those would otherwise let everything out.
  ojson deny;
  deny["description"] = "ACP: everything else is refused";
  deny["protocol"] = "*";
  deny["sourceAddressPrefix"] = "*";
  deny["sourcePortRange"] = "*";
  deny["destinationAddressPrefix"] = "*";
  deny["destinationPortRange"] = "*";
  deny["access"] = "Deny";
  deny["priority"] = 4096;
  deny["direction"] = "Outbound";
  rules.push_back({{"name", s.name + "-deny-all-outbound"}, {"properties", deny}});

  ojson t;
  t["$schema"] = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#";
  t["contentVersion"] = "1.0.0.0";
  t["parameters"] = {
      {"nsgName", {{"type", "string"}, {"defaultValue", s.name}}},
      {"location", {{"type", "string"}, {"defaultValue", "[resourceGroup().location]"}}}};
  ojson nsg;
  nsg["type"] = "Microsoft.Network/networkSecurityGroups";
  nsg["apiVersion"] = "2023-09-01";
  nsg["name"] = "[parameters('nsgName')]";
  nsg["location"] = "[parameters('location')]";
  nsg["properties"] = {{"securityRules", rules}};
  t["resources"] = ojson::array({nsg});
  return dump(t);
}

std::string render_gcp_firewall(const ExportSpec& s) {
  ojson out = ojson::array();
  int n = 0;
  for (const auto& e : entries(s)) {
    ojson r;
    r["name"] = s.name + "-allow-" + std::to_string(++n);
    r["description"] = description(e);
    r["network"] = "global/networks/default";
    r["direction"] = "EGRESS";
    r["priority"] = 1000;
    r["targetTags"] = ojson::array({s.name});
    r["destinationRanges"] = ojson::array({cidr(e.ep)});
    r["allowed"] = ojson::array({{{"IPProtocol", kernel::proto_name(e.ep.proto)},
                                  {"ports", ojson::array({std::to_string(e.ep.port)})}}});
    out.push_back(r);
  }
  // GCP keeps IPv4 and IPv6 ranges in separate rules. 65534: just above the implied
  // allow-all egress rule (65535), below every allow above.
  for (const auto& [suffix, range] :
       {std::pair<const char*, const char*>{"deny-all-ipv4", "0.0.0.0/0"},
        std::pair<const char*, const char*>{"deny-all-ipv6", "::/0"}}) {
    ojson r;
    r["name"] = s.name + "-" + suffix;
    r["description"] = "ACP: everything else is refused";
    r["network"] = "global/networks/default";
    r["direction"] = "EGRESS";
    r["priority"] = 65534;
    r["targetTags"] = ojson::array({s.name});
    r["destinationRanges"] = ojson::array({range});
    r["denied"] = ojson::array({{{"IPProtocol", "all"}}});
    out.push_back(r);
  }
  return dump(out);
}

}  // namespace acp::exporter::detail
