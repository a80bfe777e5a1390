// Who is talking to the proxy, and which listener an upstream connect would reach: the
// sock_diag request and reply parser on crafted bytes, then the real kernel on loopback
// sockets this test makes, and the registry of ACP's own listeners.
#include "acp/proxy/peer_identity.hpp"

#include <gtest/gtest.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>

#include "acp/cgroup/mounts.hpp"
#include "acp/proxy/own_endpoints.hpp"

namespace {

using namespace acp;
using namespace acp::proxy;
namespace net = boost::asio;
using tcp = net::ip::tcp;
namespace fs = std::filesystem;

tcp::endpoint ep(const char* addr, uint16_t port) {
  return {net::ip::make_address(addr), port};
}

// One SOCK_DIAG_BY_FAMILY reply message as the kernel lays it out, with `attrs` appended.
std::vector<uint8_t> diag_reply(
    uint32_t seq, uint8_t state, uint32_t inode,
    const std::vector<std::pair<uint16_t, std::vector<uint8_t>>>& attrs) {
  inet_diag_msg m{};
  m.idiag_family = AF_INET;
  m.idiag_state = state;
  m.idiag_inode = inode;
  std::vector<uint8_t> body(NLMSG_ALIGN(sizeof m));
  std::memcpy(body.data(), &m, sizeof m);
  for (const auto& [type, payload] : attrs) {
    nlattr a{static_cast<uint16_t>(NLA_HDRLEN + payload.size()), type};
    size_t at = body.size();
    body.resize(at + NLA_ALIGN(a.nla_len));
    std::memcpy(body.data() + at, &a, sizeof a);
    std::memcpy(body.data() + at + NLA_HDRLEN, payload.data(), payload.size());
  }
  nlmsghdr h{};
  h.nlmsg_len = static_cast<uint32_t>(NLMSG_HDRLEN + body.size());
  h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  h.nlmsg_seq = seq;
  std::vector<uint8_t> out(NLMSG_HDRLEN);
  std::memcpy(out.data(), &h, sizeof h);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

std::vector<uint8_t> u64_bytes(uint64_t v) {
  std::vector<uint8_t> b(8);
  std::memcpy(b.data(), &v, 8);
  return b;
}

std::vector<uint8_t> error_reply(uint32_t seq, int err) {
  nlmsghdr h{};
  nlmsgerr e{};
  e.error = -err;
  h.nlmsg_len = NLMSG_LENGTH(sizeof e);
  h.nlmsg_type = NLMSG_ERROR;
  h.nlmsg_seq = seq;
  std::vector<uint8_t> out(h.nlmsg_len);
  std::memcpy(out.data(), &h, sizeof h);
  std::memcpy(out.data() + NLMSG_HDRLEN, &e, sizeof e);
  return out;
}

TEST(PeerIdentityParse, CgroupIdAndInodeFromTheReply) {
  auto r = diag_reply(7, TCP_ESTABLISHED, 4242,
                      {{INET_DIAG_SHUTDOWN, {0}}, {INET_DIAG_CGROUP_ID, u64_bytes(0x1234567890)}});
  auto info = parse_sock_diag_reply(r, 7);
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(info->state, TCP_ESTABLISHED);
  EXPECT_EQ(info->inode, 4242u);
  ASSERT_TRUE(info->cgroup_id);
  EXPECT_EQ(*info->cgroup_id, 0x1234567890u);
}

TEST(PeerIdentityParse, NoCgroupAttributeIsReported) {
  auto info = parse_sock_diag_reply(diag_reply(1, TCP_ESTABLISHED, 1, {}), 1);
  ASSERT_TRUE(info);
  EXPECT_FALSE(info->cgroup_id);
}

TEST(PeerIdentityParse, KernelErrorKeepsItsErrno) {
  auto info = parse_sock_diag_reply(error_reply(3, ENOENT), 3);
  ASSERT_FALSE(info);
  EXPECT_EQ(info.error().err, ENOENT);
}

TEST(PeerIdentityParse, OtherRequestsAreSkippedAndMalformedRepliesRefused) {
  auto stale = diag_reply(1, TCP_ESTABLISHED, 1, {{INET_DIAG_CGROUP_ID, u64_bytes(1)}});
  auto mine = diag_reply(2, TCP_ESTABLISHED, 2, {{INET_DIAG_CGROUP_ID, u64_bytes(2)}});
  auto both = stale;
  both.insert(both.end(), mine.begin(), mine.end());
  auto info = parse_sock_diag_reply(both, 2);
  ASSERT_TRUE(info);
  EXPECT_EQ(*info->cgroup_id, 2u);
  EXPECT_FALSE(parse_sock_diag_reply(stale, 2));  // no answer to 2

  // Truncated message, truncated attribute, a cgroup id of the wrong size: errors, never a
  // made-up identity.
  auto cut = mine;
  cut.resize(cut.size() - 4);
  EXPECT_FALSE(parse_sock_diag_reply(cut, 2));
  auto bad_attr = diag_reply(2, TCP_ESTABLISHED, 2, {{INET_DIAG_CGROUP_ID, {1, 2, 3, 4}}});
  EXPECT_FALSE(parse_sock_diag_reply(bad_attr, 2));
  auto long_attr = diag_reply(2, TCP_ESTABLISHED, 2, {{INET_DIAG_CGROUP_ID, u64_bytes(5)}});
  // Claim an attribute length beyond the message.
  uint16_t huge = 200;
  std::memcpy(long_attr.data() + NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(inet_diag_msg)), &huge, 2);
  EXPECT_FALSE(parse_sock_diag_reply(long_attr, 2));
  EXPECT_FALSE(parse_sock_diag_reply({}, 2));
}

TEST(PeerIdentityRequest, FourTupleInNetworkOrderAndMappedAskedAsIpv4) {
  auto req = sock_diag_request(ep("::ffff:127.0.0.5", 40000), ep("127.0.0.1", 8443), 9);
  ASSERT_EQ(req.size(), NLMSG_LENGTH(sizeof(inet_diag_req_v2)));
  nlmsghdr h;
  inet_diag_req_v2 r;
  std::memcpy(&h, req.data(), sizeof h);
  std::memcpy(&r, req.data() + NLMSG_HDRLEN, sizeof r);
  EXPECT_EQ(h.nlmsg_type, SOCK_DIAG_BY_FAMILY);
  EXPECT_EQ(h.nlmsg_flags, NLM_F_REQUEST);  // one socket, not a dump
  EXPECT_EQ(h.nlmsg_seq, 9u);
  EXPECT_EQ(r.sdiag_family, AF_INET);
  EXPECT_EQ(r.sdiag_protocol, IPPROTO_TCP);
  EXPECT_EQ(ntohs(r.id.idiag_sport), 40000);
  EXPECT_EQ(ntohs(r.id.idiag_dport), 8443);
  EXPECT_EQ(ntohl(r.id.idiag_src[0]), 0x7f000005u);
  EXPECT_EQ(ntohl(r.id.idiag_dst[0]), 0x7f000001u);
  EXPECT_EQ(r.id.idiag_cookie[0], INET_DIAG_NOCOOKIE);

  auto v6 = sock_diag_request(ep("::1", 1), ep("::1", 2), 1);
  std::memcpy(&r, v6.data() + NLMSG_HDRLEN, sizeof r);
  EXPECT_EQ(r.sdiag_family, AF_INET6);
  EXPECT_EQ(reinterpret_cast<const uint8_t*>(r.id.idiag_src)[15], 1);
}

// The cgroup v2 directory this process is in.
std::string own_cgroup_dir() {
  auto root = cgroup2_mount_point();
  if (!root) return {};
  std::ifstream f("/proc/self/cgroup");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("0::", 0) == 0) return *root + line.substr(3);
  return {};
}

bool have_ipv6_loopback() {
  net::io_context io;
  tcp::acceptor a(io);
  boost::system::error_code ec;
  a.open(tcp::v6(), ec);
  if (!ec) a.bind(ep("::1", 0), ec);
  return !ec;
}

TEST(PeerIdentityKernel, AcceptedClientIsInThisProcessCgroup) {
  const std::string mine = own_cgroup_dir();
  if (mine.empty()) GTEST_SKIP() << "no cgroup v2 here";
  auto my_id = cgroup_id_of(mine);
  ASSERT_TRUE(my_id) << my_id.error().message();
  std::vector<const char*> addrs = {"127.0.0.1"};
  if (have_ipv6_loopback()) addrs.push_back("::1");
  for (const char* addr : addrs) {
    SCOPED_TRACE(addr);
    net::io_context io;
    tcp::acceptor a(io, ep(addr, 0));
    tcp::socket client(io);
    client.connect(a.local_endpoint());
    tcp::socket server = a.accept();
    auto id = client_socket_cgroup(server.remote_endpoint(), server.local_endpoint());
    ASSERT_TRUE(id) << id.error().message();
    EXPECT_EQ(*id, *my_id);
    auto within = cgroup_within(*id, mine);
    ASSERT_TRUE(within);
    EXPECT_TRUE(*within);
    // A directory that is not the client's cgroup (nor above it) does not contain it. A
    // private one: the walk below /tmp itself raced with other tests' temp dirs coming and
    // going (an error, which the proxy treats as a refusal).
    char scratch[] = "/tmp/acp-peer-identity.XXXXXX";
    ASSERT_NE(::mkdtemp(scratch), nullptr);
    fs::create_directories(std::string(scratch) + "/a/b");
    auto elsewhere = cgroup_within(*id, scratch);
    fs::remove_all(scratch);
    ASSERT_TRUE(elsewhere);
    EXPECT_FALSE(*elsewhere);
    // A 4-tuple no socket has: the kernel says so, and the caller refuses.
    auto nobody = client_socket_cgroup(tcp::endpoint(net::ip::make_address(addr), 1),
                                       server.local_endpoint());
    ASSERT_FALSE(nobody);
    EXPECT_EQ(nobody.error().err, ENOENT);
  }
}

TEST(PeerIdentityKernel, DualStackListenerSeesV4MappedPeers) {
  if (!have_ipv6_loopback()) GTEST_SKIP() << "no ::1 here";
  const std::string mine = own_cgroup_dir();
  if (mine.empty()) GTEST_SKIP() << "no cgroup v2 here";
  net::io_context io;
  tcp::acceptor a(io, tcp::v6());
  a.set_option(net::ip::v6_only(false));
  a.bind(ep("::", 0));
  a.listen();
  tcp::socket client(io);
  client.connect(ep("127.0.0.1", a.local_endpoint().port()));
  tcp::socket server = a.accept();
  ASSERT_TRUE(server.remote_endpoint().address().to_v6().is_v4_mapped());
  auto id = client_socket_cgroup(server.remote_endpoint(), server.local_endpoint());
  ASSERT_TRUE(id) << id.error().message();
  EXPECT_EQ(*id, *cgroup_id_of(mine));
}

TEST(PeerIdentityKernel, ListenerInodeForEverySpellingOfItsAddress) {
  net::io_context io;
  tcp::acceptor a(io, ep("127.0.0.1", 0));
  const uint16_t port = a.local_endpoint().port();
  struct stat st {};
  ASSERT_EQ(::fstat(a.native_handle(), &st), 0);
  for (const char* spelling : {"127.0.0.1", "0.0.0.0", "::ffff:127.0.0.1"}) {
    SCOPED_TRACE(spelling);
    auto ino = listener_inode(ep(spelling, port));
    ASSERT_TRUE(ino) << ino.error().message();
    ASSERT_TRUE(*ino);
    EXPECT_EQ(**ino, st.st_ino);
  }
  // Another loopback address does not reach a listener bound to 127.0.0.1.
  auto other = listener_inode(ep("127.0.0.2", port));
  ASSERT_TRUE(other);
  EXPECT_FALSE(*other);
  a.close();
  auto none = listener_inode(ep("127.0.0.1", port));
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);
}

class OwnEndpoints : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/acp-own-endpoints-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = std::string(tmpl) + "/endpoints";
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(fs::path(dir_).parent_path(), ec);
  }
  std::string dir_;
  net::io_context io_;
};

TEST_F(OwnEndpoints, ARegisteredListenerIsRefusedOnEverySpellingUntilUnregistered) {
  tcp::acceptor a(io_);
  a.open(tcp::v4());
  a.bind(ep("0.0.0.0", 0));
  auto reg = register_own_endpoint(a.native_handle(), "web page (test)", dir_);
  ASSERT_TRUE(reg) << reg.error().message();
  a.listen();
  const uint16_t port = a.local_endpoint().port();
  for (const char* spelling : {"127.0.0.1", "127.1.2.3", "0.0.0.0", "::ffff:127.0.0.1"}) {
    SCOPED_TRACE(spelling);
    auto why = own_endpoint_refusal(ep(spelling, port), dir_);
    ASSERT_TRUE(why);
    EXPECT_NE(why->find("web page (test)"), std::string::npos) << *why;
  }
  *reg = OwnEndpoint();  // unregistered: an ordinary listener again
  EXPECT_FALSE(own_endpoint_refusal(ep("127.0.0.1", port), dir_));
  if (geteuid() == 0) {
    EXPECT_TRUE(fs::is_empty(dir_));  // its file went with it
  }
}

TEST_F(OwnEndpoints, AnotherProcessEntryCountsWhileItsProcessLives) {
  tcp::acceptor a(io_, ep("127.0.0.1", 0));
  const uint16_t port = a.local_endpoint().port();
  struct stat st {};
  ASSERT_EQ(::fstat(a.native_handle(), &st), 0);
  EXPECT_FALSE(own_endpoint_refusal(ep("127.0.0.1", port), dir_));
  fs::create_directories(dir_);
  // As another acp process writes it: <pid>-<inode>, the description on its first line. A
  // live pid (our parent) counts; a pid that is gone does not.
  std::ofstream(dir_ + "/" + std::to_string(getppid()) + "-" + std::to_string(st.st_ino))
      << "consent proxy of session other\n";
  auto why = own_endpoint_refusal(ep("127.0.0.1", port), dir_);
  ASSERT_TRUE(why);
  EXPECT_NE(why->find("consent proxy of session other"), std::string::npos);
  fs::remove_all(dir_);
  fs::create_directories(dir_);
  std::ofstream(dir_ + "/999999999-" + std::to_string(st.st_ino)) << "dead\n";
  EXPECT_FALSE(own_endpoint_refusal(ep("127.0.0.1", port), dir_));
}

TEST_F(OwnEndpoints, NothingListeningIsNoRefusal) {
  tcp::acceptor a(io_, ep("127.0.0.1", 0));
  const uint16_t port = a.local_endpoint().port();
  a.close();
  EXPECT_FALSE(own_endpoint_refusal(ep("127.0.0.1", port), dir_));
}

}  // namespace
