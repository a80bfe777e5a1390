// The session's DNS on a docker network's gateway (open_gateway_dns, ProxyConfig::gateway_dns)
// without docker: the "gateway" is 127.0.0.2 in 127.0.0.0/29 (all of 127/8 is the host's), on a
// free port. Senders in the subnet are answered by the policy, over UDP and TCP; the gateway
// itself and senders outside the subnet get nothing, and are counted as foreign.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "acp/proxy/proxy_server.hpp"
#include "acp/util/unique_fd.hpp"
#include "proxy_test_support.hpp"

namespace {

using namespace acp;
using namespace acp::proxy;
using namespace acp::proxy::testing;

constexpr const char* kGateway = "127.0.0.2";
constexpr const char* kSubnet = "127.0.0.0/29";

std::vector<uint8_t> query(const std::string& name) {
  std::vector<uint8_t> q = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
  size_t start = 0;
  while (start < name.size()) {
    size_t dot = name.find('.', start);
    if (dot == std::string::npos) dot = name.size();
    q.push_back(static_cast<uint8_t>(dot - start));
    q.insert(q.end(), name.begin() + static_cast<long>(start),
             name.begin() + static_cast<long>(dot));
    start = dot + 1;
  }
  q.insert(q.end(), {0, 0, 1, 0, 1});  // root, A, IN
  return q;
}

// A UDP client bound to `addr` (an address of lo).
UniqueFd client(const char* addr) {
  UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  ::inet_pton(AF_INET, addr, &sa.sin_addr);
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0) << addr;
  timeval tv{5, 0};  // a bound on a lost reply, not an ordering
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

class GatewayDnsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dns = open_gateway_dns(io_, kGateway, kSubnet, 0);
    ASSERT_TRUE(dns.ok()) << dns.error().message();
    port_ = (*dns)->sockets.front().local_endpoint().port();
    ProxyConfig cfg;
    cfg.listen = {tcp::endpoint(net::ip::make_address("127.0.0.1"), 0)};
    cfg.session_id = "test-session";
    cfg.gateway_dns = *dns;
    cfg.dns_may_resolve = [](const std::string& name) { return name == "allowed.test"; };
    server_ = std::make_unique<ProxyServer>(io_, cfg, judge_);
    auto st = server_->start();
    ASSERT_TRUE(st.ok()) << st.error().message();
    thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    if (!thread_.joinable()) return;
    net::post(io_, [this] { server_->stop(); });
    net::post(io_, [this] { io_.stop(); });
    thread_.join();
  }

  void send(const UniqueFd& fd, const std::string& name) {
    const auto q = query(name);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port_);
    ::inet_pton(AF_INET, kGateway, &to.sin_addr);
    ASSERT_EQ(
        ::sendto(fd.get(), q.data(), q.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to),
        static_cast<ssize_t>(q.size()));
  }
  // The reply's rcode and answer count; -1 and 0 when none came.
  std::pair<int, int> reply(const UniqueFd& fd, int flags = 0) {
    uint8_t buf[512];
    const ssize_t n = ::recv(fd.get(), buf, sizeof buf, flags);
    if (n < 12) return {-1, 0};
    return {buf[3] & 0x0f, (buf[6] << 8) | buf[7]};
  }

  net::io_context io_;
  ScriptedJudge judge_{io_};
  std::unique_ptr<ProxyServer> server_;
  std::thread thread_;
  uint16_t port_ = 0;
};

TEST_F(GatewayDnsTest, ASenderOnTheNetworkIsAnsweredByThePolicy) {
  auto c = client("127.0.0.3");
  send(c, "allowed.test");
  EXPECT_EQ(reply(c), std::make_pair(0, 1));  // a synthetic address
  send(c, "secret.exfil.test");
  EXPECT_EQ(reply(c), std::make_pair(3, 0));  // NXDOMAIN
  const auto n = server_->counters();
  EXPECT_EQ(n.dns_answered, 1u);
  EXPECT_EQ(n.dns_denied, 1u);
  EXPECT_EQ(n.foreign, 0u);
}

TEST_F(GatewayDnsTest, TheGatewayItselfAndSendersOffTheNetworkGetNothing) {
  auto outside = client("127.0.0.9");
  auto host = client(kGateway);
  auto inside = client("127.0.0.6");
  send(outside, "allowed.test");
  send(host, "allowed.test");
  // One socket, one thread: once the later query is answered, the earlier ones were judged.
  send(inside, "allowed.test");
  EXPECT_EQ(reply(inside), std::make_pair(0, 1));
  EXPECT_EQ(reply(outside, MSG_DONTWAIT).first, -1);
  EXPECT_EQ(reply(host, MSG_DONTWAIT).first, -1);
  EXPECT_EQ(server_->counters().foreign, 2u);
}

// A TCP client bound to `addr`, connected to the responder's TCP port.
UniqueFd tcp_client(const char* addr, uint16_t port) {
  UniqueFd t(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  ::inet_pton(AF_INET, addr, &sa.sin_addr);
  EXPECT_EQ(::bind(t.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  timeval tv{5, 0};
  ::setsockopt(t.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  ::inet_pton(AF_INET, kGateway, &to.sin_addr);
  EXPECT_EQ(::connect(t.get(), reinterpret_cast<sockaddr*>(&to), sizeof to), 0);
  return t;
}

// The same over TCP (RFC 7766 framing): a sender on the network is answered, one off it is
// closed without a byte.
TEST_F(GatewayDnsTest, OverTcpTooAndOnlyForTheNetwork) {
  auto ask = [&](const char* from, const std::string& name) -> std::pair<int, int> {
    auto t = tcp_client(from, port_);
    auto q = query(name);
    q.insert(q.begin(), {0, static_cast<uint8_t>(q.size())});
    EXPECT_EQ(::send(t.get(), q.data(), q.size(), MSG_NOSIGNAL), static_cast<ssize_t>(q.size()));
    uint8_t buf[514];
    size_t got = 0;
    for (ssize_t n;
         got < sizeof buf && (n = ::recv(t.get(), buf + got, sizeof buf - got, 0)) > 0;) {
      got += static_cast<size_t>(n);
      if (got >= 2 && got >= 2u + ((buf[0] << 8) | buf[1])) break;
    }
    if (got < 14) return {-1, static_cast<int>(got)};
    return {buf[5] & 0x0f, (buf[8] << 8) | buf[9]};
  };
  EXPECT_EQ(ask("127.0.0.3", "allowed.test"), std::make_pair(0, 1));
  EXPECT_EQ(ask("127.0.0.3", "secret.exfil.test"), std::make_pair(3, 0));
  EXPECT_EQ(ask("127.0.0.9", "secret.exfil.test"), std::make_pair(-1, 0));
  EXPECT_EQ(server_->counters().foreign, 1u);
}

TEST(GatewayDns, RefusesASubnetThatDoesNotHoldTheGateway) {
  net::io_context io;
  for (const auto& [gw, subnet] :
       std::vector<std::pair<std::string, std::string>>{{"10.0.0.1", "10.0.1.0/24"},
                                                        {"10.0.0.1", "10.0.0.0"},
                                                        {"10.0.0.1", "10.0.0.1/24"},
                                                        {"10.0.0.1", "10.0.0.0/31"},
                                                        {"::1", "10.0.0.0/24"},
                                                        {"10.0.0.1", "nonsense/24"}}) {
    auto r = open_gateway_dns(io, gw, subnet, 0);
    ASSERT_FALSE(r.ok()) << gw << " " << subnet;
    EXPECT_NE(r.error().message().find("the session's DNS"), std::string::npos);
  }
}

}  // namespace
