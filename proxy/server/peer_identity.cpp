#include "acp/proxy/peer_identity.hpp"

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <system_error>

#include "acp/proxy/request_target.hpp"
#include "acp/util/unique_fd.hpp"

namespace acp::proxy {

namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

constexpr size_t kReplyBytes = 8192;
constexpr time_t kNetlinkTimeoutSeconds = 2;

// Writes `a` into inet_diag's __be32[4] address field (network byte order).
void put_address(const net::ip::address& a, __be32 (&out)[4]) {
  std::memset(out, 0, sizeof out);
  if (a.is_v4()) {
    auto b = a.to_v4().to_bytes();
    std::memcpy(out, b.data(), b.size());
  } else {
    auto b = a.to_v6().to_bytes();
    std::memcpy(out, b.data(), b.size());
  }
}

}  // namespace

std::string endpoint_text(const tcp::endpoint& ep) {
  auto a = ep.address();
  return (a.is_v6() ? "[" + a.to_string() + "]" : a.to_string()) + ":" + std::to_string(ep.port());
}

std::vector<uint8_t> sock_diag_request(const tcp::endpoint& local, const tcp::endpoint& remote,
                                       uint32_t seq, int protocol) {
  struct {
    nlmsghdr nlh;
    inet_diag_req_v2 req;
  } msg{};
  static_assert(sizeof msg == NLMSG_LENGTH(sizeof(inet_diag_req_v2)));
  auto l = unmapped(local.address());
  auto r = unmapped(remote.address());
  // An IPv4 local end with an unspecified remote asks the IPv4 table; a v6 remote of :: with
  // an IPv4 local is the same lookup.
  if (l.is_v4() && r.is_v6() && r.is_unspecified()) r = net::ip::address_v4::any();
  msg.nlh.nlmsg_len = sizeof msg;
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST;  // one socket by its 4-tuple, not a dump
  msg.nlh.nlmsg_seq = seq;
  msg.req.sdiag_family = l.is_v4() ? AF_INET : AF_INET6;
  msg.req.sdiag_protocol = static_cast<uint8_t>(protocol);
  msg.req.idiag_states = ~0U;
  // The kernel's lookup takes idiag_src/sport as the socket's local end, idiag_dst/dport as
  // its remote end (inet_diag_find_one_icsk).
  msg.req.id.idiag_sport = htons(local.port());
  msg.req.id.idiag_dport = htons(remote.port());
  put_address(l, msg.req.id.idiag_src);
  put_address(r, msg.req.id.idiag_dst);
  msg.req.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
  msg.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  std::vector<uint8_t> out(sizeof msg);
  std::memcpy(out.data(), &msg, sizeof msg);
  return out;
}

Result<SockDiagInfo> parse_sock_diag_reply(std::span<const uint8_t> reply, uint32_t seq) {
  size_t off = 0;
  while (off + sizeof(nlmsghdr) <= reply.size()) {
    nlmsghdr h;
    std::memcpy(&h, reply.data() + off, sizeof h);
    if (h.nlmsg_len < sizeof h || off + h.nlmsg_len > reply.size())
      return make_error("sock_diag reply: truncated message (" + std::to_string(h.nlmsg_len) +
                        " bytes at offset " + std::to_string(off) + ")");
    const uint8_t* body = reply.data() + off + NLMSG_HDRLEN;
    const size_t body_len = h.nlmsg_len - NLMSG_HDRLEN;
    const size_t next = off + NLMSG_ALIGN(h.nlmsg_len);
    if (h.nlmsg_seq != seq) {
      off = next;
      continue;
    }
    if (h.nlmsg_type == NLMSG_ERROR) {
      nlmsgerr e;
      if (body_len < sizeof e) return make_error("sock_diag reply: short error message");
      std::memcpy(&e, body, sizeof e);
      return make_error("sock_diag lookup", e.error < 0 ? -e.error : EPROTO);
    }
    if (h.nlmsg_type != SOCK_DIAG_BY_FAMILY)
      return make_error("sock_diag reply: unexpected message type " + std::to_string(h.nlmsg_type));
    inet_diag_msg m;
    if (body_len < sizeof m) return make_error("sock_diag reply: short inet_diag_msg");
    std::memcpy(&m, body, sizeof m);
    SockDiagInfo info;
    info.state = m.idiag_state;
    info.inode = m.idiag_inode;
    size_t a = NLMSG_ALIGN(sizeof m);
    while (a + sizeof(nlattr) <= body_len) {
      nlattr at;
      std::memcpy(&at, body + a, sizeof at);
      if (at.nla_len < sizeof at || a + at.nla_len > body_len)
        return make_error("sock_diag reply: truncated attribute " + std::to_string(at.nla_type));
      if ((at.nla_type & NLA_TYPE_MASK) == INET_DIAG_CGROUP_ID) {
        uint64_t id = 0;
        if (at.nla_len - sizeof at != sizeof id)
          return make_error("sock_diag reply: INET_DIAG_CGROUP_ID of " +
                            std::to_string(at.nla_len - sizeof at) + " bytes");
        std::memcpy(&id, body + a + NLA_HDRLEN, sizeof id);
        info.cgroup_id = id;
      }
      a += NLA_ALIGN(at.nla_len);
    }
    return info;
  }
  return make_error("sock_diag reply: no answer to request " + std::to_string(seq));
}

Result<std::vector<uint8_t>> netlink_exchange(int protocol, std::span<const uint8_t> request,
                                              size_t reply_bytes, const std::string& what) {
  UniqueFd fd(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, protocol));
  if (!fd) return errno_error("socket(AF_NETLINK, " + std::to_string(protocol) + ") for " + what);
  timeval tv{kNetlinkTimeoutSeconds, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(fd.get(), request.data(), request.size(), 0, reinterpret_cast<sockaddr*>(&kernel),
               sizeof kernel) < 0)
    return errno_error(what + ": request");
  std::vector<uint8_t> buf(reply_bytes);
  const ssize_t n = ::recv(fd.get(), buf.data(), buf.size(), 0);
  if (n < 0) return errno_error(what + ": reply");
  buf.resize(static_cast<size_t>(n));
  return buf;
}

Result<SockDiagInfo> sock_diag_lookup(const tcp::endpoint& local, const tcp::endpoint& remote,
                                      int protocol) {
  constexpr uint32_t kSeq = 1;
  auto reply = netlink_exchange(NETLINK_SOCK_DIAG, sock_diag_request(local, remote, kSeq, protocol),
                                kReplyBytes, "sock_diag for " + endpoint_text(local));
  if (!reply) return reply.error();
  auto info = parse_sock_diag_reply(*reply, kSeq);
  if (!info)
    return make_error(info.error().context + " for " + endpoint_text(local), info.error().err);
  return info;
}

Result<uint64_t> client_socket_cgroup(const tcp::endpoint& peer, const tcp::endpoint& self) {
  auto info = sock_diag_lookup(peer, self);
  if (!info) return info.error();
  if (!info->cgroup_id)
    return make_error("the client socket " + endpoint_text(peer) +
                      " has no cgroup id (kernel without INET_DIAG_CGROUP_ID, or the socket is "
                      "closing)");
  return *info->cgroup_id;
}

Result<uint64_t> udp_sender_cgroup(const tcp::endpoint& peer, const tcp::endpoint& self) {
  // The UDP lookup finds the socket a datagram from `self` to `peer` would reach: the sender's.
  auto info = sock_diag_lookup(self, peer, IPPROTO_UDP);
  if (!info) return info.error();
  if (!info->cgroup_id)
    return make_error("the UDP socket at " + endpoint_text(peer) + " has no cgroup id");
  return *info->cgroup_id;
}

Result<std::optional<uint32_t>> listener_inode(const tcp::endpoint& dest) {
  auto a = unmapped(dest.address());
  // connect() to the unspecified address reaches the loopback one.
  if (a.is_unspecified())
    a = a.is_v4() ? net::ip::address(net::ip::address_v4::loopback())
                  : net::ip::address(net::ip::address_v6::loopback());
  const tcp::endpoint local(a, dest.port());
  const tcp::endpoint any(a.is_v4() ? net::ip::address(net::ip::address_v4::any())
                                    : net::ip::address(net::ip::address_v6::any()),
                          0);
  auto info = sock_diag_lookup(local, any);
  if (!info) {
    if (info.error().err == ENOENT) return std::optional<uint32_t>();
    return info.error();
  }
  if (info->state != TCP_LISTEN) return std::optional<uint32_t>();
  return std::optional<uint32_t>(info->inode);
}

Result<uint64_t> cgroup_id_of(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return errno_error("stat " + dir);
  if (!S_ISDIR(st.st_mode)) return make_error(dir + " is not a cgroup directory");
  return static_cast<uint64_t>(st.st_ino);
}

Result<bool> cgroup_within(uint64_t id, const std::string& dir) {
  auto top = cgroup_id_of(dir);
  if (!top) return top.error();
  if (*top == id) return true;
  namespace fs = std::filesystem;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (!it->is_directory(ec) || ec) {
      ec.clear();
      continue;
    }
    struct stat st {};
    if (::stat(it->path().c_str(), &st) == 0 && static_cast<uint64_t>(st.st_ino) == id) return true;
  }
  if (ec) return make_error("list the cgroups below " + dir, ec.value());
  return false;
}

}  // namespace acp::proxy
