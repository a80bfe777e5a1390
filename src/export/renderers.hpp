// The renderers behind acp::exporter::render(), one file per family of enforcement point.
#pragma once

#include <string>

#include "acp/export/export.hpp"

namespace acp::exporter::detail {

std::string render_nftables(const ExportSpec& s);             // render_firewall.cpp
std::string render_iptables(const ExportSpec& s, bool ipv6);  // render_firewall.cpp
std::string render_pf(const ExportSpec& s);                   // render_firewall.cpp
std::string render_aws_sg(const ExportSpec& s);               // render_cloud.cpp
std::string render_azure_nsg(const ExportSpec& s);            // render_cloud.cpp
std::string render_gcp_firewall(const ExportSpec& s);         // render_cloud.cpp
std::string render_compose(const ExportSpec& s);              // render_compose.cpp

// "127.0.0.1" or "::1".
std::string addr_text(const kernel::Endpoint& ep);
// "127.0.0.1/32" or "::1/128".
std::string cidr(const kernel::Endpoint& ep);
// "consent proxy" or "allow", for comments and descriptions.
struct Entry {
  kernel::Endpoint ep;
  const char* what;
};
// The proxy endpoints first, then the allow entries, in the order given.
std::vector<Entry> entries(const ExportSpec& s);
// The "# ..." lines every text format starts with (after its own first line).
std::string header(const ExportSpec& s, const std::string& prefix);

}  // namespace acp::exporter::detail
