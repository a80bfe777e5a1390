// DNS answered by the policy (issue 16 point 3, docs/transparent.md "DNS"). With the
// transparent door on, the wall leads the agent's UDP DNS (port 53, any address) to this
// session's responder. A name the policy denies everywhere gets NXDOMAIN; any other name gets
// a synthetic address from a per-session range, and no query leaves the machine. A connect to
// a synthetic address is led to the door like any other, where the proxy knows the exact name
// the agent looked up; only the proxy resolves it for real, after the policy (and, for ask, a
// human) allowed it.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio/ip/address.hpp>

namespace acp::proxy::dns {

// The synthetic addresses one session hands out: 198.18.0.0/15 (RFC 2544, never routed) for A,
// fd61:6370:646e::/64 (a ULA, RFC 4193: "acpdn") for AAAA; the wall knows both ranges
// (bpf/acp_decide.h: acp_is_synthetic). Each session has its own table: an address means a
// name only to the session that handed it out. One slot per name, the same index in both
// families; a name keeps its slot while it is used (looked up, or connected to) and for at
// least the answers' TTL after; the least recently used slot is reused only after that.
class SyntheticNames {
 public:
  static constexpr uint32_t kTtlSeconds = 30;
  static constexpr size_t kMaxCapacity = 131070;  // 198.18.0.1 .. 198.19.255.254
  using Clock = std::chrono::steady_clock;

  static constexpr std::array<uint8_t, 8> kPrefix6 = {0xfd, 0x61, 0x63, 0x70, 0x64, 0x6e, 0, 0};
  // `capacity`: names held at once (at most kMaxCapacity). `prefix`: the IPv6 /64 (tests).
  explicit SyntheticNames(size_t capacity = 4096, std::array<uint8_t, 8> prefix = kPrefix6);

  // The slot of `name` (canonical: lowercase, no trailing dot), made or refreshed; nullopt when
  // every slot is younger than the TTL (the caller answers SERVFAIL: try again later).
  std::optional<uint32_t> slot_for(const std::string& name, Clock::time_point now = Clock::now());
  boost::asio::ip::address_v4 v4(uint32_t slot) const;
  boost::asio::ip::address_v6 v6(uint32_t slot) const;

  // Whether `a` is in this session's synthetic ranges (IPv4-mapped IPv6 read as IPv4).
  bool is_synthetic(const boost::asio::ip::address& a) const;
  // The name `a` was handed out for (and refreshes it), or nullopt: not synthetic, never handed
  // out, or its slot was reused since.
  std::optional<std::string> name_of(const boost::asio::ip::address& a,
                                     Clock::time_point now = Clock::now());
  size_t size() const { return by_name_.size(); }
  const std::array<uint8_t, 8>& prefix() const { return prefix_; }

 private:
  struct Slot {
    std::string name;
    Clock::time_point used;
  };
  std::optional<uint32_t> slot_of(const boost::asio::ip::address& a) const;
  void touch(uint32_t slot, Clock::time_point now);

  size_t capacity_;
  std::array<uint8_t, 8> prefix_{};
  std::vector<Slot> slots_;
  std::list<uint32_t> lru_;  // least recently used first
  std::vector<std::list<uint32_t>::iterator> lru_pos_;
  std::unordered_map<std::string, uint32_t> by_name_;
};

// What became of one datagram.
enum class Outcome {
  kAnswered,  // A/AAAA: a synthetic address; other types: NOERROR, no records
  kDenied,    // NXDOMAIN: the policy denies the name everywhere, or it is no host name
  kFull,      // SERVFAIL: every slot is in use (SyntheticNames::slot_for)
  kRefused,   // FORMERR/NOTIMP: not one standard query of class IN
  kDropped,   // no reply at all: not a DNS query (a response, too short, too long)
};
const char* to_string(Outcome o);

struct Answer {
  Outcome outcome = Outcome::kDropped;
  std::vector<uint8_t> wire;  // the reply; empty when dropped
  std::string name;           // the canonical name asked for, when there was one
  uint16_t qtype = 0;
};

// The largest query read; a longer datagram is dropped (a one-question query with EDNS is
// far below it).
inline constexpr size_t kMaxQueryBytes = 1232;

// Answers one query datagram. `may_resolve(name)`: false when the policy denies `name` on
// every port (RequestJudge::may_resolve). Never throws; every reply is built by ldns from the
// parsed question, never from the agent's bytes.
Answer answer(std::span<const uint8_t> query,
              const std::function<bool(const std::string&)>& may_resolve, SyntheticNames& names);

// The canonical host of a DNS name in wire form (labels of letters, digits, '-' and '_';
// lowercased; no trailing dot), or "" when it is none (other bytes, empty, too long).
std::string canonical_name(std::span<const uint8_t> wire_name);

}  // namespace acp::proxy::dns
