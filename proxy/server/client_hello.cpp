#include "acp/proxy/client_hello.hpp"

#include <cstdint>
#include <optional>

namespace acp::proxy {
namespace {

constexpr uint8_t kHandshakeRecord = 22;  // ContentType handshake
constexpr uint8_t kClientHello = 1;       // HandshakeType client_hello
constexpr uint16_t kServerNameExt = 0;    // ExtensionType server_name
constexpr uint8_t kHostName = 0;          // NameType host_name
constexpr size_t kMaxHostName = 255;

// A cursor over the record's bytes: every read is bounds-checked; a short read empties it.
class Reader {
 public:
  explicit Reader(std::string_view s) : s_(s) {}
  std::optional<uint32_t> uint(size_t n) {
    if (s_.size() < n) return fail<uint32_t>();
    uint32_t v = 0;
    for (size_t i = 0; i < n; ++i) v = (v << 8) | static_cast<uint8_t>(s_[i]);
    s_.remove_prefix(n);
    return v;
  }
  std::optional<std::string_view> bytes(size_t n) {
    if (s_.size() < n) return fail<std::string_view>();
    auto v = s_.substr(0, n);
    s_.remove_prefix(n);
    return v;
  }
  // A vector with an n-byte length prefix (RFC 8446 3.4).
  std::optional<std::string_view> vec(size_t n) {
    auto len = uint(n);
    if (!len) return std::nullopt;
    return bytes(*len);
  }
  bool empty() const { return s_.empty(); }

 private:
  template <class T>
  std::optional<T> fail() {
    s_ = {};
    return std::nullopt;
  }
  std::string_view s_;
};

// A host_name as RFC 6066 allows it: ASCII letters, digits, '-', '.', '_' (seen in the wild);
// anything else (NUL, spaces, '/', ':') is no name a rule could mean.
bool plausible_host_name(std::string_view n) {
  if (n.empty() || n.size() > kMaxHostName) return false;
  for (char c : n) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '.' || c == '_';
    if (!ok) return false;
  }
  return true;
}

// The server_name extension's body: the first host_name entry.
std::optional<std::string_view> host_name_in(std::string_view ext) {
  Reader r(ext);
  auto list = r.vec(2);
  if (!list) return std::nullopt;
  Reader names(*list);
  while (!names.empty()) {
    auto type = names.uint(1);
    auto name = names.vec(2);
    if (!type || !name) return std::nullopt;
    if (*type == kHostName) return name;
  }
  return std::nullopt;
}

// The ClientHello body (after the 4-byte handshake header, cut at the record's end).
std::optional<std::string_view> server_name_in(std::string_view hello) {
  Reader r(hello);
  if (!r.bytes(2) || !r.bytes(32) || !r.vec(1) || !r.vec(2) || !r.vec(1)) return std::nullopt;
  auto exts = r.vec(2);
  if (!exts) return std::nullopt;
  Reader e(*exts);
  while (!e.empty()) {
    auto type = e.uint(2);
    auto body = e.vec(2);
    if (!type || !body) return std::nullopt;
    if (*type == kServerNameExt) return host_name_in(*body);
  }
  return std::nullopt;
}

}  // namespace

ClientHelloName client_hello_server_name(std::string_view bytes) {
  // The record header: handshake, legacy version 3.x, length.
  if (!bytes.empty() && static_cast<uint8_t>(bytes[0]) != kHandshakeRecord)
    return {HelloScan::NotTls, {}};
  if (bytes.size() >= 2 && static_cast<uint8_t>(bytes[1]) != 3) return {HelloScan::NotTls, {}};
  if (bytes.size() < 5) return {HelloScan::NeedMore, {}};
  const size_t record_len =
      (size_t{static_cast<uint8_t>(bytes[3])} << 8) | static_cast<uint8_t>(bytes[4]);
  if (record_len == 0 || record_len > kMaxTlsRecord) return {HelloScan::NotTls, {}};
  if (bytes.size() > 5 && static_cast<uint8_t>(bytes[5]) != kClientHello)
    return {HelloScan::NotTls, {}};
  if (bytes.size() < 5 + record_len) return {HelloScan::NeedMore, {}};
  Reader record(bytes.substr(5, record_len));
  auto type = record.uint(1);
  auto hello_len = record.uint(3);
  if (!type || !hello_len) return {HelloScan::NoName, {}};
  // A ClientHello longer than its first record: what the record holds is read, no more (a name
  // beyond it is not seen: NoName, judged by address).
  auto rest = bytes.substr(5 + 4, record_len - 4);
  if (rest.size() > *hello_len) rest = rest.substr(0, *hello_len);
  auto name = server_name_in(rest);
  if (!name || !plausible_host_name(*name)) return {HelloScan::NoName, {}};
  return {HelloScan::Name, std::string(*name)};
}

}  // namespace acp::proxy
