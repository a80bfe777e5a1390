#include "acp/kernel/event_reader.hpp"

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "acp/kernel/endpoint.hpp"
#include "acp/kernel/session_maps.hpp"
#include "libbpf_log.hpp"

namespace acp::kernel {

Result<EventReader> EventReader::create(int events_map_fd, Callback cb) {
  detail::quiet_libbpf_once();
  EventReader r;
  r.state_ = std::make_unique<State>();
  r.state_->cb = std::move(cb);
  r.map_fd_ = UniqueFd(::fcntl(events_map_fd, F_DUPFD_CLOEXEC, 0));
  if (!r.map_fd_) return errno_error("dup events map fd " + std::to_string(events_map_fd));
  ring_buffer* rb =
      ring_buffer__new(r.map_fd_.get(), &EventReader::on_sample, r.state_.get(), nullptr);
  if (!rb) return errno_error("open the events ring buffer");
  r.rb_.reset(rb);
  return r;
}

int EventReader::on_sample(void* ctx, void* data, size_t size) {
  auto* st = static_cast<State*>(ctx);
  if (size < sizeof(acp_event)) {
    st->malformed++;
    return 0;
  }
  acp_event e;
  std::memcpy(&e, data, sizeof(e));  // ring buffer records are only 8-byte aligned
  try {
    st->cb(e);
  } catch (...) {
    return -ECANCELED;  // never unwind through libbpf's C frames
  }
  return 0;
}

int EventReader::epoll_fd() const {
  return rb_ ? ring_buffer__epoll_fd(rb_.get()) : -1;
}

Result<int> EventReader::consume() {
  if (!rb_) return make_error("consume events: reader not open", EINVAL);
  int n = ring_buffer__consume(rb_.get());
  if (n < 0) return make_error("consume events from the ring buffer", -n);
  return n;
}

Result<int> EventReader::poll(int timeout_ms) {
  if (!rb_) return make_error("poll events: reader not open", EINVAL);
  int n = ring_buffer__poll(rb_.get(), timeout_ms);
  if (n == -EINTR) return 0;
  if (n < 0) return make_error("poll events from the ring buffer", -n);
  return n;
}

std::string hook_name(uint8_t hook) {
  switch (hook) {
    case ACP_HOOK_CONNECT4:
      return "connect4";
    case ACP_HOOK_CONNECT6:
      return "connect6";
    case ACP_HOOK_SENDMSG4:
      return "sendmsg4";
    case ACP_HOOK_SENDMSG6:
      return "sendmsg6";
    case ACP_HOOK_SOCK_CREATE:
      return "sock_create";
    case ACP_HOOK_EGRESS:
      return "egress";
    case ACP_HOOK_CONNECT_UNIX:
      return "connect_unix";
    case ACP_HOOK_SENDMSG_UNIX:
      return "sendmsg_unix";
    default:
      return "hook-" + std::to_string(hook);
  }
}

std::string verdict_name(uint8_t verdict) {
  switch (verdict) {
    case ACP_VERDICT_ALLOW:
      return "allow";
    case ACP_VERDICT_DENY:
      return "deny";
    case ACP_VERDICT_AUDIT_DENY:
      return "audit_deny";
    default:
      return "verdict-" + std::to_string(verdict);
  }
}

std::string family_name(uint32_t family) {
  // Linux UAPI values (include/linux/socket.h): the families an agent might try.
  switch (family) {
    case 0:
      return "AF_UNSPEC";
    case 1:
      return "AF_UNIX";
    case 2:
      return "AF_INET";
    case 4:
      return "AF_IPX";
    case 5:
      return "AF_APPLETALK";
    case 10:
      return "AF_INET6";
    case 16:
      return "AF_NETLINK";
    case 17:
      return "AF_PACKET";
    case 21:
      return "AF_RDS";
    case 29:
      return "AF_CAN";
    case 30:
      return "AF_TIPC";
    case 31:
      return "AF_BLUETOOTH";
    case 38:
      return "AF_ALG";
    case 40:
      return "AF_VSOCK";
    case 41:
      return "AF_KCM";
    case 42:
      return "AF_QIPCRTR";
    case 43:
      return "AF_SMC";
    case 44:
      return "AF_XDP";
    case 45:
      return "AF_MCTP";
    default:
      return "AF_" + std::to_string(family);
  }
}

std::string sock_type_name(uint32_t type) {
  switch (type) {
    case 1:
      return "SOCK_STREAM";
    case 2:
      return "SOCK_DGRAM";
    case 3:
      return "SOCK_RAW";
    case 4:
      return "SOCK_RDM";
    case 5:
      return "SOCK_SEQPACKET";
    case 6:
      return "SOCK_DCCP";
    case 10:
      return "SOCK_PACKET";
    default:
      return "SOCK_" + std::to_string(type);
  }
}

std::string printable_comm(const char (&comm)[ACP_COMM_LEN]) {
  std::string out;
  for (size_t i = 0; i < ACP_COMM_LEN && comm[i] != '\0'; i++) {
    auto c = static_cast<unsigned char>(comm[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

namespace {

// Events that carry a destination: the sock_addr hooks and egress packets.
bool has_destination(uint8_t hook) {
  return hook < ACP_HOOK_SOCK_CREATE || hook == ACP_HOOK_EGRESS;
}

bool is_unix(uint8_t hook) {
  return hook == ACP_HOOK_CONNECT_UNIX || hook == ACP_HOOK_SENDMSG_UNIX;
}

// The AF_UNIX name an event carries: its first 16 bytes (acp_abi.h), "..." when longer.
std::string unix_destination(const acp_event& e) {
  acp_unix_path p{};
  const size_t shown = std::min<size_t>(e.port, sizeof(e.addr));
  std::memcpy(p.path, e.addr, shown);
  p.len = static_cast<uint32_t>(shown);
  return "unix:" + unix_name_string(p) + (e.port > sizeof(e.addr) ? "..." : "");
}

Endpoint destination(const acp_event& e) {
  Endpoint ep;
  std::memcpy(ep.addr.data(), e.addr, sizeof(e.addr));
  ep.port = e.port;
  ep.proto = static_cast<uint8_t>(e.protocol);
  return ep;
}

}  // namespace

std::string describe_event(const acp_event& e) {
  std::string s;
  if (e.verdict == ACP_VERDICT_AUDIT_DENY) {
    s = "audit: would deny ";
  } else if (e.verdict == ACP_VERDICT_DENY) {
    s = "denied ";
  } else {
    s = verdict_name(e.verdict) + " ";
  }
  if (e.hook == ACP_HOOK_SOCK_CREATE) {
    s += "socket(" + family_name(e.family) + ", " + sock_type_name(e.sock_type) + ", " +
         std::to_string(e.protocol) + ")";
  } else {
    s += hook_name(e.hook);
  }
  if (e.hook == ACP_HOOK_EGRESS)  // no pid in packet context (acp_abi.h)
    s += " packet uid " + std::to_string(e.uid);
  else
    s += " pid " + std::to_string(e.pid) + " (" + printable_comm(e.comm) + ") uid " +
         std::to_string(e.uid);
  if (has_destination(e.hook)) s += " -> " + to_string(destination(e));
  if (is_unix(e.hook)) s += " -> " + unix_destination(e);
  return s;
}

nlohmann::json event_to_json(const acp_event& e) {
  char sid[17];
  std::snprintf(sid, sizeof(sid), "%016llx", static_cast<unsigned long long>(e.session_id));
  nlohmann::json j = {
      {"ts_ns", e.ts_ns},
      {"session_id", sid},
      {"pid", e.pid},
      {"tid", e.tid},
      {"uid", e.uid},
      {"comm", printable_comm(e.comm)},
      {"hook", hook_name(e.hook)},
      {"verdict", verdict_name(e.verdict)},
      {"family", family_name(e.family)},
      {"sock_type", sock_type_name(e.sock_type)},
      {"protocol", e.protocol},
  };
  if (has_destination(e.hook)) {
    Endpoint ep = destination(e);
    j["address"] = address_string(ep.addr);
    j["port"] = ep.port;
    j["proto"] = proto_name(ep.proto);
    j["destination"] = to_string(ep);
  }
  if (is_unix(e.hook)) {
    j["destination"] = unix_destination(e);
    j["path_len"] = e.port;
  }
  return j;
}

}  // namespace acp::kernel
