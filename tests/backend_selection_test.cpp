// --backend=auto and explicit choices against a fake probe: what is picked, what is refused,
// and that nothing silently runs unconfined.
#include <gtest/gtest.h>

#include "acp/backend/backend.hpp"

namespace {

using acp::backend::Kind;
using acp::backend::select_backend;

struct FakeProbe : acp::backend::BackendProbe {
  bool root = true, bpf = true, ipt = true, docker = false;
  mutable int bpf_calls = 0, ipt_calls = 0, docker_calls = 0;
  bool privileged() const override { return root; }
  bool bpf_usable(std::string* why) const override {
    ++bpf_calls;
    if (!bpf && why) *why = "attach cgroup programs: EINVAL";
    return bpf;
  }
  bool iptables_usable(std::string* why) const override {
    ++ipt_calls;
    if (!ipt && why) *why = "iptables-restore not found";
    return ipt;
  }
  bool docker_usable(std::string* why) const override {
    ++docker_calls;
    if (!docker && why) *why = "dockerd is not reachable";
    return docker;
  }
};

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST(BackendSelection, AutoPrefersBpfAndDoesNotProbeIptables) {
  FakeProbe p;
  auto s = select_backend("auto", p);
  ASSERT_TRUE(s.ok()) << s.error().message();
  EXPECT_EQ(s->kind, Kind::kBpf);
  EXPECT_TRUE(s->warning.empty());
  EXPECT_EQ(p.ipt_calls, 0);
}

TEST(BackendSelection, AutoFallsBackToIptablesAndSaysWhy) {
  FakeProbe p;
  p.bpf = false;
  auto s = select_backend("auto", p);
  ASSERT_TRUE(s.ok()) << s.error().message();
  EXPECT_EQ(s->kind, Kind::kIptables);
  EXPECT_TRUE(contains(s->note, "attach cgroup programs: EINVAL")) << s->note;
  EXPECT_TRUE(s->warning.empty());
}

TEST(BackendSelection, AutoAsRootWithNothingRefusesAndOffersNone) {
  FakeProbe p;
  p.bpf = p.ipt = false;
  auto s = select_backend("auto", p);
  ASSERT_FALSE(s.ok());
  const std::string m = s.error().message();
  EXPECT_TRUE(contains(m, "attach cgroup programs: EINVAL")) << m;
  EXPECT_TRUE(contains(m, "iptables-restore not found")) << m;
  EXPECT_TRUE(contains(m, "--backend=none")) << m;
}

TEST(BackendSelection, AutoWithoutRootRefusesAndOffersPreloadOrNone) {
  FakeProbe p;
  p.root = false;
  auto s = select_backend("auto", p);
  ASSERT_FALSE(s.ok()) << "must not silently run unconfined";
  const std::string m = s.error().message();
  EXPECT_TRUE(contains(m, "--backend=preload")) << m;
  EXPECT_TRUE(contains(m, "--backend=none")) << m;
  EXPECT_TRUE(contains(m, "statically")) << m;
  EXPECT_TRUE(contains(m, "bypass")) << m;
  EXPECT_EQ(p.bpf_calls + p.ipt_calls, 0) << "without root the probes cannot decide anything";
}

TEST(BackendSelection, ExplicitKernelBackendsNeedRootAndAWorkingProbe) {
  FakeProbe p;
  p.root = false;
  for (const char* b : {"bpf", "iptables"}) {
    auto s = select_backend(b, p);
    ASSERT_FALSE(s.ok()) << b;
    EXPECT_TRUE(contains(s.error().message(), "root")) << s.error().message();
  }
  p.root = true;
  p.bpf = false;
  auto bpf = select_backend("bpf", p);
  ASSERT_FALSE(bpf.ok());
  EXPECT_TRUE(contains(bpf.error().message(), "EINVAL"));
  auto ipt = select_backend("iptables", p);
  ASSERT_TRUE(ipt.ok());
  EXPECT_EQ(ipt->kind, Kind::kIptables);
  p.ipt = false;
  auto ipt2 = select_backend("iptables", p);
  ASSERT_FALSE(ipt2.ok());
  EXPECT_TRUE(contains(ipt2.error().message(), "iptables-restore not found"));
}

TEST(BackendSelection, WeakBackendsAlwaysCarryTheirWarning) {
  for (bool root : {false, true}) {
    FakeProbe p;
    p.root = root;
    auto pre = select_backend("preload", p);
    ASSERT_TRUE(pre.ok());
    EXPECT_EQ(pre->kind, Kind::kPreload);
    EXPECT_TRUE(contains(pre->warning, "Weak isolation")) << pre->warning;
    auto none = select_backend("none", p);
    ASSERT_TRUE(none.ok());
    EXPECT_EQ(none->kind, Kind::kNone);
    EXPECT_TRUE(contains(none->warning, "No network isolation. Agent can bypass ACP proxy."))
        << none->warning;
  }
}

TEST(BackendSelection, AutoPicksDockerOnlyAfterBpfAndIptables) {
  FakeProbe p;
  p.docker = true;
  auto s = select_backend("auto", p);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->kind, Kind::kBpf);
  EXPECT_EQ(p.docker_calls, 0);
  p.bpf = false;
  s = select_backend("auto", p);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->kind, Kind::kIptables);
  EXPECT_EQ(p.docker_calls, 0);
  p.ipt = false;
  s = select_backend("auto", p);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->kind, Kind::kDocker);
  EXPECT_TRUE(contains(s->note, "docker")) << s->note;
  EXPECT_TRUE(s->warning.empty());
  p.docker = false;
  s = select_backend("auto", p);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(contains(s.error().message(), "dockerd is not reachable")) << s.error().message();
}

TEST(BackendSelection, DockerNeedsRootAndAReachableDaemon) {
  FakeProbe p;
  p.docker = true;
  auto d = select_backend("docker", p);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->kind, Kind::kDocker);
  p.docker = false;
  d = select_backend("docker", p);
  ASSERT_FALSE(d.ok());
  EXPECT_TRUE(contains(d.error().message(), "dockerd is not reachable")) << d.error().message();
  p.docker = true;
  p.root = false;
  d = select_backend("docker", p);
  ASSERT_FALSE(d.ok());
  EXPECT_TRUE(contains(d.error().message(), "sudo acp contain")) << d.error().message();
}

TEST(BackendSelection, UnknownNamesAreRefused) {
  FakeProbe p;
  auto u = select_backend("nftables", p);
  ASSERT_FALSE(u.ok());
  EXPECT_TRUE(contains(u.error().message(), "--backend=nftables"));
}

TEST(BackendModeLine, ExactlyAsTheOriginDocsPrintIt) {
  using acp::backend::mode_line;
  EXPECT_EQ(mode_line(Kind::kBpf), "Network: 🔒 Isolated (bpf)");
  EXPECT_EQ(mode_line(Kind::kIptables), "Network: 🔒 Isolated (iptables)");
  EXPECT_EQ(mode_line(Kind::kDocker), "Network: 🔒 Isolated (Docker)");
  EXPECT_EQ(mode_line(Kind::kPreload), "Network: ⚠️ Weak isolation (preload)");
  EXPECT_EQ(mode_line(Kind::kNone), "Network: ⚠️ No isolation (proxy-only)");
  EXPECT_EQ(mode_line("iptables"), "Network: 🔒 Isolated (iptables)");
  EXPECT_NE(mode_line("bogus").find("bogus"), std::string::npos);
}

TEST(BackendKind, NamesRoundTrip) {
  for (Kind k : {Kind::kBpf, Kind::kIptables, Kind::kDocker, Kind::kPreload, Kind::kNone})
    EXPECT_EQ(acp::backend::parse_kind(acp::backend::kind_name(k)), k);
  EXPECT_FALSE(acp::backend::parse_kind("auto").has_value());
}

}  // namespace
