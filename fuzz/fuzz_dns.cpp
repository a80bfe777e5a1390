// Fuzz target: a datagram the agent sends to its session's DNS (acp/proxy/dns_responder.hpp).
// The first byte picks whether the policy lets names resolve; the rest is the datagram. The
// responder must never throw, never answer a response or a runt, and every reply it gives must
// be one DNS message (ldns reads it back) that keeps the query's id, is marked a response, and
// holds at most one record, of an address in this session's synthetic ranges, for the one
// name asked, which must be a host name.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "acp/proxy/dns_responder.hpp"
// After the C++ headers: with clang, ldns's headers first break libstdc++'s __is_signed.
#include <ldns/ldns.h>

using namespace acp::proxy::dns;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

SyntheticNames& names() {
  static SyntheticNames n(64);
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool resolve = (data[0] & 1) != 0;
  std::span<const uint8_t> q(data + 1, size - 1);
  auto a = answer(
      q, [resolve](const std::string&) { return resolve; }, names());
  if (q.size() < 12 || q.size() > kMaxQueryBytes || (q[2] & 0x80)) {
    check(a.wire.empty());
    return 0;
  }
  if (a.wire.empty()) return 0;
  check(a.wire.size() >= 12);
  check(a.wire[0] == q[0] && a.wire[1] == q[1]);
  check((a.wire[2] & 0x80) != 0);
  if (a.outcome == Outcome::kAnswered || a.outcome == Outcome::kDenied)
    check(a.name.empty() ? a.outcome == Outcome::kDenied : true);
  if (a.wire.size() == 12) return 0;  // header only: FORMERR, NOTIMP
  ldns_pkt* p = nullptr;
  check(ldns_wire2pkt(&p, a.wire.data(), a.wire.size()) == LDNS_STATUS_OK);
  check(ldns_pkt_qdcount(p) == 1);
  check(ldns_pkt_ancount(p) <= 1);
  if (ldns_pkt_ancount(p) == 1) {
    check(resolve && !a.name.empty());
    const ldns_rr* rr = ldns_rr_list_rr(ldns_pkt_answer(p), 0);
    const ldns_rdf* rd = ldns_rr_rdf(rr, 0);
    boost::asio::ip::address addr;
    if (ldns_rdf_get_type(rd) == LDNS_RDF_TYPE_A && ldns_rdf_size(rd) == 4) {
      boost::asio::ip::address_v4::bytes_type b;
      std::copy(ldns_rdf_data(rd), ldns_rdf_data(rd) + 4, b.begin());
      addr = boost::asio::ip::address_v4(b);
    } else {
      check(ldns_rdf_get_type(rd) == LDNS_RDF_TYPE_AAAA && ldns_rdf_size(rd) == 16);
      boost::asio::ip::address_v6::bytes_type b;
      std::copy(ldns_rdf_data(rd), ldns_rdf_data(rd) + 16, b.begin());
      addr = boost::asio::ip::address_v6(b);
    }
    check(names().is_synthetic(addr));
    check(names().name_of(addr) == a.name);
  }
  ldns_pkt_free(p);
  return 0;
}
