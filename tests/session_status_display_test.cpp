// `acp status` as text: the agent's strings in it (its command line, its pending requests) are
// shown visible (acp/proxy/display.hpp), and a long request says how to see it all.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "acp/session/session_status.hpp"

namespace {

TEST(SessionStatusText, AgentStringsAreVisibleAndLongRequestsSayHowToSeeThemAll) {
  acp::MachineStatus m;
  m.network_line = "Network: test";
  acp::SessionStatus s;
  s.id = "cafe00000001";
  s.backend = "iptables";  // no BPF pins to describe
  acp::SessionRecord rec;
  rec.command = {"sh", "-c", "echo \x1b]0;title\x07"};
  s.record = rec;
  s.pending.push_back({{"id", "1a2b3c4d"},
                       {"summary",
                        "GET 127.0.0.1:80/a\xe2\x80\xae"
                        "fdp.exe"}});
  s.pending.push_back({{"id", "5e6f7a8b"}, {"summary", std::string(300, 'x') + "/etc/shadow"}});
  m.sessions.push_back(s);
  const std::string text = acp::status_to_text(m);
  EXPECT_EQ(text.find('\x1b'), std::string::npos) << text;
  EXPECT_EQ(text.find("\xe2\x80\xae"), std::string::npos) << text;
  EXPECT_NE(text.find("command:    sh -c echo \\x1b]0;title\\x07"), std::string::npos) << text;
  EXPECT_NE(text.find("1a2b3c4d  GET 127.0.0.1:80/a\\u{202E}fdp.exe"), std::string::npos) << text;
  EXPECT_NE(text.find("bytes hidden: acp pending 5e6f7a8b]"), std::string::npos) << text;
}

}  // namespace
