// The server name a TLS ClientHello asks for (SNI, RFC 6066 section 3), read from the first
// bytes a client sent to the transparent door (docs/transparent.md). A pure, bounded function:
// it reads only the first TLS record (at most kMaxTlsRecord bytes past its 5-byte header), so
// the unit tests and the fuzzer (fuzz/fuzz_client_hello.cpp) reach exactly what the door runs.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace acp::proxy {

// A TLS record's largest plaintext (RFC 8446 5.1) plus the expansion TLS 1.2 allowed.
inline constexpr size_t kMaxTlsRecord = 16384 + 2048;

enum class HelloScan {
  NeedMore,  // a prefix of a ClientHello record: read more
  NotTls,    // not a TLS handshake record holding a ClientHello
  NoName,    // a ClientHello without a usable host_name (none, malformed, or beyond the record)
  Name,      // `name` holds the host_name, as sent (the caller canonicalises it)
};

struct ClientHelloName {
  HelloScan scan = HelloScan::NeedMore;
  std::string name;
};

// What `bytes` (the client's first bytes, as many as have arrived) say about the server name.
ClientHelloName client_hello_server_name(std::string_view bytes);

}  // namespace acp::proxy
