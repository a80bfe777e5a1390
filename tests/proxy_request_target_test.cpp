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
  for (const char* a :
       {"127.0.0.1", "127.1.2.3", "0.0.0.0", "0.1.2.3", "169.254.169.254", "224.0.0.1",
        "239.255.255.250", "255.255.255.255", "10.0.0.1", "10.255.255.255", "172.16.0.1",
        "172.31.255.254", "192.168.1.1", "100.64.0.1", "100.127.255.254", "192.0.0.8", "192.0.2.1",
        "198.51.100.7", "203.0.113.9", "198.18.0.1", "198.19.255.255", "192.88.99.1", "240.0.0.1",
        "250.1.2.3", "::1", "::", "fe80::1", "febf::1", "fc00::1", "fd12:3456::1", "fec0::1",
        "ff02::1", "2001:db8::1", "3fff::1", "100::1", "2001:2::1",
        // Forms that embed an IPv4 address: judged by it, or refused.
        "::ffff:127.0.0.1", "::ffff:169.254.1.1", "::ffff:10.1.2.3", "::127.0.0.1", "::10.0.0.1",
        "64:ff9b::7f00:1", "64:ff9b::a00:1", "2002:7f00:1::1", "2002:c0a8:101::", "64:ff9b:1::1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2"})
    EXPECT_TRUE(restricted_address_reason(make_address(a))) << a;
  for (const char* a :
       {"93.184.216.34", "8.8.8.8", "1.1.1.1", "172.15.255.255", "172.32.0.1", "100.63.255.255",
        "100.128.0.1", "198.17.255.255", "198.20.0.1", "223.255.255.255", "2606:4700::1111",
        "2a00:1450::1", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1", "::8.8.8.8"})
    EXPECT_FALSE(restricted_address_reason(make_address(a))) << a;
  EXPECT_EQ(*restricted_address_reason(make_address("10.0.0.1")), "a private address (RFC 1918)");
  EXPECT_EQ(*restricted_address_reason(make_address("64:ff9b::a00:1")),
            "a private address (RFC 1918) (NAT64 64:ff9b::/96)");
}

TEST(ProxyAddress, MappedIpv4IsTheIpv4AddressAndNothingElseChanges) {
  using boost::asio::ip::make_address;
  EXPECT_EQ(unmapped(make_address("::ffff:127.0.0.1")), make_address("127.0.0.1"));
  EXPECT_TRUE(unmapped(make_address("::ffff:10.1.2.3")).is_v4());
  for (const char* a : {"127.0.0.1", "::1", "::127.0.0.1", "64:ff9b::7f00:1", "2001:db8::1"})
    EXPECT_EQ(unmapped(make_address(a)), make_address(a)) << a;
}

// Every spelling of 127.0.0.1 that a resolver or a browser accepts is one host.
TEST(ProxyRequestTarget, EveryIpv4SpellingIsTheDottedQuad) {
  for (const char* h :
       {"127.0.0.1", "127.1", "127.0.1", "2130706433", "0x7f000001", "0X7F000001", "0x7f.1",
        "0x7f.0.0.1", "0177.0.0.1", "0177.0.0.01", "017700000001", "0x7f.0.0x0.0001", "127.0.0.1.",
        "0x7F.1.", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[::FFFF:7F00:0001]",
        "[0:0:0:0:0:ffff:127.0.0.1]", "::ffff:127.0.0.1",
        // UTS #46 maps full-width digits and the ideographic full stop to ASCII.
        "\xef\xbc\x91\xef\xbc\x92\xef\xbc\x97.0.0.1",
        "127\xe3\x80\x82"
        "0\xe3\x80\x82"
        "0\xe3\x80\x82"
        "1"}) {
    auto c = canonical_host(h);
    ASSERT_TRUE(c.ok()) << h << ": " << c.error().message();
    EXPECT_EQ(*c, "127.0.0.1") << h;
    auto t =
        parse_absolute_url(std::string("http://") +
                           (std::string_view(h).find(':') != std::string_view::npos && h[0] != '['
                                ? "[" + std::string(h) + "]"
                                : std::string(h)) +
                           ":8080/x");
    ASSERT_TRUE(t.ok()) << h << ": " << t.error().message();
    EXPECT_EQ(t->host, "127.0.0.1");
    EXPECT_FALSE(t->ipv6_literal);
    EXPECT_EQ(t->host_header(), "127.0.0.1:8080");
  }
  EXPECT_EQ(*canonical_host("0"), "0.0.0.0");
  EXPECT_EQ(*canonical_host("4294967295"), "255.255.255.255");
  EXPECT_EQ(*canonical_host("10.0xa"), "10.0.0.10");
  EXPECT_EQ(*canonical_host("1.2.3.0x"), "1.2.3.0");  // WHATWG: "0x" alone is 0
  // Ends in a number but is no address: refused, never resolved as a name.
  for (const char* h : {"4294967296", "256.0.0.1", "1.2.3.4.5", "1.2.3.256", "1.2.65536",
                        "1.16777216", "08.0.0.1", "0x7g.0.0.1", "example.123", "example.0x1f",
                        "a.b.09", "0xffffffff1", "99999999999999999999999"}) {
    auto c = canonical_host(h);
    EXPECT_FALSE(c.ok()) << h << " -> " << (c.ok() ? *c : "");
    if (!c.ok()) {
      EXPECT_NE(c.error().message().find("ends in a number"), std::string::npos) << h;
    }
    EXPECT_FALSE(parse_authority(std::string(h) + ":80").ok()) << h;
  }
  // A number elsewhere is fine; so is a label that is not a number in any base.
  EXPECT_EQ(*canonical_host("123.example"), "123.example");
  EXPECT_FALSE(canonical_host("v1.0x").ok());  // "0x" is a number: v1 would be its first part
  EXPECT_EQ(*canonical_host("a.1e5"), "a.1e5");
  EXPECT_EQ(*canonical_host("host.0xz"), "host.0xz");
}

TEST(ProxyRequestTarget, Ipv6InOneSpellingAndZonesRefused) {
  EXPECT_EQ(*canonical_host("[2001:DB8:0:0:0:0:0:1]"), "2001:db8::1");
  EXPECT_EQ(*canonical_host("[2001:db8::0:1]"), "2001:db8::1");
  EXPECT_EQ(*canonical_host("2001:0db8::1"), "2001:db8::1");
  EXPECT_EQ(*canonical_host("[fd00:0:0:0::a]"), "fd00::a");
  EXPECT_FALSE(canonical_host("[fe80::1%25eth0]").ok());
  EXPECT_FALSE(canonical_host("[::1").ok());
  EXPECT_FALSE(canonical_host("[]").ok());
  auto v6 = parse_authority("[2001:DB8::0001]:443");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "2001:db8::1");
  EXPECT_TRUE(v6->ipv6_literal);
  EXPECT_EQ(v6->host_header(443), "[2001:db8::1]");
  auto mapped = parse_authority("[::ffff:10.0.0.1]:443");
  ASSERT_TRUE(mapped.ok());
  EXPECT_EQ(mapped->host, "10.0.0.1");
  EXPECT_FALSE(mapped->ipv6_literal);
}

TEST(ProxyRequestTarget, InternationalNamesInTheirAsciiForm) {
  EXPECT_EQ(*canonical_host("B\xc3\xbc"
                            "cher.DE"),
            "xn--bcher-kva.de");
  EXPECT_EQ(*canonical_host("xn--bcher-kva.de"), "xn--bcher-kva.de");
  EXPECT_EQ(*canonical_host("XN--BCHER-KVA.de."), "xn--bcher-kva.de");
  // IDNA2008 non-transitional: sharp s stays (fa\xc3\x9f.de is not fass.de).
  EXPECT_EQ(*canonical_host("fa\xc3\x9f.de"), "xn--fa-hia.de");
  EXPECT_FALSE(canonical_host("\xff\xfe.example").ok());  // not UTF-8
  EXPECT_FALSE(canonical_host("a\xe2\x80\xae"
                              "b.example")
                   .ok());  // U+202E is disallowed
}

// RFC 3986 6.2.2 plus the refusals: each line is one spelling and what it is judged as.
TEST(ProxyRequestTarget, PathsInCanonicalForm) {
  const std::pair<const char*, const char*> cases[] = {
      {"/admin/x", "/admin/x"},
      {"/%61dmin/x", "/admin/x"},
      {"/%41DMIN/x", "/ADMIN/x"},
      {"/./admin/x", "/admin/x"},
      {"//admin/x", "/admin/x"},
      {"/admin//x", "/admin/x"},
      {"/pub/../admin/x", "/admin/x"},
      {"/pub/%2e%2e/admin/x", "/admin/x"},
      {"/pub/%2E%2E/admin/x", "/admin/x"},
      {"/pub/.%2e/admin/x", "/admin/x"},
      {"/../../admin/x", "/admin/x"},
      {"/admin/./x/.", "/admin/x/"},
      {"/admin/x/..", "/admin/"},
      {"/a/b/../../..", "/"},
      {"/", "/"},
      {"/...", "/..."},
      {"/a%7e%7Eb", "/a~~b"},
      {"/a%3ab%3Fc", "/a%3Ab%3Fc"},
      {"/a%3bb", "/a%3Bb"},
      {"/%25", "/%25"},
      {"/%2561dmin", "/%2561dmin"},  // one level of escapes only: %25 stays
      {"/caf\xc3\xa9", "/caf%C3%A9"},
      // A bidi override never stays raw (nor is an escaped one decoded): the page and the audit
      // log show it as %E2%80%AE.
      {"/report\xe2\x80\xae"
       "fdp.exe",
       "/report%E2%80%AEfdp.exe"},
      {"/report%e2%80%aefdp.exe", "/report%E2%80%AEfdp.exe"},
      {"/a\"b<c>{d}|e^`", "/a%22b%3Cc%3E%7Bd%7D%7Ce%5E%60"},
      {"/a?", "/a"},
      {"/a?x=%2f%2F&y=..%2E/%7e", "/a?x=%2F%2F&y=.../~"},
      {"/a?q=a;b?c//d", "/a?q=a;b?c//d"},
      {"/a?q=%0a", "/a?q=%0A"},
      {"/a?back=\\x", "/a?back=%5Cx"},
      {"/a#frag", "/a"},
      {"/a/../b?x/../y", "/b?x/../y"},
  };
  for (const auto& [in, want] : cases) {
    auto c = canonical_path(in);
    ASSERT_TRUE(c.ok()) << in << ": " << c.error().message();
    EXPECT_EQ(*c, want) << in;
    EXPECT_EQ(*canonical_path(*c), *c) << in;
  }
  const std::pair<const char*, const char*> refused[] = {
      {"/admin%2Fx", "encoded '/'"},
      {"/admin%2fx", "encoded '/'"},
      {"/admin%5Cx", "encoded '\\'"},
      {"/admin\\x", "'\\'"},
      {"/admin;x/y", "';'"},
      {"/..;/admin", "';'"},
      {"/a%00b", "encoded control"},
      {"/a%0d%0ab", "encoded control"},
      {"/a%7f", "encoded control"},
      {"/a%", "malformed escape"},
      {"/a%4", "malformed escape"},
      {"/a%zz", "malformed escape"},
      {"/a%u002e", "malformed escape"},
      {"/a?x=%g0", "malformed escape"},
      {"/a\tb", "control character"},
      {"/a b", "control character"},
      {"admin", "does not start with '/'"},
      {"*", "does not start with '/'"},
      {"", "does not start with '/'"},
  };
  for (const auto& [in, why] : refused) {
    auto c = canonical_path(in);
    ASSERT_FALSE(c.ok()) << in << " -> " << *c;
    EXPECT_NE(c.error().message().find(why), std::string::npos)
        << in << ": " << c.error().message();
  }
  // The absolute form and the origin form inside a tunnel go through the same function.
  auto t = parse_absolute_url("http://h/pub/%2e%2e//%61dmin?%61=1#x");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->path, "/admin?a=1");
  EXPECT_FALSE(parse_absolute_url("http://h/admin%2Fx").ok());
  RequestTarget tunnel{"example.com", 443, "", false};
  auto o = parse_origin_form("/./%61dmin", tunnel);
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->host, "example.com");
  EXPECT_EQ(o->port, 443);
  EXPECT_EQ(o->path, "/admin");
  EXPECT_EQ(o->host_header(443), "example.com");
  EXPECT_FALSE(parse_origin_form("http://other/x", tunnel).ok());
  EXPECT_FALSE(parse_origin_form("/a\\b", tunnel).ok());
}

// canonical(canonical(x)) == canonical(x), and a refused input is refused however often it
// is tried, over pseudo-random compositions of the pieces that make spellings differ.
TEST(ProxyRequestTarget, CanonicalFormIsAFixedPoint) {
  const char* path_pieces[] = {"/",   "//",    ".",   "..",  "%2e", "%2E", "%61", "a",        "A",
                               "%7e", "~",     "?",   "&",   "=",   "%20", "%ff", "\xc3\xa9", "\"",
                               "{",   "%3b",   "%3B", "%25", "%",   "%2f", ";",   "\\",       "#",
                               "x",   "admin", "%41", ":",   "@",   "+",   "%0a"};
  const char* host_pieces[] = {"1",  "0x", "7f", "0",  ".",   "a",   "-",    "_",       "9",
                               "08", "f",  "X",  "00", "255", "256", "xn--", "\xc3\xbc"};
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  auto next = [&] {
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    return seed;
  };
  int paths_ok = 0, hosts_ok = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string p = "/";
    for (int k = static_cast<int>(next() % 8); k >= 0; --k)
      p += path_pieces[next() % std::size(path_pieces)];
    auto c = canonical_path(p);
    if (c.ok()) {
      ++paths_ok;
      ASSERT_EQ(*canonical_path(*c), *c) << p;
      const std::string path_part = c->substr(0, c->find('?'));
      ASSERT_EQ(path_part.find("//"), std::string::npos) << p;
      ASSERT_EQ(path_part.find("/./"), std::string::npos) << p;
      ASSERT_EQ(path_part.find("/../"), std::string::npos) << p;
    }
    std::string h;
    for (int k = static_cast<int>(next() % 6); k >= 0; --k)
      h += host_pieces[next() % std::size(host_pieces)];
    auto ch = canonical_host(h);
    if (ch.ok()) {
      ++hosts_ok;
      ASSERT_EQ(*canonical_host(*ch), *ch) << h;
      ASSERT_EQ(normalize_host(*ch), *ch) << h;
    }
  }
  // The generator reaches both outcomes often.
  EXPECT_GT(paths_ok, 2000);
  EXPECT_GT(hosts_ok, 2000);
}

}  // namespace
