// docker-compose: the agent on an `internal` network (no route out at the kernel level) whose
// only peer is the acp service, which also sits on a network with a way out. The agent is
// hardened as `acp contain` does it (docs/export.md, origin-docs/network-isolation-current.md).
#include <string>

#include "renderers.hpp"

namespace acp::exporter::detail {
namespace {

// YAML double-quoted scalar (the values here are names, paths and URLs).
std::string q(const std::string& v) {
  std::string o = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o + "\"";
}

}  // namespace

std::string render_compose(const ExportSpec& s) {
  const std::string port = std::to_string(s.proxy_port);
  const std::string url = "http://acp:" + port;
  std::string o = header(s, "# ");
  o += "# The agent's network `isolated` is internal: no gateway out. Its only peer is the\n";
  o += "# acp service, which runs the consent proxy on 0.0.0.0:" + port +
       " and also sits on `internet`.\n";
  o += "# Check: docker compose -f FILE config   Run: docker compose -f FILE up\n";
  o += "services:\n";
  o += "  acp:\n";
  o += "    image: " + q(s.acp_image) + "\n";
  o += "    networks: [isolated, internet]\n";
  o += "    ports: [" + q("127.0.0.1:" + port + ":" + port) + "]\n";
  if (!s.policy_path.empty()) {
    o += "    volumes:\n";
    // Compose reads a bare relative name as a named volume; "./" makes it a bind mount,
    // relative to the compose file's directory.
    std::string host = s.policy_path;
    if (host.front() != '/' && host.front() != '.') host = "./" + host;
    o += "      - " + q(host + ":/etc/acp/policy.yml:ro") + "\n";
  }
  o += "  agent:\n";
  o += "    image: " + q(s.agent_image) + "\n";
  o += "    networks: [isolated]\n";
  o += "    depends_on: [acp]\n";
  o += "    environment:\n";
  for (const char* k : {"ACP_PROXY_URL", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"})
    o += std::string("      ") + k + ": " + q(url) + "\n";
  o += "      ACP_CONTAINED: \"1\"\n";
  o += "      ACP_SANDBOX: \"1\"\n";
  o += "    read_only: true\n";
  o += "    cap_drop: [ALL]\n";
  o += "    security_opt: [\"no-new-privileges:true\"]\n";
  o += "    tmpfs: [/tmp, /home]\n";
  o += "    pids_limit: 256\n";
  o += "    mem_limit: 2g\n";
  o += "networks:\n";
  o += "  isolated:\n";
  o += "    internal: true\n";
  o += "  internet: {}\n";
  return o;
}

}  // namespace acp::exporter::detail
