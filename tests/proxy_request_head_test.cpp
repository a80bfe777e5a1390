#include "acp/proxy/request_head.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

using namespace acp::proxy;

// Runs a whole head (up to find_header_end) through parse_request_head.
std::optional<HeadRefusal> check(const std::string& text, uint64_t max_body = 0) {
  auto end = find_header_end(text);
  EXPECT_NE(end, std::string::npos) << text;
  RequestParser p;
  size_t used = 0;
  return parse_request_head(std::string_view(text).substr(0, end), max_body, p, used);
}

TEST(ProxyRequestHead, FindsTheEndOfTheHeaderSection) {
  EXPECT_EQ(find_header_end("GET / HTTP/1.1\r\nHost: x\r\n\r\nbody"), 27u);
  EXPECT_EQ(find_header_end("GET / HTTP/1.1\nHost: x\n\n"), 24u);
  EXPECT_EQ(find_header_end("GET / HTTP/1.1\r\nHost: x\r\n"), std::string::npos);
  EXPECT_EQ(leading_empty_lines("\r\n\n\r\nGET"), 5u);
  EXPECT_EQ(leading_empty_lines("\r\n"), 2u);
  EXPECT_EQ(leading_empty_lines("GET"), 0u);
}

TEST(ProxyRequestHead, AcceptsPlainRequests) {
  RequestParser p;
  size_t used = 0;
  const std::string head = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
  auto r = parse_request_head(head, 0, p, used);
  EXPECT_FALSE(r) << r->reason;
  EXPECT_EQ(used, head.size());
  EXPECT_EQ(p.get().target(), "example.com:443");
  EXPECT_FALSE(check("POST http://x/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"));
  EXPECT_FALSE(check("POST http://x/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"));
  EXPECT_FALSE(check("GET http://x/ HTTP/1.0\r\n\r\n"));
}

TEST(ProxyRequestHead, RefusesAmbiguousFraming) {
  const std::vector<std::string> hostile = {
      "POST http://x/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
      "POST http://x/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
      "POST http://x/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\n",
      "POST http://x/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
      "Transfer-Encoding: chunked\r\n\r\n",
      "POST http://x/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
      "Content-Length: 5\r\n\r\n",
      "GET http://x/ HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
      "POST http://x/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n\tchunked\r\n\r\n",
      "POST http://x/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
      "POST http://x/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
      "GET http://x/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
      "GET http://x/ HTTP/1.1\nHost: x\n\n",  // bare LF
      "POST http://x/ HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
  };
  for (const auto& h : hostile) {
    auto r = check(h);
    ASSERT_TRUE(r) << h;
    EXPECT_EQ(r->status, 400u) << h;
  }
  auto fold = check("GET http://x/ HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n");
  EXPECT_NE(fold->reason.find("folding"), std::string::npos) << fold->reason;
  auto two_hosts = check("GET http://x/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
  EXPECT_NE(two_hosts->reason.find("more than one Host"), std::string::npos) << two_hosts->reason;
}

TEST(ProxyRequestHead, ADeclaredBodyOverTheLimitIs413) {
  auto r = check("POST http://x/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n", 1000);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413u);
  EXPECT_FALSE(check("POST http://x/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", 1000));
  // 0 is unlimited, the largest Content-Length included.
  EXPECT_FALSE(
      check("POST http://x/ HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n"));
}

}  // namespace

namespace {

TEST(ProxyRequestHead, RepeatedHeadersAreReadJoined) {
  RequestParser p;
  size_t used = 0;
  const std::string head =
      "POST /mcp HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nX-A: 1\r\n"
      "accept: text/event-stream\r\nExpect: foo\r\nExpect: 100-Continue\r\n"
      "Content-Length: 0\r\n\r\n";
  ASSERT_FALSE(parse_request_head(head, 0, p, used));
  const auto& req = p.get();
  namespace http = boost::beast::http;
  EXPECT_EQ(field_value(req, http::field::accept), "application/json, text/event-stream");
  EXPECT_EQ(field_value(req, "ACCEPT"), "application/json, text/event-stream");
  EXPECT_EQ(field_value(req, http::field::content_type), "");
  EXPECT_TRUE(has_token(field_value(req, http::field::expect), "100-continue"));
  EXPECT_FALSE(has_token(field_value(req, http::field::accept), "text/html"));
}

TEST(ProxyRequestHead, TunnelBytesAreToldApart) {
  auto kind = [](std::string_view s) { return classify_tunnel_bytes(s, 64); };
  EXPECT_EQ(kind("GET /admin/x HTTP/1.1\r\nHost: a\r\n\r\n"), TunnelBytes::Http);
  EXPECT_EQ(kind("\r\nPOST /mcp HTTP/1.0\n"), TunnelBytes::Http);
  EXPECT_EQ(kind("M-SEARCH * HTTP/1.1\r\n"), TunnelBytes::Http);
  // Prefixes of a request line wait for more.
  for (std::string_view p : {"", "G", "GET", "GET ", "GET /a", "GET /a ", "GET /a HTTP/1",
                             "GET /a HTTP/1.1", "GET /a HTTP/1.1\r", "\r\n"})
    EXPECT_EQ(kind(p), TunnelBytes::NeedMore) << p;
  // TLS records stay tunnels.
  EXPECT_EQ(kind(std::string_view("\x16\x03\x01\x02\x00", 5)), TunnelBytes::Tls);
  EXPECT_EQ(kind("\x16"), TunnelBytes::NeedMore);
  // Everything else, including what a lenient server would still serve as HTTP.
  for (std::string_view o :
       {"SSH-2.0-OpenSSH_9.2\r\n", "GET /admin/x\r\n", "GET\t/admin/x\tHTTP/1.1\r\n",
        "GET /admin/x http/1.1\r\n", "GET  /admin/x HTTP/1.1\r\n", "GET /x HTTP/1.1 \r\n",
        "*1\r\n$4\r\nPING\r\n", "GET /x HTTP/11\r\n", "\x16\x01",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"})
    EXPECT_EQ(kind(o), TunnelBytes::Other) << o;
  // A request line longer than the limit is not waited for.
  EXPECT_EQ(kind("GET /" + std::string(100, 'a')), TunnelBytes::Other);
  EXPECT_EQ(kind(std::string(100, 'G')), TunnelBytes::Other);
  EXPECT_EQ(kind(std::string(100, '\n')), TunnelBytes::Other);
}

}  // namespace
