// ACP's own TCP listeners (every session's proxy, the web page, the webhook callback, the node
// agent's listeners), which no proxy may connect to, whatever the policy says.
//
// Each listener registers its socket before listen(): in this process, and (as root) as one
// file in kOwnEndpointsDir that every acp process reads. An upstream destination is refused
// when the kernel says a connect() to it would reach one of those sockets: the listening
// socket is found by sock_diag, so every spelling of the address (loopback names, 0.0.0.0,
// the host's own interface addresses, v4-mapped) is the same socket. docs/security.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <boost/asio/ip/tcp.hpp>

#include "acp/util/result.hpp"

namespace acp::proxy {

// Root-owned, 0755; one file per listener, named <pid>-<socket inode>. Entries of processes
// that are gone are ignored (and removed by the next root registration).
inline constexpr const char* kOwnEndpointsDir = "/run/acp/endpoints";

// One registered listener; unregisters (in-process and its file) when destroyed.
class OwnEndpoint {
 public:
  OwnEndpoint() = default;
  OwnEndpoint(uint64_t inode, std::string file) : inode_(inode), file_(std::move(file)) {}
  OwnEndpoint(OwnEndpoint&& o) noexcept;
  OwnEndpoint& operator=(OwnEndpoint&& o) noexcept;
  OwnEndpoint(const OwnEndpoint&) = delete;
  OwnEndpoint& operator=(const OwnEndpoint&) = delete;
  ~OwnEndpoint();

 private:
  friend Result<OwnEndpoint> register_own_endpoint(int, const std::string&, const std::string&);
  void reset();
  uint64_t inode_ = 0;
  std::string file_;
};

// Registers the TCP socket `fd` (bound, not yet listening, so that no connection ever reaches
// an unregistered listener) as ACP's own, described by `what` ("proxy of session 1a2b").
// Root writes the machine-wide entry into `dir` and fails when it cannot; without root the
// entry is in-process only (docs/security.md says what that leaves open).
Result<OwnEndpoint> register_own_endpoint(int fd, const std::string& what,
                                          const std::string& dir = kOwnEndpointsDir);

// Why a TCP connect() to `dest` must not be made: it would reach one of ACP's own listeners,
// or the kernel could not say whether it would (fail closed). nullopt: connect.
std::optional<std::string> own_endpoint_refusal(const boost::asio::ip::tcp::endpoint& dest,
                                                const std::string& dir = kOwnEndpointsDir);

}  // namespace acp::proxy
