// acp daemon [--socket=PATH] [--metrics=ADDR:PORT]: hold many sessions' walls and consent
// proxies in one process (systemd: deploy/systemd/acp.service). See src/daemon/ and
// docs/daemon.md.
#include <memory>

#include "acp/cli/commands.hpp"
#include "acp/daemon/daemon.hpp"

namespace acp::cli {

void register_daemon(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand(
      "daemon",
      "Run the ACP daemon: `acp run` hands its sessions to it; a restarted daemon re-adopts "
      "the sessions that are still running. Sends READY=1 to $NOTIFY_SOCKET (systemd).");
  auto opts = std::make_shared<daemon::DaemonOptions>();
  cmd->add_option("--socket", opts->socket,
                  "The socket acp run registers on (default /run/acp/daemon.sock)");
  cmd->add_option("--metrics", opts->metrics,
                  "Serve Prometheus metrics at http://ADDR:PORT/metrics, e.g. 127.0.0.1:9464 "
                  "(keep it on loopback: whoever reaches it reads the counters; agents never do)")
      ->type_name("ADDR:PORT");
  cmd->callback([opts, &exit_code] { exit_code = daemon::run_daemon(*opts); });
}

}  // namespace acp::cli
