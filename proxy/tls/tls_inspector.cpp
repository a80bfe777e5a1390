#include "acp/proxy/tls_inspector.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <sstream>
#include <unordered_map>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/context.hpp>

#include "acp/proxy/policy.hpp"
#include "acp/util/atomic_file.hpp"
#include "acp/util/random_id.hpp"

namespace acp::proxy {
namespace {

namespace ssl = boost::asio::ssl;

constexpr const char* kSystemBundle = "/etc/ssl/certs/ca-certificates.crt";
constexpr long kCaValiditySeconds = 10L * 365 * 24 * 3600;
constexpr long kBackdateSeconds = 3600;  // clocks of the agent and the proxy may differ

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using Cert = std::unique_ptr<X509, X509Free>;

std::string openssl_error(const std::string& what) {
  unsigned long e = ERR_get_error();
  char buf[256] = "unknown error";
  if (e != 0) ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return what + ": " + buf;
}

Result<Pkey> new_key() {
  Pkey k(EVP_EC_gen("P-256"));
  if (!k) return make_error(openssl_error("generate an EC P-256 key"));
  return k;
}

Status random_serial(X509* x) {
  unsigned char bytes[16];
  if (auto st = util::random_bytes(bytes); !st)
    return make_error("certificate serial: " + st.error().message(), st.error().err);
  bytes[0] &= 0x7f;  // positive
  BIGNUM* bn = BN_bin2bn(bytes, sizeof bytes, nullptr);
  if (!bn) return make_error(openssl_error("random serial"));
  bool ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != nullptr;
  BN_free(bn);
  if (!ok) return make_error(openssl_error("random serial"));
  return {};
}

Status add_ext(X509* x, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, x, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (!ext) return make_error(openssl_error("certificate extension " + value));
  bool ok = X509_add_ext(x, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  if (!ok) return make_error(openssl_error("certificate extension " + value));
  return {};
}

std::string short_hostname() {
  char h[256] = {};
  if (gethostname(h, sizeof h - 1) != 0) return "localhost";
  return std::string(h).substr(0, 32);
}

Result<Cert> make_ca_cert(EVP_PKEY* key) {
  Cert x(X509_new());
  if (!x) return make_error(openssl_error("X509_new"));
  X509_set_version(x.get(), 2);
  if (auto st = random_serial(x.get()); !st) return st.error();
  X509_gmtime_adj(X509_getm_notBefore(x.get()), -kBackdateSeconds);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), kCaValiditySeconds);
  X509_NAME* name = X509_get_subject_name(x.get());
  std::string cn = "ACP TLS inspection CA (" + short_hostname() + ")";
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("ACP"),
                             -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(x.get(), name);
  X509_set_pubkey(x.get(), key);
  for (auto [nid, v] : {std::pair{NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
                        std::pair{NID_key_usage, "critical,keyCertSign,cRLSign"},
                        std::pair{NID_subject_key_identifier, "hash"}})
    if (auto st = add_ext(x.get(), x.get(), nid, v); !st) return st.error();
  if (X509_sign(x.get(), key, EVP_sha256()) == 0) return make_error(openssl_error("sign the CA"));
  return x;
}

// What `write` puts in a memory BIO: the PEM text of a key or certificate.
Result<std::string> pem_text(const std::function<bool(BIO*)>& write, const std::string& what) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  if (!bio || !write(bio.get())) return make_error(openssl_error("write " + what + " as PEM"));
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  std::string out(data, static_cast<size_t>(n));
  OPENSSL_cleanse(data, static_cast<size_t>(n));
  return out;
}

// `dir` (0755: the certificate and bundle are public) and `dir`/private (0700: the key).
Status make_dirs(const std::string& dir) {
  if (auto st = util::create_directories(dir, 0755); !st) return st;
  std::string priv = dir + "/private";
  if (::mkdir(priv.c_str(), 0700) != 0 && errno != EEXIST) return errno_error("mkdir " + priv);
  if (::chmod(priv.c_str(), 0700) != 0) return errno_error("chmod " + priv);
  return {};
}

Result<std::string> fingerprint(X509* x) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (X509_digest(x, EVP_sha256(), md, &n) != 1) return make_error(openssl_error("digest"));
  std::string out;
  char b[4];
  for (unsigned i = 0; i < n; ++i) {
    std::snprintf(b, sizeof b, "%02X", md[i]);
    out += (i ? ":" : "") + std::string(b);
  }
  return out;
}

std::string subject_of(X509* x) {
  char buf[512];
  X509_NAME_oneline(X509_get_subject_name(x), buf, sizeof buf);
  return buf;
}

Result<Cert> read_cert(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "re");
  if (!f) return errno_error("open " + path);
  Cert x(PEM_read_X509(f, nullptr, nullptr, nullptr));
  std::fclose(f);
  if (!x) return make_error(openssl_error("read the certificate " + path));
  return x;
}

Result<Pkey> read_key(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return errno_error("stat " + path);
  if ((st.st_mode & 077) != 0)
    return make_error(path + " is readable by group or others (mode " +
                      std::to_string(st.st_mode & 0777) +
                      " decimal): the CA key must be 0600; run `acp ca rotate`");
  FILE* f = std::fopen(path.c_str(), "re");
  if (!f) return errno_error("open " + path);
  Pkey k(PEM_read_PrivateKey(f, nullptr, nullptr, nullptr));
  std::fclose(f);
  if (!k) return make_error(openssl_error("read the CA key " + path));
  return k;
}

Status write_bundle(const CaFiles& files, const std::string& system_bundle) {
  std::string sys = system_bundle.empty() ? kSystemBundle : system_bundle;
  std::string text;
  {
    std::ifstream in(sys, std::ios::binary);
    if (in) {
      std::ostringstream ss;
      ss << in.rdbuf();
      text = ss.str();
      if (!text.empty() && text.back() != '\n') text += '\n';
    }
  }
  std::ifstream ca(files.cert, std::ios::binary);
  if (!ca) return errno_error("open " + files.cert);
  std::ostringstream ss;
  ss << ca.rdbuf();
  text += "# ACP TLS inspection CA (" + files.cert + ")\n" + ss.str();
  return util::write_file_atomic(files.bundle, text, 0644);
}

Status create_ca(const CaFiles& files) {
  auto key = new_key();
  if (!key) return key.error();
  auto cert = make_ca_cert(key->get());
  if (!cert) return cert.error();
  auto key_pem = pem_text(
      [&](BIO* b) {
        return PEM_write_bio_PrivateKey(b, key->get(), nullptr, nullptr, 0, nullptr, nullptr) == 1;
      },
      "the CA key");
  if (!key_pem) return key_pem.error();
  auto written = util::write_file_atomic(files.key, *key_pem, 0600);
  OPENSSL_cleanse(key_pem->data(), key_pem->size());
  if (!written) return written;
  auto cert_pem = pem_text([&](BIO* b) { return PEM_write_bio_X509(b, cert->get()) == 1; },
                           "the CA certificate");
  if (!cert_pem) return cert_pem.error();
  return util::write_file_atomic(files.cert, *cert_pem, 0644);
}

Result<CaFiles> finish(CaFiles files) {
  auto cert = read_cert(files.cert);
  if (!cert) return cert.error();
  auto fp = fingerprint(cert->get());
  if (!fp) return fp.error();
  files.fingerprint = *fp;
  files.subject = subject_of(cert->get());
  return files;
}

bool is_ip_literal(const std::string& host) {
  boost::system::error_code ec;
  boost::asio::ip::make_address(host, ec);
  return !ec;
}

}  // namespace

CaFiles ca_files(const std::string& dir) {
  return CaFiles{dir, dir + "/private/ca.key", dir + "/ca.crt", dir + "/bundle.pem", {}, {}};
}

Result<CaFiles> ensure_ca(const std::string& dir, const std::string& system_bundle) {
  auto files = ca_files(dir);
  if (auto st = make_dirs(dir); !st) return st.error();
  struct stat st {};
  const bool have_key = ::stat(files.key.c_str(), &st) == 0;
  const bool have_cert = ::stat(files.cert.c_str(), &st) == 0;
  if (!have_key || !have_cert) {
    if (auto s = create_ca(files); !s) return s.error();
  } else if (auto k = read_key(files.key); !k) {
    return k.error();
  }
  if (auto s = write_bundle(files, system_bundle); !s) return s.error();
  return finish(std::move(files));
}

Result<CaFiles> rotate_ca(const std::string& dir, const std::string& system_bundle) {
  auto files = ca_files(dir);
  if (auto st = make_dirs(dir); !st) return st.error();
  if (auto s = create_ca(files); !s) return s.error();
  if (auto s = write_bundle(files, system_bundle); !s) return s.error();
  return finish(std::move(files));
}

Result<CaFiles> load_ca_info(const std::string& dir) {
  auto files = ca_files(dir);
  struct stat st {};
  if (::stat(files.key.c_str(), &st) != 0)
    return make_error("no ACP CA in " + dir +
                      " (created by `acp ca init` or the first "
                      "`acp run --inspect-tls`)");
  return finish(std::move(files));
}

struct TlsInspector::Impl {
  struct Leaf {
    Cert cert;
    std::chrono::system_clock::time_point minted;
  };

  TlsInspectOptions opts;
  CaFiles files;
  Pkey ca_key, leaf_key;  // one key for every leaf of this process (as mitmproxy does)
  Cert ca_cert;
  ssl::context client_ctx{ssl::context::tls_server};
  ssl::context upstream_ctx{ssl::context::tls_client};
  mutable std::mutex mu;
  std::list<std::pair<std::string, std::shared_ptr<Leaf>>> lru;  // front: most recent
  std::unordered_map<std::string, decltype(lru)::iterator> index;
  size_t minted = 0;

  Result<Cert> mint(const std::string& host) {
    Cert x(X509_new());
    if (!x) return make_error(openssl_error("X509_new"));
    X509_set_version(x.get(), 2);
    if (auto st = random_serial(x.get()); !st) return st.error();
    X509_gmtime_adj(X509_getm_notBefore(x.get()), -kBackdateSeconds);
    X509_gmtime_adj(X509_getm_notAfter(x.get()),
                    std::chrono::duration_cast<std::chrono::seconds>(opts.leaf_validity).count());
    X509_NAME* name = X509_get_subject_name(x.get());
    if (host.size() <= 64)
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                 reinterpret_cast<const unsigned char*>(host.c_str()), -1, -1, 0);
    X509_set_issuer_name(x.get(), X509_get_subject_name(ca_cert.get()));
    X509_set_pubkey(x.get(), leaf_key.get());
    // `host` is normalized ([a-z0-9.-_] or an IP literal): nothing in it can break the
    // extension syntax.
    const std::string san = (is_ip_literal(host) ? "IP:" : "DNS:") + host;
    for (auto [nid, v] :
         {std::pair<int, std::string>{NID_basic_constraints, "critical,CA:FALSE"},
          std::pair<int, std::string>{NID_key_usage, "critical,digitalSignature"},
          std::pair<int, std::string>{NID_ext_key_usage, "serverAuth"},
          std::pair<int, std::string>{NID_subject_alt_name, san},
          std::pair<int, std::string>{NID_subject_key_identifier, "hash"},
          std::pair<int, std::string>{NID_authority_key_identifier, "keyid:always"}}) {
      X509V3_CTX ctx;
      X509V3_set_ctx_nodb(&ctx);
      X509V3_set_ctx(&ctx, ca_cert.get(), x.get(), nullptr, nullptr, 0);
      X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, v.c_str());
      if (!ext) return make_error(openssl_error("leaf extension " + v));
      X509_add_ext(x.get(), ext, -1);
      X509_EXTENSION_free(ext);
    }
    if (X509_sign(x.get(), ca_key.get(), EVP_sha256()) == 0)
      return make_error(openssl_error("sign the leaf for " + host));
    return x;
  }

  Result<std::shared_ptr<Leaf>> leaf(const std::string& host) {
    std::lock_guard lk(mu);
    const auto now = std::chrono::system_clock::now();
    if (auto it = index.find(host); it != index.end()) {
      // Re-minted at half its life, so a long session never serves an expired leaf.
      if (now - it->second->second->minted < opts.leaf_validity / 2) {
        lru.splice(lru.begin(), lru, it->second);
        return it->second->second;
      }
      lru.erase(it->second);
      index.erase(it);
    }
    auto cert = mint(host);
    if (!cert) return cert.error();
    ++minted;
    auto l = std::make_shared<Leaf>(Leaf{std::move(*cert), now});
    lru.emplace_front(host, l);
    index[host] = lru.begin();
    while (lru.size() > std::max<size_t>(1, opts.leaf_cache)) {
      index.erase(lru.back().first);
      lru.pop_back();
    }
    return l;
  }
};

namespace {

int select_http11(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                  unsigned int inlen, void*) {
  static const unsigned char kOurs[] = "\x08http/1.1";
  unsigned char* sel = nullptr;
  if (SSL_select_next_proto(&sel, outlen, kOurs, sizeof kOurs - 1, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;  // no ALPN: HTTP/1.1 by default
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

}  // namespace

Result<std::shared_ptr<TlsInspector>> TlsInspector::create(const TlsInspectOptions& opts) {
  auto impl = std::make_unique<Impl>();
  impl->opts = opts;
  auto files = ensure_ca(opts.ca_dir);
  if (!files) return files.error();
  impl->files = *files;
  auto key = read_key(files->key);
  if (!key) return key.error();
  impl->ca_key = std::move(*key);
  auto cert = read_cert(files->cert);
  if (!cert) return cert.error();
  impl->ca_cert = std::move(*cert);
  auto leaf_key = new_key();
  if (!leaf_key) return leaf_key.error();
  impl->leaf_key = std::move(*leaf_key);

  SSL_CTX* c = impl->client_ctx.native_handle();
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_alpn_select_cb(c, select_http11, nullptr);

  SSL_CTX* u = impl->upstream_ctx.native_handle();
  SSL_CTX_set_min_proto_version(u, TLS1_2_VERSION);
  static const unsigned char kAlpn[] = "\x08http/1.1";
  SSL_CTX_set_alpn_protos(u, kAlpn, sizeof kAlpn - 1);
  boost::system::error_code ec;
  impl->upstream_ctx.set_verify_mode(ssl::verify_peer, ec);
  if (!opts.upstream_ca_file.empty())
    impl->upstream_ctx.load_verify_file(opts.upstream_ca_file, ec);
  else
    impl->upstream_ctx.set_default_verify_paths(ec);
  if (ec)
    return make_error(
        "upstream trust store " +
        (opts.upstream_ca_file.empty() ? std::string("(system)") : opts.upstream_ca_file) + ": " +
        ec.message());
  return std::shared_ptr<TlsInspector>(new TlsInspector(std::move(impl)));
}

TlsInspector::TlsInspector(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TlsInspector::~TlsInspector() = default;

bool TlsInspector::excluded(std::string_view host) const {
  for (const auto& g : impl_->opts.exclude)
    if (policy::glob_match(g, host)) return true;
  return false;
}

ssl::context& TlsInspector::client_side() {
  return impl_->client_ctx;
}
ssl::context& TlsInspector::upstream_side() {
  return impl_->upstream_ctx;
}

Status TlsInspector::use_leaf(SSL* s, const std::string& host) {
  auto l = impl_->leaf(host);
  if (!l) return l.error();
  if (SSL_use_certificate(s, (*l)->cert.get()) != 1 ||
      SSL_use_PrivateKey(s, impl_->leaf_key.get()) != 1)
    return make_error(openssl_error("use the leaf for " + host));
  return {};
}

Status TlsInspector::expect_upstream(SSL* s, const std::string& host) {
  if (is_ip_literal(host)) {
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s), host.c_str()) != 1)
      return make_error(openssl_error("expect IP " + host));
    return {};
  }
  if (SSL_set_tlsext_host_name(s, host.c_str()) != 1 || SSL_set1_host(s, host.c_str()) != 1)
    return make_error(openssl_error("expect host " + host));
  return {};
}

std::string TlsInspector::verify_failure(SSL* s) {
  long r = SSL_get_verify_result(s);
  if (r == X509_V_OK) return {};
  return X509_verify_cert_error_string(r);
}

const CaFiles& TlsInspector::ca() const {
  return impl_->files;
}
size_t TlsInspector::leaves_cached() const {
  std::lock_guard lk(impl_->mu);
  return impl_->lru.size();
}
size_t TlsInspector::leaves_minted() const {
  std::lock_guard lk(impl_->mu);
  return impl_->minted;
}

}  // namespace acp::proxy
