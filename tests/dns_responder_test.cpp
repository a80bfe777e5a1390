// The session's DNS (acp/proxy/dns_responder.hpp): queries built and answers read with ldns,
// the same library the responder uses, and the policy's may_reach() that decides NXDOMAIN.
#include "acp/proxy/dns_responder.hpp"

#include <gtest/gtest.h>
#include <ldns/ldns.h>

#include <memory>
#include <string>
#include <vector>

#include "acp/proxy/policy.hpp"

namespace acp::proxy::dns {
namespace {

namespace ip = boost::asio::ip;

std::vector<uint8_t> query(const std::string& name, ldns_rr_type type, uint16_t id = 0x1234,
                           ldns_rr_class cls = LDNS_RR_CLASS_IN) {
  ldns_pkt* p = nullptr;
  EXPECT_EQ(ldns_pkt_query_new_frm_str(&p, name.c_str(), type, cls, LDNS_RD), LDNS_STATUS_OK);
  ldns_pkt_set_id(p, id);
  uint8_t* buf = nullptr;
  size_t size = 0;
  EXPECT_EQ(ldns_pkt2wire(&buf, p, &size), LDNS_STATUS_OK);
  std::vector<uint8_t> out(buf, buf + size);
  LDNS_FREE(buf);
  ldns_pkt_free(p);
  return out;
}

struct Reply {
  uint16_t id = 0;
  uint8_t rcode = 0xff;
  bool qr = false;
  std::vector<std::string> answers;  // rdata as text
  std::string question;
};

Reply read(const std::vector<uint8_t>& wire) {
  Reply r;
  ldns_pkt* p = nullptr;
  if (ldns_wire2pkt(&p, wire.data(), wire.size()) != LDNS_STATUS_OK) return r;
  r.id = ldns_pkt_id(p);
  r.rcode = ldns_pkt_get_rcode(p);
  r.qr = ldns_pkt_qr(p);
  if (ldns_pkt_qdcount(p) == 1) {
    char* q = ldns_rdf2str(ldns_rr_owner(ldns_rr_list_rr(ldns_pkt_question(p), 0)));
    r.question = q;
    free(q);
  }
  for (size_t i = 0; i < ldns_pkt_ancount(p); ++i) {
    char* a = ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(ldns_pkt_answer(p), i), 0));
    r.answers.emplace_back(a);
    free(a);
  }
  ldns_pkt_free(p);
  return r;
}

bool allow_but_evil(const std::string& n) {
  return n.find("evil") == std::string::npos;
}

TEST(DnsResponder, NamesGetSyntheticAddressesStableInBothFamilies) {
  SyntheticNames names(16, std::array<uint8_t, 8>{0xfd, 1, 2, 3, 4, 5, 6, 7});  // as tests may
  auto a = answer(query("api.example.com", LDNS_RR_TYPE_A), allow_but_evil, names);
  ASSERT_EQ(a.outcome, Outcome::kAnswered);
  EXPECT_EQ(a.name, "api.example.com");
  Reply r = read(a.wire);
  EXPECT_TRUE(r.qr);
  EXPECT_EQ(r.id, 0x1234);
  EXPECT_EQ(r.rcode, LDNS_RCODE_NOERROR);
  EXPECT_EQ(r.question, "api.example.com.");
  ASSERT_EQ(r.answers.size(), 1u);
  EXPECT_EQ(r.answers[0], "198.18.0.1");
  // The same name in another case and the other family: the same slot.
  auto b = answer(query("API.Example.COM.", LDNS_RR_TYPE_AAAA), allow_but_evil, names);
  ASSERT_EQ(b.outcome, Outcome::kAnswered);
  ASSERT_EQ(read(b.wire).answers.size(), 1u);
  EXPECT_EQ(read(b.wire).answers[0], "fd01:203:405:607::1");
  auto c = answer(query("other.example.com", LDNS_RR_TYPE_A), allow_but_evil, names);
  EXPECT_EQ(read(c.wire).answers.at(0), "198.18.0.2");
  // And back: the door learns the exact name from either address, mapped IPv4 too.
  EXPECT_EQ(names.name_of(ip::make_address("198.18.0.1")), "api.example.com");
  EXPECT_EQ(names.name_of(ip::make_address("::ffff:198.18.0.2")), "other.example.com");
  EXPECT_EQ(names.name_of(ip::make_address("fd01:203:405:607::1")), "api.example.com");
  EXPECT_FALSE(names.name_of(ip::make_address("198.18.0.3")));  // never handed out
  EXPECT_FALSE(names.name_of(ip::make_address("198.19.0.1")));
  EXPECT_TRUE(names.is_synthetic(ip::make_address("198.19.255.254")));
  EXPECT_FALSE(names.is_synthetic(ip::make_address("198.20.0.1")));
  EXPECT_FALSE(names.is_synthetic(ip::make_address("fd01:203:405:608::1")));
}

TEST(DnsResponder, DeniedNamesAreNxdomainAndOtherTypesEmpty) {
  SyntheticNames names;
  auto d = answer(query("secret.evil.example", LDNS_RR_TYPE_A), allow_but_evil, names);
  EXPECT_EQ(d.outcome, Outcome::kDenied);
  EXPECT_EQ(read(d.wire).rcode, LDNS_RCODE_NXDOMAIN);
  EXPECT_TRUE(read(d.wire).answers.empty());
  auto t = answer(query("secret.evil.example", LDNS_RR_TYPE_TXT), allow_but_evil, names);
  EXPECT_EQ(read(t.wire).rcode, LDNS_RCODE_NXDOMAIN);
  auto mx = answer(query("ok.example", LDNS_RR_TYPE_MX), allow_but_evil, names);
  EXPECT_EQ(mx.outcome, Outcome::kAnswered);
  EXPECT_EQ(read(mx.wire).rcode, LDNS_RCODE_NOERROR);
  EXPECT_TRUE(read(mx.wire).answers.empty());
  EXPECT_EQ(names.size(), 0u);  // neither took a slot
  // Class CH (version.bind and the like): not implemented.
  auto ch =
      answer(query("version.bind", LDNS_RR_TYPE_TXT, 7, LDNS_RR_CLASS_CH), allow_but_evil, names);
  EXPECT_EQ(read(ch.wire).rcode, LDNS_RCODE_NOTIMPL);
}

TEST(DnsResponder, WhatIsNotOneQueryIsRefusedOrDropped) {
  SyntheticNames names;
  auto q = query("a.example", LDNS_RR_TYPE_A);
  // A response is never answered (no loops, no reflection); nor is a runt or an oversize one.
  auto resp = q;
  resp[2] |= 0x80;
  EXPECT_EQ(answer(resp, allow_but_evil, names).outcome, Outcome::kDropped);
  EXPECT_TRUE(answer(resp, allow_but_evil, names).wire.empty());
  EXPECT_EQ(answer(std::span(q).first(11), allow_but_evil, names).outcome, Outcome::kDropped);
  std::vector<uint8_t> big(kMaxQueryBytes + 1, 0);
  EXPECT_EQ(answer(big, allow_but_evil, names).outcome, Outcome::kDropped);
  // Another opcode: NOTIMP; a truncated question: FORMERR; both keep the id.
  auto notify = q;
  notify[2] = static_cast<uint8_t>((notify[2] & 0x87) | (4 << 3));
  auto n = answer(notify, allow_but_evil, names);
  EXPECT_EQ(n.outcome, Outcome::kRefused);
  EXPECT_EQ(n.wire.size(), 12u);
  EXPECT_EQ(n.wire[3] & 0x0f, LDNS_RCODE_NOTIMPL);
  auto cut = std::vector<uint8_t>(q.begin(), q.end() - 3);
  auto f = answer(cut, allow_but_evil, names);
  EXPECT_EQ(f.outcome, Outcome::kRefused);
  ASSERT_EQ(f.wire.size(), 12u);
  EXPECT_EQ(f.wire[3] & 0x0f, LDNS_RCODE_FORMERR);
  EXPECT_EQ(f.wire[0], 0x12);
  EXPECT_EQ(f.wire[1], 0x34);
  EXPECT_EQ(f.wire[2] & 0x80, 0x80);
  EXPECT_EQ(names.size(), 0u);
}

TEST(DnsResponder, OnlyHostNamesAreNames) {
  const uint8_t ok[] = {3, 'A', 'p', 'I', 7, 'e', 'x', '-', 'a', 'm', '_', 'p', 0};
  EXPECT_EQ(canonical_name(ok), "api.ex-am_p");
  const uint8_t dot[] = {3, 'a', '.', 'b', 3, 'c', 'o', 'm', 0};  // a dot inside a label
  EXPECT_EQ(canonical_name(dot), "");
  const uint8_t nul[] = {3, 'a', 0, 'b', 0};
  EXPECT_EQ(canonical_name(nul), "");
  const uint8_t root[] = {0};
  EXPECT_EQ(canonical_name(root), "");
  const uint8_t space[] = {3, 'a', ' ', 'b', 0};
  EXPECT_EQ(canonical_name(space), "");
  // Such a name is answered NXDOMAIN, never judged.
  SyntheticNames names;
  auto a = answer(
      query("a\\032b.example", LDNS_RR_TYPE_A), [](const std::string&) { return true; }, names);
  EXPECT_EQ(a.outcome, Outcome::kDenied);
}

TEST(DnsResponder, ASlotIsReusedOnlyAfterItsTtl) {
  SyntheticNames names(2);
  const auto t0 = SyntheticNames::Clock::now();
  ASSERT_EQ(names.slot_for("a.example", t0), 0u);
  ASSERT_EQ(names.slot_for("b.example", t0), 1u);
  EXPECT_FALSE(names.slot_for("c.example", t0 + std::chrono::seconds(5)));  // full: SERVFAIL
  // "a" used again (a connection to it): "b" is now the least recently used.
  EXPECT_EQ(names.name_of(ip::make_address("198.18.0.1"), t0 + std::chrono::seconds(20)),
            "a.example");
  const auto later = t0 + std::chrono::seconds(SyntheticNames::kTtlSeconds + 1);
  EXPECT_EQ(names.slot_for("c.example", later), 1u);
  EXPECT_EQ(names.name_of(ip::make_address("198.18.0.2"), later), "c.example");
  EXPECT_EQ(names.name_of(ip::make_address("198.18.0.1"), later), "a.example");
  EXPECT_EQ(names.size(), 2u);
}

TEST(DnsResponder, ThePolicySaysWhichNamesMayResolve) {
  auto p = policy::Policy::parse(R"(
default: deny
rules:
  - match: { host: "blocked.example.com" }
    action: deny
  - match: { host: "*.example.com" }
    action: allow
  - match: { host: "ask.example.org", port: [443] }
    action: ask
  - match: { host: "part.example.net", port: [22] }
    action: deny
  - match: { host: "part.example.net" }
    action: allow
  - match: { kind: mcp, server: "mcp.example.io", tool: "x" }
    action: allow
)",
                                 "policy.yml");
  ASSERT_TRUE(p.ok()) << p.error().message();
  EXPECT_TRUE(p->may_reach("api.example.com"));
  EXPECT_TRUE(p->may_reach("API.Example.COM."));
  EXPECT_FALSE(p->may_reach("blocked.example.com"));  // a deny of every port comes first
  EXPECT_TRUE(p->may_reach("ask.example.org"));       // an ask is not a refusal
  EXPECT_TRUE(p->may_reach("part.example.net"));      // denied on one port only
  EXPECT_FALSE(p->may_reach("mcp.example.io"));       // an mcp rule reaches no host
  EXPECT_FALSE(p->may_reach("secret.attacker.example"));
  auto open = policy::Policy::parse("default: ask\n", "policy.yml");
  ASSERT_TRUE(open.ok());
  EXPECT_TRUE(open->may_reach("anything.example"));
}

}  // namespace
}  // namespace acp::proxy::dns
