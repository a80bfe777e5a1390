// The transparent door's ClientHello reader (acp/proxy/client_hello.hpp) on arbitrary bytes:
// no crash, no read outside the input, and a name only when it is plausible and held inside.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "acp/proxy/client_hello.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const auto r = acp::proxy::client_hello_server_name(in);
  if (r.scan == acp::proxy::HelloScan::Name &&
      (r.name.empty() || r.name.size() > 255 || in.find(r.name) == std::string_view::npos))
    std::abort();
  return 0;
}
