// The human and JSON forms of kernel events (no kernel needed).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <cstring>

#include "acp/kernel/event_reader.hpp"

namespace {

acp_event connect_event(uint8_t hook, uint8_t verdict, const char* ip, uint16_t port,
                        uint16_t proto) {
  acp_event e{};
  e.ts_ns = 123;
  e.session_id = 0xabc;
  e.pid = 4242;
  e.tid = 4243;
  e.uid = 1000;
  std::strcpy(e.comm, "curl");
  if (std::strchr(ip, ':')) {
    inet_pton(AF_INET6, ip, e.addr);
    e.family = AF_INET6;
  } else {
    e.addr[10] = e.addr[11] = 0xff;
    inet_pton(AF_INET, ip, &e.addr[12]);
    e.family = AF_INET;
  }
  e.port = port;
  e.hook = hook;
  e.verdict = verdict;
  e.sock_type = proto == ACP_PROTO_UDP ? SOCK_DGRAM : SOCK_STREAM;
  e.protocol = proto;
  return e;
}

TEST(KernelEvent, DescribesDeniedConnect) {
  auto e = connect_event(ACP_HOOK_CONNECT4, ACP_VERDICT_DENY, "127.0.0.1", 9999, ACP_PROTO_TCP);
  EXPECT_EQ(acp::kernel::describe_event(e),
            "denied connect4 pid 4242 (curl) uid 1000 -> 127.0.0.1:9999/tcp");
}

TEST(KernelEvent, DescribesAuditedSendmsg6) {
  auto e = connect_event(ACP_HOOK_SENDMSG6, ACP_VERDICT_AUDIT_DENY, "::1", 53, ACP_PROTO_UDP);
  std::strcpy(e.comm, "dig");
  EXPECT_EQ(acp::kernel::describe_event(e),
            "audit: would deny sendmsg6 pid 4242 (dig) uid 1000 -> [::1]:53/udp");
}

TEST(KernelEvent, DescribesRefusedSocket) {
  acp_event e{};
  e.pid = 80;
  e.uid = 1000;
  std::strcpy(e.comm, "ping");
  e.hook = ACP_HOOK_SOCK_CREATE;
  e.verdict = ACP_VERDICT_DENY;
  e.family = AF_INET;
  e.sock_type = SOCK_RAW;
  e.protocol = 1;
  EXPECT_EQ(acp::kernel::describe_event(e),
            "denied socket(AF_INET, SOCK_RAW, 1) pid 80 (ping) uid 1000");
  e.family = AF_VSOCK;
  e.sock_type = SOCK_STREAM;
  e.protocol = 0;
  EXPECT_EQ(acp::kernel::describe_event(e),
            "denied socket(AF_VSOCK, SOCK_STREAM, 0) pid 80 (ping) uid 1000");
  auto j = acp::kernel::event_to_json(e);
  EXPECT_EQ(j["hook"], "sock_create");
  EXPECT_FALSE(j.contains("destination"));
}

TEST(KernelEvent, DescribesDroppedEgressPacket) {
  // Packet context: no pid or comm (acp_abi.h), the socket owner's uid and the destination.
  auto e = connect_event(ACP_HOOK_EGRESS, ACP_VERDICT_DENY, "10.200.1.2", 40000, ACP_PROTO_TCP);
  e.pid = e.tid = 0;
  std::memset(e.comm, 0, sizeof(e.comm));
  EXPECT_EQ(acp::kernel::describe_event(e),
            "denied egress packet uid 1000 -> 10.200.1.2:40000/tcp");
  auto j = acp::kernel::event_to_json(e);
  EXPECT_EQ(j["hook"], "egress");
  EXPECT_EQ(j["destination"], "10.200.1.2:40000/tcp");
  EXPECT_EQ(j["pid"], 0u);
  // A packet that could not be judged (here an IPv6 routing header, next header 43).
  auto x = connect_event(ACP_HOOK_EGRESS, ACP_VERDICT_AUDIT_DENY, "fd00::2", 0, 43);
  EXPECT_EQ(acp::kernel::describe_event(x),
            "audit: would deny egress packet uid 1000 -> [fd00::2]:0/proto-43");
}

TEST(KernelEvent, EscapesAgentChosenComm) {
  // The agent names itself (prctl PR_SET_NAME): a terminal escape or invalid UTF-8 must
  // neither reach the operator's terminal raw nor break the JSON encoder.
  auto e = connect_event(ACP_HOOK_CONNECT4, ACP_VERDICT_DENY, "127.0.0.1", 1, ACP_PROTO_TCP);
  std::memset(e.comm, 0, sizeof(e.comm));
  std::memcpy(e.comm, "\x1b[2Jevil\xff\\", 10);
  std::string d = acp::kernel::describe_event(e);
  EXPECT_NE(d.find("(\\x1b[2Jevil\\xff\\x5c)"), std::string::npos) << d;
  EXPECT_EQ(d.find('\x1b'), std::string::npos);
  auto j = acp::kernel::event_to_json(e);
  EXPECT_NO_THROW((void)j.dump());
  EXPECT_EQ(j["comm"], "\\x1b[2Jevil\\xff\\x5c");
}

TEST(KernelEvent, FullLengthCommWithoutNul) {
  auto e = connect_event(ACP_HOOK_CONNECT4, ACP_VERDICT_DENY, "127.0.0.1", 1, ACP_PROTO_TCP);
  std::memset(e.comm, 'a', sizeof(e.comm));  // no terminator: never read past the array
  EXPECT_EQ(acp::kernel::printable_comm(e.comm), std::string(16, 'a'));
}

TEST(KernelEvent, Json) {
  auto e = connect_event(ACP_HOOK_CONNECT6, ACP_VERDICT_DENY, "::1", 8080, ACP_PROTO_TCP);
  auto j = acp::kernel::event_to_json(e);
  EXPECT_EQ(j["ts_ns"], 123u);
  EXPECT_EQ(j["session_id"], "0000000000000abc");
  EXPECT_EQ(j["pid"], 4242u);
  EXPECT_EQ(j["tid"], 4243u);
  EXPECT_EQ(j["uid"], 1000u);
  EXPECT_EQ(j["comm"], "curl");
  EXPECT_EQ(j["hook"], "connect6");
  EXPECT_EQ(j["verdict"], "deny");
  EXPECT_EQ(j["family"], "AF_INET6");
  EXPECT_EQ(j["sock_type"], "SOCK_STREAM");
  EXPECT_EQ(j["address"], "::1");
  EXPECT_EQ(j["port"], 8080);
  EXPECT_EQ(j["proto"], "tcp");
  EXPECT_EQ(j["destination"], "[::1]:8080/tcp");
}

TEST(KernelEvent, MappedDestinationShownAsIpv4) {
  auto e = connect_event(ACP_HOOK_CONNECT6, ACP_VERDICT_AUDIT_DENY, "::ffff:10.0.0.1", 443,
                         ACP_PROTO_TCP);
  EXPECT_EQ(acp::kernel::event_to_json(e)["destination"], "10.0.0.1:443/tcp");
  EXPECT_EQ(acp::kernel::event_to_json(e)["verdict"], "audit_deny");
}

}  // namespace
