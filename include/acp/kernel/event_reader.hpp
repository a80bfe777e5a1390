// Live denied-attempt events from a session's ring buffer (the `events` map), and their
// human and JSON forms for the terminal, `acp status` and the audit log.
#pragma once

#include <bpf/libbpf.h>

#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "acp/util/result.hpp"
#include "acp/util/unique_fd.hpp"
#include "acp_abi.h"

namespace acp::kernel {

class EventReader {
 public:
  // Called once per event, on the thread that calls consume()/poll(). Must not throw.
  using Callback = std::function<void(const acp_event&)>;

  // events_map_fd: SockPrograms::events_fd() or a pinned map_events fd; it is duplicated,
  // so the caller may close its own.
  static Result<EventReader> create(int events_map_fd, Callback cb);

  EventReader(EventReader&&) noexcept = default;
  EventReader& operator=(EventReader&&) noexcept = default;
  EventReader(const EventReader&) = delete;
  EventReader& operator=(const EventReader&) = delete;
  ~EventReader() = default;

  // Readable when events are waiting: wrap it in asio::posix::stream_descriptor (do not let
  // asio close it: release() the descriptor before it is destroyed), then consume().
  int epoll_fd() const;
  // Handles every waiting event without blocking; returns how many.
  Result<int> consume();
  // Waits up to timeout_ms (-1: forever) for events and handles them; returns how many.
  // An interrupted wait (EINTR) returns 0.
  Result<int> poll(int timeout_ms);

  // Events the ring buffer held that were shorter than struct acp_event (never expected;
  // counted instead of read past their end).
  uint64_t malformed() const { return state_->malformed; }

 private:
  struct State {
    Callback cb;
    uint64_t malformed = 0;
  };
  struct RingBufferDeleter {
    void operator()(ring_buffer* rb) const { ring_buffer__free(rb); }
  };
  EventReader() = default;
  static int on_sample(void* ctx, void* data, size_t size);

  // State lives on the heap: libbpf keeps its address across moves of the reader.
  std::unique_ptr<State> state_;
  UniqueFd map_fd_;
  std::unique_ptr<ring_buffer, RingBufferDeleter> rb_;
};

// "denied connect4 pid 4242 (curl) uid 1000 -> 127.0.0.1:9999/tcp"
// "audit: would deny sendmsg6 pid 77 (dig) uid 0 -> [::1]:53/udp"
// "denied socket(AF_INET, SOCK_RAW, 1) pid 80 (ping) uid 1000"
// The comm is the agent's to choose: control characters are escaped as \xNN.
std::string describe_event(const acp_event& e);

// {"ts_ns", "session_id" (16 hex digits), "pid", "tid", "uid", "comm", "hook", "verdict"
//  ("deny"|"audit_deny"|"allow"), "family", "sock_type", "protocol", and for the sock_addr
//  hooks "address", "port", "proto", "destination"}.
nlohmann::json event_to_json(const acp_event& e);

// Names as shown above: "connect4", "sock_create"; "AF_INET6"; "SOCK_DGRAM"; "deny".
std::string hook_name(uint8_t hook);
std::string verdict_name(uint8_t verdict);
std::string family_name(uint32_t family);
std::string sock_type_name(uint32_t type);
// The comm with control and non-ASCII bytes escaped.
std::string printable_comm(const char (&comm)[ACP_COMM_LEN]);

}  // namespace acp::kernel
