#include "acp/proxy/request_target.hpp"

#include <gtest/gtest.h>

namespace {

using namespace acp::proxy;
using boost::asio::ip::make_address;

TEST(ProxyRequestTarget, NormalizesHosts) {
  EXPECT_EQ(normalize_host("Example.COM."), "example.com");
  EXPECT_EQ(normalize_host("[::1]"), "::1");
  EXPECT_EQ(normalize_host("[0:0::1]"), "::1");
  EXPECT_EQ(normalize_host("a_b-c.d"), "a_b-c.d");
  EXPECT_EQ(normalize_host(""), "");
  EXPECT_EQ(normalize_host("."), "");
  EXPECT_EQ(normalize_host("a..b"), "");
  // Found by fuzz_request_target: "Example..:443" gave the host "example." (not normalized:
  // the policy and the grants saw a name the proxy did not).
  EXPECT_EQ(normalize_host("Example.."), "");
  EXPECT_FALSE(parse_authority("Example..:443").ok());
  EXPECT_FALSE(parse_absolute_url("http://example.com../").ok());
  // Found by fuzz_request_target: IPv6 zone ids did not read back as written.
  EXPECT_EQ(normalize_host("[fe80::1%-5eth0]"), "");
  EXPECT_EQ(normalize_host("[fe80::1%lo]"), "");
  EXPECT_FALSE(parse_authority("[fe80::1%25eth0]:80").ok());
  EXPECT_FALSE(parse_absolute_url("http://[::1%lo]/").ok());
  EXPECT_EQ(normalize_host("evil.com/x"), "");
  EXPECT_EQ(normalize_host("a b"), "");
  EXPECT_EQ(normalize_host("[not-v6]"), "");
}

TEST(ProxyRequestTarget, ParsesConnectAuthority) {
  auto t = parse_authority("Example.com.:443");
  ASSERT_TRUE(t.ok()) << t.error().message();
  EXPECT_EQ(t->host, "example.com");
  EXPECT_EQ(t->port, 443);
  EXPECT_TRUE(t->path.empty());
  auto v6 = parse_authority("[::1]:8443");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_TRUE(v6->ipv6_literal);
  EXPECT_EQ(v6->port, 8443);
  EXPECT_FALSE(parse_authority("example.com").ok());  // port required
  EXPECT_FALSE(parse_authority("::1:443").ok());      // unbracketed IPv6
  EXPECT_FALSE(parse_authority("example.com:0").ok());
  EXPECT_FALSE(parse_authority("example.com:65536").ok());
  EXPECT_FALSE(parse_authority("example.com:44x").ok());
  EXPECT_FALSE(parse_authority("user@example.com:443").ok());
  EXPECT_FALSE(parse_authority("[::1]443").ok());
}

TEST(ProxyRequestTarget, ParsesAbsoluteUrls) {
  auto t = parse_absolute_url("http://API.Example.com/v1/x?q=1#frag");
  ASSERT_TRUE(t.ok()) << t.error().message();
  EXPECT_EQ(t->host, "api.example.com");
  EXPECT_EQ(t->port, 80);
  EXPECT_EQ(t->path, "/v1/x?q=1");
  EXPECT_EQ(t->host_header(), "api.example.com");
  auto bare = parse_absolute_url("HTTP://h:8080");
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(bare->path, "/");
  EXPECT_EQ(bare->host_header(), "h:8080");
  auto q = parse_absolute_url("http://h?x");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->path, "/?x");
  auto v6 = parse_absolute_url("http://[::1]:81/p");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->host_header(), "[::1]:81");
  EXPECT_FALSE(parse_absolute_url("https://h/").ok());
  EXPECT_FALSE(parse_absolute_url("ftp://h/").ok());
  EXPECT_FALSE(parse_absolute_url("/relative").ok());
  EXPECT_FALSE(parse_absolute_url("http://user:pw@h/").ok());
  EXPECT_FALSE(parse_absolute_url("http:///x").ok());
  EXPECT_FALSE(parse_absolute_url("http://h:99999/").ok());
}

TEST(ProxyRequestTarget, ClassifiesRestrictedAddresses) {
  EXPECT_TRUE(restricted_address_reason(make_address("127.0.0.1")));
  EXPECT_TRUE(restricted_address_reason(make_address("127.1.2.3")));
  EXPECT_TRUE(restricted_address_reason(make_address("0.0.0.0")));
  EXPECT_TRUE(restricted_address_reason(make_address("0.1.2.3")));
  EXPECT_TRUE(restricted_address_reason(make_address("169.254.169.254")));
  EXPECT_TRUE(restricted_address_reason(make_address("224.0.0.1")));
  EXPECT_TRUE(restricted_address_reason(make_address("255.255.255.255")));
  EXPECT_TRUE(restricted_address_reason(make_address("::1")));
  EXPECT_TRUE(restricted_address_reason(make_address("::")));
  EXPECT_TRUE(restricted_address_reason(make_address("fe80::1")));
  EXPECT_TRUE(restricted_address_reason(make_address("ff02::1")));
  EXPECT_TRUE(restricted_address_reason(make_address("::ffff:127.0.0.1")));
  EXPECT_TRUE(restricted_address_reason(make_address("::ffff:169.254.1.1")));
  EXPECT_FALSE(restricted_address_reason(make_address("93.184.216.34")));
  EXPECT_FALSE(restricted_address_reason(make_address("10.0.0.1")));
  EXPECT_FALSE(restricted_address_reason(make_address("2001:db8::1")));
  EXPECT_FALSE(restricted_address_reason(make_address("::ffff:8.8.8.8")));
}

}  // namespace
