#include "acp/proxy/client_hello.hpp"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>

#include <memory>
#include <string>

namespace {

using acp::proxy::client_hello_server_name;
using acp::proxy::HelloScan;

// The bytes a real OpenSSL client sends first, asking for `sni` (none when empty).
std::string real_client_hello(const std::string& sni) {
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                        SSL_CTX_free);
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx.get()), SSL_free);
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl.get(), in, out);  // ssl owns both
  SSL_set_connect_state(ssl.get());
  if (!sni.empty()) SSL_set_tlsext_host_name(ssl.get(), sni.c_str());
  (void)SSL_do_handshake(ssl.get());  // wants to read: the ClientHello is written
  char* data = nullptr;
  const long n = BIO_get_mem_data(out, &data);
  return std::string(data, static_cast<size_t>(n));
}

TEST(ProxyClientHello, ReadsTheServerNameOfARealClientHello) {
  const auto hello = real_client_hello("api.example.com");
  ASSERT_GT(hello.size(), 5u);
  auto r = client_hello_server_name(hello);
  EXPECT_EQ(r.scan, HelloScan::Name);
  EXPECT_EQ(r.name, "api.example.com");
}

TEST(ProxyClientHello, EveryPrefixNeedsMoreAndNeverANameItDoesNotHold) {
  const auto hello = real_client_hello("api.example.com");
  for (size_t n = 0; n < hello.size(); ++n)
    EXPECT_EQ(client_hello_server_name(hello.substr(0, n)).scan, HelloScan::NeedMore) << n;
}

TEST(ProxyClientHello, AHelloWithoutSniHasNoName) {
  EXPECT_EQ(client_hello_server_name(real_client_hello("")).scan, HelloScan::NoName);
}

TEST(ProxyClientHello, OtherBytesAreNotTls) {
  EXPECT_EQ(client_hello_server_name("GET / HTTP/1.1\r\n").scan, HelloScan::NotTls);
  EXPECT_EQ(client_hello_server_name("SSH-2.0-x\r\n").scan, HelloScan::NotTls);
  EXPECT_EQ(client_hello_server_name(std::string("\x16\x02", 2)).scan, HelloScan::NotTls);
  // A handshake record whose first message is no ClientHello.
  EXPECT_EQ(client_hello_server_name(std::string("\x16\x03\x01\x00\x04\x02", 6)).scan,
            HelloScan::NotTls);
  // A record longer than TLS allows.
  EXPECT_EQ(client_hello_server_name(std::string("\x16\x03\x01\xff\xff", 5)).scan,
            HelloScan::NotTls);
}

TEST(ProxyClientHello, ANameNoRuleCouldMeanIsNoName) {
  auto hello = real_client_hello("abc.example.com");
  const auto at = hello.find("abc.example.com");
  ASSERT_NE(at, std::string::npos);
  hello[at + 3] = '/';  // "abc/example.com"
  EXPECT_EQ(client_hello_server_name(hello).scan, HelloScan::NoName);
  hello[at + 3] = '\0';
  EXPECT_EQ(client_hello_server_name(hello).scan, HelloScan::NoName);
}

TEST(ProxyClientHello, LengthsThatOverrunTheRecordAreNoName) {
  auto hello = real_client_hello("api.example.com");
  // The extensions' total length (after the compression methods) made huge: every read stays
  // inside the record.
  const auto at = hello.find("api.example.com");
  ASSERT_NE(at, std::string::npos);
  hello[at - 2] = '\x7f';  // the host_name's length
  EXPECT_EQ(client_hello_server_name(hello).scan, HelloScan::NoName);
}

}  // namespace
