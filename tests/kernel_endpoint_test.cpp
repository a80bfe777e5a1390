#include "acp/kernel/endpoint.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>

namespace {

using acp::kernel::Endpoint;
using acp::kernel::parse_endpoint;

TEST(KernelEndpoint, ParsesIpv4AsMapped) {
  auto r = parse_endpoint("127.0.0.1:8443");
  ASSERT_TRUE(r.ok()) << r.error().message();
  const std::array<uint8_t, 16> want = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
  EXPECT_EQ(r->addr, want);
  EXPECT_EQ(r->port, 8443);
  EXPECT_EQ(r->proto, ACP_PROTO_TCP);
  EXPECT_TRUE(acp::kernel::is_ipv4(*r));
}

TEST(KernelEndpoint, ParsesProtocolSuffix) {
  auto udp = parse_endpoint("127.0.0.1:53/udp");
  ASSERT_TRUE(udp.ok());
  EXPECT_EQ(udp->proto, ACP_PROTO_UDP);
  auto tcp = parse_endpoint("[::1]:8443/tcp");
  ASSERT_TRUE(tcp.ok());
  EXPECT_EQ(tcp->proto, ACP_PROTO_TCP);
}

TEST(KernelEndpoint, ParsesIpv6) {
  auto r = parse_endpoint("[::1]:8443");
  ASSERT_TRUE(r.ok()) << r.error().message();
  std::array<uint8_t, 16> want{};
  want[15] = 1;
  EXPECT_EQ(r->addr, want);
  EXPECT_FALSE(acp::kernel::is_ipv4(*r));
}

TEST(KernelEndpoint, MappedIpv6IsTheIpv4Endpoint) {
  auto a = parse_endpoint("[::ffff:127.0.0.1]:8443");
  auto b = parse_endpoint("127.0.0.1:8443");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_EQ(acp::kernel::to_string(*a), "127.0.0.1:8443/tcp");
}

TEST(KernelEndpoint, PrintsAndRoundTrips) {
  for (const char* s : {"127.0.0.1:8443/tcp", "10.1.2.3:53/udp", "[::1]:8443/tcp",
                        "[2001:db8::5]:65535/udp", "0.0.0.0:1/tcp"}) {
    auto r = parse_endpoint(s);
    ASSERT_TRUE(r.ok()) << s << ": " << r.error().message();
    EXPECT_EQ(acp::kernel::to_string(*r), s);
    auto again = parse_endpoint(acp::kernel::to_string(*r));
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(*again, *r);
  }
}

TEST(KernelEndpoint, AbiRoundTripZeroesPad) {
  auto r = parse_endpoint("[::1]:8443/udp");
  ASSERT_TRUE(r.ok());
  acp_endpoint k = acp::kernel::to_abi(*r);
  EXPECT_EQ(k.pad, 0);
  EXPECT_EQ(k.port, 8443);  // host byte order, as the ABI says
  EXPECT_EQ(k.proto, ACP_PROTO_UDP);
  EXPECT_EQ(k.addr[15], 1);
  EXPECT_EQ(acp::kernel::from_abi(k), *r);
}

TEST(KernelEndpoint, FromSocketForms) {
  in_addr a{};
  ASSERT_EQ(inet_pton(AF_INET, "192.0.2.7", &a), 1);
  Endpoint e = acp::kernel::endpoint_from_ip4(a.s_addr, 80);
  EXPECT_EQ(acp::kernel::to_string(e), "192.0.2.7:80/tcp");
}

struct BadCase {
  const char* text;
  const char* mentions;
};
// Readable (and stable) test names in ctest: the text, not the struct's bytes.
void PrintTo(const BadCase& c, std::ostream* os) {
  *os << '"' << c.text << '"';
}

class KernelEndpointErrors : public ::testing::TestWithParam<BadCase> {};

TEST_P(KernelEndpointErrors, RejectsWithTheValueNamed) {
  auto r = parse_endpoint(GetParam().text);
  ASSERT_FALSE(r.ok()) << GetParam().text;
  const std::string msg = r.error().message();
  EXPECT_NE(msg.find(std::string("\"") + GetParam().text + "\""), std::string::npos) << msg;
  EXPECT_NE(msg.find(GetParam().mentions), std::string::npos) << msg;
  EXPECT_EQ(r.error().err, EINVAL);
}

INSTANTIATE_TEST_SUITE_P(
    Kernel, KernelEndpointErrors,
    ::testing::Values(
        BadCase{"", "expected ADDR:PORT"}, BadCase{"127.0.0.1", "missing \":PORT\""},
        BadCase{"127.0.0.1:0", "out of range"}, BadCase{"127.0.0.1:65536", "out of range"},
        BadCase{"127.0.0.1:-1", "not a number"}, BadCase{"127.0.0.1:80x", "not a number"},
        BadCase{"127.0.0.1:", "missing port"},
        BadCase{"localhost:80", "host names are not resolved"},
        BadCase{"example.com:443", "not a numeric IPv4"}, BadCase{"127.1:80", "not a numeric IPv4"},
        BadCase{"::1:8443", "needs brackets"}, BadCase{"[::1]8443", "missing \":PORT\""},
        BadCase{"[::1:8443", "missing ']'"}, BadCase{"[127.0.0.1]:80", "not a numeric IPv6"},
        BadCase{"[fe80::1%eth0]:80", "not a numeric IPv6"},
        BadCase{"127.0.0.1:80/sctp", "not tcp or udp"}, BadCase{":80", "missing address"}));

}  // namespace
