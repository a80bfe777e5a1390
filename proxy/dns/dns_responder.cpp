// DNS answered by the policy: the synthetic address table and the answer to one datagram.
// Parsing and building are ldns's (wire2pkt, pkt2wire): a reply is made of the parsed question
// and our own records, never of the agent's bytes. The socket loop is in proxy_server.cpp.
#include "acp/proxy/dns_responder.hpp"

#include <ldns/ldns.h>

#include <algorithm>
#include <memory>

namespace acp::proxy::dns {
namespace {

namespace ip = boost::asio::ip;

constexpr uint32_t kV4Base = (198u << 24) | (18u << 16);  // 198.18.0.0/15

struct PktFree {
  void operator()(ldns_pkt* p) const { ldns_pkt_free(p); }
};
using Pkt = std::unique_ptr<ldns_pkt, PktFree>;

// A reply to a query whose question could not be read: the header only (FORMERR, NOTIMP).
std::vector<uint8_t> header_only(std::span<const uint8_t> q, uint8_t rcode) {
  std::vector<uint8_t> r(12, 0);
  r[0] = q[0];
  r[1] = q[1];
  r[2] = static_cast<uint8_t>(0x80 | (q[2] & 0x78) | (q[2] & 0x01));  // QR, opcode, RD
  r[3] = static_cast<uint8_t>(0x80 | (rcode & 0x0f));                 // RA, rcode
  return r;
}

std::vector<uint8_t> to_wire(const ldns_pkt* p) {
  uint8_t* buf = nullptr;
  size_t size = 0;
  if (ldns_pkt2wire(&buf, p, &size) != LDNS_STATUS_OK || !buf) return {};
  std::vector<uint8_t> out(buf, buf + size);
  LDNS_FREE(buf);
  return out;
}

}  // namespace

const char* to_string(Outcome o) {
  switch (o) {
    case Outcome::kAnswered:
      return "answered";
    case Outcome::kDenied:
      return "denied";
    case Outcome::kFull:
      return "full";
    case Outcome::kRefused:
      return "refused";
    case Outcome::kDropped:
      return "dropped";
  }
  return "?";
}

SyntheticNames::SyntheticNames(size_t capacity, std::array<uint8_t, 8> prefix)
    : capacity_(std::clamp<size_t>(capacity, 1, kMaxCapacity)), prefix_(prefix) {
  slots_.reserve(std::min<size_t>(capacity_, 1024));
}

void SyntheticNames::touch(uint32_t slot, Clock::time_point now) {
  slots_[slot].used = now;
  lru_.splice(lru_.end(), lru_, lru_pos_[slot]);
}

std::optional<uint32_t> SyntheticNames::slot_for(const std::string& name, Clock::time_point now) {
  if (auto it = by_name_.find(name); it != by_name_.end()) {
    touch(it->second, now);
    return it->second;
  }
  uint32_t slot;
  if (slots_.size() < capacity_) {
    slot = static_cast<uint32_t>(slots_.size());
    slots_.push_back({name, now});
    lru_pos_.push_back(lru_.insert(lru_.end(), slot));
  } else {
    slot = lru_.front();
    // An answer given within its TTL must keep meaning that name.
    if (now - slots_[slot].used < std::chrono::seconds(kTtlSeconds)) return std::nullopt;
    by_name_.erase(slots_[slot].name);
    slots_[slot].name = name;
    touch(slot, now);
  }
  by_name_.emplace(name, slot);
  return slot;
}

ip::address_v4 SyntheticNames::v4(uint32_t slot) const {
  return ip::address_v4(kV4Base + 1 + slot);
}

ip::address_v6 SyntheticNames::v6(uint32_t slot) const {
  ip::address_v6::bytes_type b{};
  std::copy(prefix_.begin(), prefix_.end(), b.begin());
  const uint32_t n = slot + 1;
  b[12] = static_cast<uint8_t>(n >> 24);
  b[13] = static_cast<uint8_t>(n >> 16);
  b[14] = static_cast<uint8_t>(n >> 8);
  b[15] = static_cast<uint8_t>(n);
  return ip::address_v6(b);
}

std::optional<uint32_t> SyntheticNames::slot_of(const ip::address& a_in) const {
  ip::address a = a_in;
  if (a.is_v6() && a.to_v6().is_v4_mapped()) a = ip::make_address_v4(ip::v4_mapped, a.to_v6());
  uint64_t n = 0;
  if (a.is_v4()) {
    const uint32_t v = a.to_v4().to_uint();
    if ((v & 0xfffe0000u) != kV4Base) return std::nullopt;
    n = v - kV4Base;
  } else {
    const auto b = a.to_v6().to_bytes();
    if (!std::equal(prefix_.begin(), prefix_.end(), b.begin())) return std::nullopt;
    if (b[8] || b[9] || b[10] || b[11]) return std::nullopt;
    n = (uint64_t{b[12]} << 24) | (uint64_t{b[13]} << 16) | (uint64_t{b[14]} << 8) | b[15];
  }
  if (n == 0 || n > slots_.size()) return std::nullopt;
  return static_cast<uint32_t>(n - 1);
}

bool SyntheticNames::is_synthetic(const ip::address& a_in) const {
  ip::address a = a_in;
  if (a.is_v6() && a.to_v6().is_v4_mapped()) a = ip::make_address_v4(ip::v4_mapped, a.to_v6());
  if (a.is_v4()) return (a.to_v4().to_uint() & 0xfffe0000u) == kV4Base;
  const auto b = a.to_v6().to_bytes();
  return std::equal(prefix_.begin(), prefix_.end(), b.begin());
}

std::optional<std::string> SyntheticNames::name_of(const ip::address& a, Clock::time_point now) {
  auto slot = slot_of(a);
  if (!slot) return std::nullopt;
  touch(*slot, now);
  return slots_[*slot].name;
}

std::string canonical_name(std::span<const uint8_t> w) {
  std::string out;
  size_t i = 0;
  while (i < w.size()) {
    const uint8_t len = w[i++];
    if (len == 0) return (i == w.size() && !out.empty() && out.size() <= 253) ? out : "";
    if (len > 63 || i + len > w.size()) return "";
    if (!out.empty()) out += '.';
    for (size_t k = 0; k < len; ++k) {
      const char c = static_cast<char>(w[i + k]);
      const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
      if (c >= 'A' && c <= 'Z') {
        out += static_cast<char>(c - 'A' + 'a');
      } else if (ok) {
        out += c;
      } else {
        return "";
      }
    }
    i += len;
  }
  return "";
}

Answer answer(std::span<const uint8_t> query,
              const std::function<bool(const std::string&)>& may_resolve, SyntheticNames& names) {
  Answer out;
  // Too short for a header, too long, or a response (never answer one: no reflection loops).
  if (query.size() < 12 || query.size() > kMaxQueryBytes || (query[2] & 0x80)) return out;
  const uint8_t opcode = (query[2] >> 3) & 0x0f;
  if (opcode != LDNS_PACKET_QUERY) {
    out.outcome = Outcome::kRefused;
    out.wire = header_only(query, LDNS_RCODE_NOTIMPL);
    return out;
  }
  ldns_pkt* raw = nullptr;
  if (ldns_wire2pkt(&raw, query.data(), query.size()) != LDNS_STATUS_OK || !raw) {
    out.outcome = Outcome::kRefused;
    out.wire = header_only(query, LDNS_RCODE_FORMERR);
    return out;
  }
  Pkt q(raw);
  ldns_rr_list* qs = ldns_pkt_question(q.get());
  if (ldns_pkt_qdcount(q.get()) != 1 || !qs || ldns_rr_list_rr_count(qs) != 1 ||
      ldns_pkt_ancount(q.get()) != 0 || ldns_pkt_nscount(q.get()) != 0) {
    out.outcome = Outcome::kRefused;
    out.wire = header_only(query, LDNS_RCODE_FORMERR);
    return out;
  }
  const ldns_rr* question = ldns_rr_list_rr(qs, 0);
  const ldns_rdf* owner = ldns_rr_owner(question);
  const ldns_rr_type type = ldns_rr_get_type(question);
  out.qtype = static_cast<uint16_t>(type);
  out.name = owner ? canonical_name({ldns_rdf_data(owner), ldns_rdf_size(owner)}) : "";

  Pkt r(ldns_pkt_new());
  if (!r) return out;
  ldns_pkt_set_id(r.get(), ldns_pkt_id(q.get()));
  ldns_pkt_set_qr(r.get(), true);
  ldns_pkt_set_opcode(r.get(), LDNS_PACKET_QUERY);
  ldns_pkt_set_rd(r.get(), ldns_pkt_rd(q.get()));
  ldns_pkt_set_ra(r.get(), true);
  ldns_pkt_set_aa(r.get(), true);
  ldns_rr* qcopy = ldns_rr_clone(question);
  if (!qcopy || !ldns_pkt_push_rr(r.get(), LDNS_SECTION_QUESTION, qcopy)) {
    if (qcopy) ldns_rr_free(qcopy);
    return out;
  }
  auto finish = [&](Outcome o, uint8_t rcode) {
    ldns_pkt_set_rcode(r.get(), rcode);
    out.outcome = o;
    out.wire = to_wire(r.get());
    if (out.wire.empty()) out.outcome = Outcome::kDropped;
    return out;
  };
  if (ldns_rr_get_class(question) != LDNS_RR_CLASS_IN)
    return finish(Outcome::kRefused, LDNS_RCODE_NOTIMPL);
  if (out.name.empty() || !may_resolve(out.name))
    return finish(Outcome::kDenied, LDNS_RCODE_NXDOMAIN);
  if (type != LDNS_RR_TYPE_A && type != LDNS_RR_TYPE_AAAA)
    return finish(Outcome::kAnswered, LDNS_RCODE_NOERROR);  // the name exists, no such records
  auto slot = names.slot_for(out.name);
  if (!slot) return finish(Outcome::kFull, LDNS_RCODE_SERVFAIL);
  ldns_rr* rr = ldns_rr_new();
  if (!rr) return out;
  ldns_rr_set_owner(rr, ldns_rdf_clone(owner));
  ldns_rr_set_type(rr, type);
  ldns_rr_set_class(rr, LDNS_RR_CLASS_IN);
  ldns_rr_set_ttl(rr, SyntheticNames::kTtlSeconds);
  ldns_rdf* data = nullptr;
  if (type == LDNS_RR_TYPE_A) {
    const auto b = names.v4(*slot).to_bytes();
    data = ldns_rdf_new_frm_data(LDNS_RDF_TYPE_A, b.size(), b.data());
  } else {
    const auto b = names.v6(*slot).to_bytes();
    data = ldns_rdf_new_frm_data(LDNS_RDF_TYPE_AAAA, b.size(), b.data());
  }
  if (!data || !ldns_rr_push_rdf(rr, data) || !ldns_pkt_push_rr(r.get(), LDNS_SECTION_ANSWER, rr)) {
    if (data && ldns_rr_rd_count(rr) == 0) ldns_rdf_deep_free(data);
    ldns_rr_free(rr);
    return out;
  }
  return finish(Outcome::kAnswered, LDNS_RCODE_NOERROR);
}

}  // namespace acp::proxy::dns
