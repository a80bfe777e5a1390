// Fuzz target: the bytes an agent sends to the proxy, through what the connection does before
// any judge or upstream is involved (proxy/server/proxy_connection.cpp): empty lines skipped,
// the header section found and held to max_header_bytes, the head parsed by Beast with the
// proxy's limits and smuggling checks (parse_request_head), the target parsed, then the body
// streamed through the same buffer_body parser the relay uses, 64 KiB at a time.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include <boost/beast/http/error.hpp>

#include "acp/proxy/request_head.hpp"
#include "acp/proxy/request_target.hpp"

using namespace acp::proxy;
namespace http = boost::beast::http;

namespace {

constexpr size_t kMaxHeaderBytes = 64 * 1024;  // ProxyLimits' default
constexpr size_t kRelayBufferBytes = 64 * 1024;

void check(bool ok) {
  if (!ok) std::abort();
}

// One request from `in`, as the connection handles it; returns the bytes consumed, or 0 when
// the connection would be closed.
size_t one_request(std::string_view in, uint64_t max_body, char* relay) {
  size_t skip = leading_empty_lines(in);
  in.remove_prefix(skip);
  size_t end = find_header_end(in);
  if (end == std::string_view::npos || end > kMaxHeaderBytes) return 0;  // waits, or 431
  RequestParser p;
  size_t used = 0;
  auto refusal = parse_request_head(in.substr(0, end), max_body, p, used);
  check(used <= end);
  if (refusal) {
    check(refusal->status == 400 || refusal->status == 413);
    check(!refusal->reason.empty());
    return 0;
  }
  check(p.is_header_done());
  // What the proxy rules out must really be out.
  const auto& req = p.get();
  check(req.count(http::field::content_length) <= 1);
  check(req.count(http::field::host) <= 1);
  check(req.count(http::field::transfer_encoding) == 0 || p.chunked());
  if (req.method() == http::verb::connect) {
    (void)parse_authority(req.target());
    return 0;  // a CONNECT becomes a tunnel (or a refusal): no more HTTP on this connection
  }
  (void)parse_absolute_url(req.target());
  if (auto cl = p.content_length(); cl && max_body > 0) check(*cl <= max_body);
  // The body, as relay_body() reads it: the rest of the input is what the client sent next.
  std::string_view rest = in.substr(used);
  uint64_t body_bytes = 0;
  while (!p.is_done()) {
    auto& body = p.get().body();
    body.data = relay;
    body.size = kRelayBufferBytes;
    boost::system::error_code ec;
    size_t n = p.put(boost::asio::buffer(rest.data(), rest.size()), ec);
    if (ec == http::error::need_buffer) ec = {};
    if (ec) return 0;  // 413 for body_limit, else the client "went away"
    check(n <= rest.size());
    rest.remove_prefix(n);
    size_t got = kRelayBufferBytes - body.size;
    body_bytes += got;
    if (max_body > 0) check(body_bytes <= max_body);
    if (n == 0 && got == 0) return 0;  // needs bytes the client has not sent
  }
  if (auto cl = p.content_length_remaining(); cl) check(*cl == 0);
  if (!req.keep_alive()) return 0;
  return skip + (in.size() - rest.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static std::unique_ptr<char[]> relay(new char[kRelayBufferBytes]);
  std::string_view all(reinterpret_cast<const char*>(data), size);
  // Both ways the proxy can run: bodies unlimited (the default) and max_body_bytes set.
  for (uint64_t max_body : {uint64_t{0}, uint64_t{16}}) {
    std::string_view in = all;
    // Pipelined requests on one kept-alive connection, bounded.
    for (int i = 0; i < 8 && !in.empty(); ++i) {
      size_t n = one_request(in, max_body, relay.get());
      if (n == 0) break;
      check(n <= in.size());
      in.remove_prefix(n);
    }
  }
  return 0;
}
