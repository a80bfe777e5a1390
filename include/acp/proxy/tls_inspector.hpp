// Optional TLS inspection (`acp run --inspect-tls`): the proxy ends the agent's TLS inside an
// allowed CONNECT with a leaf certificate it mints for the CONNECT host, signed by a per-install
// CA, and opens its own verified TLS connection to the origin, so every request inside is
// judged by method and path. See docs/tls-inspection.md.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "acp/util/result.hpp"

typedef struct ssl_st SSL;

namespace boost::asio::ssl {
class context;
}

namespace acp::proxy {

inline constexpr const char* kDefaultCaDir = "/var/lib/acp/ca";

// The per-install CA: `dir`/private/ca.key (EC P-256, 0600 in a 0700 directory that a root
// agent does not see) and
// `dir`/ca.crt (world-readable), and the agent's trust bundle `dir`/bundle.pem (the system's
// CAs followed by ca.crt, so traffic that is not inspected still verifies).
struct CaFiles {
  std::string dir, key, cert, bundle;
  std::string fingerprint;  // SHA-256 of the certificate, "AB:CD:..."
  std::string subject;
};
CaFiles ca_files(const std::string& dir);

// Loads the CA in `dir`, creating the directory (0755), the key (0600) and the certificate
// (0644, valid 10 years) when missing. A key that group or others can read is refused.
// Rewrites the trust bundle from `system_bundle` (empty: the distribution's bundle).
Result<CaFiles> ensure_ca(const std::string& dir, const std::string& system_bundle = {});
// Replaces the CA with a new one (old leaves die with the sessions that minted them).
Result<CaFiles> rotate_ca(const std::string& dir, const std::string& system_bundle = {});
// The CA's files and fingerprint, or an error when it does not exist.
Result<CaFiles> load_ca_info(const std::string& dir);

struct TlsInspectOptions {
  std::string ca_dir = kDefaultCaDir;
  std::vector<std::string> exclude;  // host globs (policy syntax) tunnelled untouched
  std::string upstream_ca_file;      // empty: the system store
  size_t leaf_cache = 256;           // minted leaves kept (LRU)
  std::chrono::hours leaf_validity{72};
};

class TlsInspector {
 public:
  // Loads (or creates) the CA and builds both TLS contexts.
  static Result<std::shared_ptr<TlsInspector>> create(const TlsInspectOptions& opts);
  ~TlsInspector();
  TlsInspector(const TlsInspector&) = delete;
  TlsInspector& operator=(const TlsInspector&) = delete;

  // Whether `host` (normalized) is tunnelled untouched.
  bool excluded(std::string_view host) const;
  // The context the agent's side is served with (ALPN: http/1.1 only; certificate per SSL).
  boost::asio::ssl::context& client_side();
  // The context the origin is reached with (peer verified; hostname checked per SSL).
  boost::asio::ssl::context& upstream_side();
  // Gives `ssl` the leaf for `host` (minted now or from the cache) and the CA as its chain.
  Status use_leaf(SSL* ssl, const std::string& host);
  // Sets SNI and the name (or IP) the origin's certificate must carry.
  static Status expect_upstream(SSL* ssl, const std::string& host);
  // Why the origin's certificate was refused, after a failed handshake.
  static std::string verify_failure(SSL* ssl);

  const CaFiles& ca() const;
  size_t leaves_cached() const;
  size_t leaves_minted() const;

  struct Impl;

 private:
  explicit TlsInspector(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace acp::proxy
