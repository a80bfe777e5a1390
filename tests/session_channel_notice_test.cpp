// Where acp prints its consent channels: the page's token only on a terminal.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "acp/session/channel_notice.hpp"

namespace {

std::string printed(bool terminal, const std::string& page_url) {
  std::FILE* f = std::tmpfile();
  EXPECT_NE(f, nullptr);
  if (!f) return "";
  acp::print_consent_channels(
      f, terminal, "acp run: consent channel ",
      {"web: http://127.0.0.1:8444/?token=… (the token is in /etc/acp/web.token, root only)"},
      page_url);
  std::rewind(f);
  std::string out;
  char buf[512];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  std::fclose(f);
  return out;
}

const std::string kUrl = "http://127.0.0.1:8444/?token=" + std::string(64, 'a');

TEST(ChannelNotice, NotATerminalGetsNoToken) {
  const std::string out = printed(false, kUrl);
  EXPECT_EQ(out.find(std::string(64, 'a')), std::string::npos) << out;
  EXPECT_NE(out.find("acp run: consent channel web: http://127.0.0.1:8444/?token=… (the token is "
                     "in /etc/acp/web.token"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("shown only when acp's stderr is a terminal"), std::string::npos) << out;
}

TEST(ChannelNotice, ATerminalGetsThePageWithItsToken) {
  const std::string out = printed(true, kUrl);
  EXPECT_NE(out.find("(shown on this terminal only): " + kUrl + "\n"), std::string::npos) << out;
}

TEST(ChannelNotice, NoPageNoExtraLine) {
  EXPECT_EQ(printed(false, ""),
            "acp run: consent channel web: http://127.0.0.1:8444/?token=… (the token is in "
            "/etc/acp/web.token, root only)\n");
}

TEST(ChannelNotice, APipeIsNotAPrivateTerminal) {
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  EXPECT_FALSE(acp::is_private_terminal(p[1]));
  ::close(p[0]);
  ::close(p[1]);
}

}  // namespace
