// `acp mcp -- CMD`: the MCP stdio transport with consent. CMD (a local MCP server) runs as a
// child with pipes for stdin and stdout; its stderr is ACP's. Client lines (newline-delimited
// JSON-RPC) go to the server byte for byte, except a tools/call that is refused: ACP answers it
// on the client's stdout with a JSON-RPC error and the server never sees it. The server's
// stdout reaches the client byte for byte; ACP's own replies go in only between two lines.
// Everything runs on one io_context. See docs/mcp.md.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "acp/proxy/request_judge.hpp"
#include "acp/util/result.hpp"

namespace acp::mcp {

struct StdioOptions {
  std::vector<std::string> command;  // CMD [ARGS...], looked up in PATH
  std::string server_name;           // the Action's server; empty: the command's base name
  std::string session;               // copied into every Action
  int client_in = 0;                 // the client's side: these fds (pipes, sockets or ttys)
  int client_out = 1;
};

class StdioRelay {
 public:
  // Starts CMD and the relay. `judge` must outlive the relay. Errors: CMD not found (err
  // ENOENT), not executable (EACCES), pipes or fds that cannot be used.
  static Result<std::unique_ptr<StdioRelay>> start(boost::asio::io_context& io, StdioOptions opts,
                                                   RequestJudge& judge);
  virtual ~StdioRelay() = default;
  // Called once, after the server exited and all of its output reached the client, with its
  // exit status as a shell reports it (the code, or 128 + the signal).
  virtual void on_exit(std::function<void(int status)> cb) = 0;
  virtual void forward_signal(int sig) = 0;
  virtual pid_t server_pid() const = 0;
  virtual const std::string& server_name() const = 0;
};

}  // namespace acp::mcp
