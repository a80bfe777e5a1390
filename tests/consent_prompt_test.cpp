// The prompt channel through a real pty (openpty): the test is the operator's terminal.
#include "acp/proxy/prompt_channel.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <pty.h>
#include <unistd.h>

#include <regex>

#include "channel_test_support.hpp"
#include "consent_test_support.hpp"

namespace {

namespace asio = boost::asio;
using acp::consent::ConsentGate;
using acp::consent::GateConfig;
using acp::consent::PromptChannel;
using acp::consent::PromptSettings;
using acp::testing::run_until;
using acp::testing::start_ask;
using acp::testing::TempDir;
using namespace std::chrono_literals;

struct Pty {
  int master = -1, slave = -1;
  std::string name;
  std::string seen;
  Pty() {
    if (::openpty(&master, &slave, nullptr, nullptr, nullptr) != 0) std::abort();
    name = ::ttyname(slave);
    ::fcntl(master, F_SETFL, ::fcntl(master, F_GETFL) | O_NONBLOCK);
  }
  ~Pty() {
    ::close(master);
    ::close(slave);
  }
  const std::string& drain() {
    char b[4096];
    for (ssize_t n; (n = ::read(master, b, sizeof b)) > 0;) seen.append(b, n);
    return seen;
  }
  void type(const std::string& s) {
    ASSERT_EQ(::write(master, s.data(), s.size()), (ssize_t)s.size());
  }
};

struct Fixture : acp::testing::ChannelFixture<PromptChannel> {
  Pty pty;
  acp::Status start(std::vector<int> agent_fds = {}) {
    PromptSettings s;
    s.tty_path = pty.name;
    s.agent_fds = std::move(agent_fds);
    s.ctx.agent_command = "curl https://example.com";
    return attach(std::move(s));
  }
  bool wait_output(const std::string& needle) {
    return run_until(io, [&] { return pty.drain().find(needle) != std::string::npos; });
  }
};

TEST(PromptChannel, YesApprovesAndTheCountdownRuns) {
  Fixture f;
  ASSERT_TRUE(f.start().ok());
  auto out = start_ask(f.io, *f.gate, "example.com", 60s);
  ASSERT_TRUE(f.wait_output("Allow?"));
  EXPECT_NE(f.pty.seen.find("[acp] agent `curl https://example.com` wants CONNECT example.com:443"),
            std::string::npos)
      << f.pty.seen;
  EXPECT_NE(f.pty.seen.find("[y]es once / [t]en minutes / [s]ession / [n]o"), std::string::npos);
  // The countdown: the question is redrawn with the seconds left.
  ASSERT_TRUE(run_until(f.io, [&] {
    f.pty.drain();
    std::regex re("\\((\\d+)s\\)");
    std::set<std::string> values;
    for (std::sregex_iterator it(f.pty.seen.begin(), f.pty.seen.end(), re), end; it != end; ++it)
      values.insert((*it)[1]);
    return values.size() >= 2;
  }));
  EXPECT_FALSE(out->has_value());
  f.pty.type("y\n");
  ASSERT_TRUE(run_until(f.io, [&] { return out->has_value(); }));
  EXPECT_TRUE((*out)->approved);
  EXPECT_EQ((*out)->scope, "once");
  EXPECT_TRUE(f.wait_output("approved once"));
}

TEST(PromptChannel, NoDeniesAndNonsenseAsksAgain) {
  Fixture f;
  ASSERT_TRUE(f.start().ok());
  auto out = start_ask(f.io, *f.gate, "example.com");
  ASSERT_TRUE(f.wait_output("Allow?"));
  f.pty.type("maybe\n");
  ASSERT_TRUE(f.wait_output("answer y, t, s or n"));
  EXPECT_FALSE(out->has_value());
  f.pty.type("n\n");
  ASSERT_TRUE(run_until(f.io, [&] { return out->has_value(); }));
  EXPECT_FALSE((*out)->approved);
  EXPECT_EQ((*out)->decided_by, "human");
}

TEST(PromptChannel, TenMinutesGivesADurationGrant) {
  Fixture f;
  ASSERT_TRUE(f.start().ok());
  auto out = start_ask(f.io, *f.gate, "example.com");
  ASSERT_TRUE(f.wait_output("Allow?"));
  f.pty.type("t\n");
  ASSERT_TRUE(run_until(f.io, [&] { return out->has_value(); }));
  EXPECT_EQ((*out)->scope, "duration");
  auto again = start_ask(f.io, *f.gate, "example.com");
  ASSERT_TRUE(run_until(f.io, [&] { return again->has_value(); }));
  EXPECT_EQ((*again)->scope, "grant:duration");
}

TEST(PromptChannel, AnsweredElsewhereIsShown) {
  Fixture f;
  ASSERT_TRUE(f.start().ok());
  auto out = start_ask(f.io, *f.gate, "example.com");
  ASSERT_TRUE(f.wait_output("Allow?"));
  acp::consent::Answer a;
  a.approve = true;
  ASSERT_TRUE(f.gate->answer(f.gate->pending().at(0).id, a).ok());
  EXPECT_TRUE(f.wait_output("approved elsewhere"));
}

TEST(PromptChannel, RefusesWhenTheAgentWouldOwnTheTerminal) {
  Fixture f;
  // The agent's stdout would be this very terminal (another fd on the same pty).
  int agent_stdout = ::open(f.pty.name.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC);
  ASSERT_GE(agent_stdout, 0);
  auto st = f.start({agent_stdout});
  ::close(agent_stdout);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message().find("same terminal"), std::string::npos) << st.error().message();
  EXPECT_NE(st.error().message().find("web page"), std::string::npos);
}

TEST(PromptChannel, RefusesWithoutATerminal) {
  Fixture f;
  PromptSettings s;
  s.tty_path = f.dir / "not-a-tty";
  acp::testing::write_lines(s.tty_path, {"x"});
  PromptChannel ch(f.io, *f.gate, s);
  EXPECT_FALSE(ch.start().ok());
}

}  // namespace
