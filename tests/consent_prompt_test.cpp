// The prompt channel through a real pty (openpty): the test is the operator's terminal.
#include "acp/proxy/prompt_channel.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <pty.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <memory>
#include <optional>
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

// Issue 13: an MCP tool name with ANSI escapes redrew the question as an innocent one and
// retitled the terminal. Now the escapes are shown as text, and `y` approves the real call.
TEST(PromptChannel, EscapesInAToolNameAreShownAndTheAnswerAppliesToTheRealCall) {
  Fixture f;
  ASSERT_TRUE(f.start().ok());
  const std::string tool =
      "delete_file\x1b[2K\r\x1b[1A\x1b[10D\x1b]0;innocent title\x07\x1b[32mlist_dir";
  acp::Action a;
  a.kind = "mcp";
  a.host = "127.0.0.1";
  a.port = 3000;
  a.method = "POST";
  a.path = "/mcp";
  a.server = "files";
  a.tool = tool;
  a.args = "{\"path\":\"/etc/shadow\"}";
  a.session = f.gate->session_id();
  acp::PolicyDecision d;
  d.verdict = acp::Verdict::Ask;
  d.rule_text = "{kind: mcp, server: files}";
  d.timeout = 60s;
  auto out = std::make_shared<std::optional<acp::consent::ConsentOutcome>>();
  asio::co_spawn(
      f.io, [&, a, d]() -> asio::awaitable<void> { *out = co_await f.gate->ask(a, d); },
      asio::detached);
  ASSERT_TRUE(f.wait_output("Allow?"));
  const std::string& seen = f.pty.seen;
  EXPECT_NE(seen.find("wants MCP tool delete_file\\x1b[2K\\r\\x1b[1A\\x1b[10D\\x1b]0;innocent "
                      "title\\x07\\x1b[32mlist_dir on files with {\"path\":\"/etc/shadow\"}"),
            std::string::npos)
      << seen;
  // What each answer covers, on the terminal as on the page.
  EXPECT_NE(seen.find("[s] covers every call of MCP tool delete_file\\x1b[2K"), std::string::npos)
      << seen;
  // The only escape sequence on the terminal is the prompt's own "clear line" (ESC [ K): no
  // cursor move, no colour, no title, no carriage return from the agent.
  for (size_t i = seen.find('\x1b'); i != std::string::npos; i = seen.find('\x1b', i + 1))
    EXPECT_EQ(seen.compare(i, 3, "\x1b[K"), 0)
        << "raw escape at " << i << ": " << seen.substr(i, 12);
  EXPECT_EQ(seen.find('\x07'), std::string::npos);
  for (size_t i = seen.find('\r'); i != std::string::npos; i = seen.find('\r', i + 1))
    EXPECT_TRUE(seen.compare(i, 4, "\r\x1b[K") == 0 || seen.compare(i, 2, "\r\n") == 0)
        << "raw carriage return at " << i;
  // The answer is for the call the agent really made.
  ASSERT_EQ(f.gate->pending().size(), 1u);
  const std::string id = f.gate->pending()[0].id;
  EXPECT_EQ(f.gate->pending()[0].action.tool, tool);
  EXPECT_NE(seen.find(id + ": Allow?"), std::string::npos) << seen;
  f.pty.type("y\n");
  ASSERT_TRUE(run_until(f.io, [&] { return out->has_value(); }));
  EXPECT_TRUE((*out)->approved);
  EXPECT_EQ((*out)->request_id, id);
  EXPECT_EQ((*out)->scope, "once");
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
