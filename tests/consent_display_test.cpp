// What a human is shown of agent-controlled text (acp/proxy/display.hpp): every class of
// character that could hide or rewrite what the terminal, the page or the chat shows comes out
// as a visible escape; text in any script passes unchanged; nothing is cut without saying so.
#include "acp/proxy/display.hpp"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace {

using acp::Action;
using acp::consent::approval_reach;
using acp::consent::clip;
using acp::consent::html_escape;
using acp::consent::summary;
using acp::consent::visible;

// UTF-8 of one code point.
std::string u8(char32_t c) {
  std::string s;
  if (c < 0x80) {
    s += static_cast<char>(c);
  } else if (c < 0x800) {
    s += static_cast<char>(0xC0 | (c >> 6));
    s += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    s += static_cast<char>(0xE0 | (c >> 12));
    s += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (c >> 18));
    s += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (c & 0x3F));
  }
  return s;
}

// No byte a terminal acts on (C0, DEL) and only well-formed UTF-8.
bool inert(const std::string& s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7F) return false;
  // Well-formed: visible() of it changes nothing but its own escapes' backslashes stay.
  return visible(s) == s;
}

TEST(Display, C0ControlsDelAndEscapeSequencesAreShownAsEscapes) {
  EXPECT_EQ(visible("a\x1b[2K\rb"), "a\\x1b[2K\\rb");
  EXPECT_EQ(visible("\x1b]0;innocent title\x07"), "\\x1b]0;innocent title\\x07");
  EXPECT_EQ(visible("x\x1b[1A\x1b[10D"), "x\\x1b[1A\\x1b[10D");
  EXPECT_EQ(visible("tab\there\nnew"), "tab\\there\\nnew");
  EXPECT_EQ(visible(std::string("nul\0byte", 8)), "nul\\x00byte");
  EXPECT_EQ(visible("del\x7f"), "del\\x7f");
  EXPECT_EQ(visible("\x08\x0b\x0c\x1f"), "\\x08\\x0b\\x0c\\x1f");
}

TEST(Display, C1ControlsAreShownAsEscapes) {
  // U+009B is a one-character CSI on terminals that take 8-bit controls.
  EXPECT_EQ(visible(u8(0x9B) + "2J"), "\\u{009B}2J");
  EXPECT_EQ(visible(u8(0x85)), "\\u{0085}");
  EXPECT_EQ(visible(u8(0x80) + u8(0x9F)), "\\u{0080}\\u{009F}");
}

TEST(Display, BidiControlsAreShownAsEscapes) {
  for (char32_t c : {0x061C, 0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067,
                     0x2068, 0x2069}) {
    const std::string shown = visible("/files/" + u8(c) + "txt.exe");
    char want[16];
    std::snprintf(want, sizeof want, "\\u{%04X}", static_cast<unsigned>(c));
    EXPECT_EQ(shown, "/files/" + std::string(want) + "txt.exe")
        << std::hex << static_cast<unsigned>(c);
  }
}

TEST(Display, InvisibleAndLookAlikeSpacingCharactersAreShownAsEscapes) {
  const std::vector<char32_t> hidden = {
      0x200B,  0x200C,  0x200D,  0x2060,  0x2061,  0x2062, 0x2063, 0x2064,  0xFEFF,  0x00AD,
      0x180E,  0x034F,  0x3164,  0x115F,  0x1160,  0xFFA0, 0x00A0, 0x2000,  0x2007,  0x200A,
      0x202F,  0x205F,  0x3000,  0x2028,  0x2029,  0xFE00, 0xFE0F, 0x180B,  0xE0000, 0xE0001,
      0xE0041, 0xE007F, 0xE0100, 0xE01EF, 0x1D173, 0xFFFE, 0xFFFF, 0x10FFFF};
  for (char32_t c : hidden) {
    const std::string shown = visible("rm" + u8(c) + "-rf");
    EXPECT_TRUE(shown.find("\\u{") != std::string::npos)
        << std::hex << static_cast<unsigned>(c) << " -> " << shown;
    EXPECT_EQ(shown.find(u8(c)), std::string::npos) << std::hex << static_cast<unsigned>(c);
    EXPECT_TRUE(inert(shown)) << shown;
  }
  EXPECT_EQ(visible("a" + u8(0x200B) + "b"), "a\\u{200B}b");
  EXPECT_EQ(visible(u8(0xE0041)), "\\u{E0041}");
}

TEST(Display, InvalidUtf8IsShownByteForByte) {
  EXPECT_EQ(visible("\xff"), "\\xff");
  EXPECT_EQ(visible("a\xc0\xafz"), "a\\xc0\\xafz");                // overlong '/'
  EXPECT_EQ(visible("\xed\xa0\x80"), "\\xed\\xa0\\x80");           // a surrogate
  EXPECT_EQ(visible("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");  // past U+10FFFF
  EXPECT_EQ(visible("\xe6\x97"), "\\xe6\\x97");                    // cut short
  EXPECT_EQ(visible("\x80"), "\\x80");                             // a lone continuation
  // An overlong ESC must not sneak through as ESC.
  EXPECT_EQ(visible("\xc1\x9b[2J"), "\\xc1\\x9b[2J");
}

TEST(Display, TextInAnyScriptAndEmojiIsLeftAlone) {
  for (const std::string s :
       {"日本語のファイル", "😀 🚀 👍", "Ελληνικά", "Русский текст", "עברית", "العربية", "café naïve",
        "한국어", "/path/to/ファイル.txt?q=✓", "{\"k\":\"v\"}", "C:\\Users\\x",
        "plain ASCII: ~!@#$%^&*()_+`-=[]{}|;':\",./<>?"}) {
    EXPECT_EQ(visible(s), s) << s;
  }
}

TEST(Display, EveryByteAndRandomTextComesOutInertAndStable) {
  for (int b = 0; b < 256; ++b) {
    std::string s(1, static_cast<char>(b));
    const std::string shown = visible(s);
    EXPECT_TRUE(inert(shown)) << b << " -> " << shown;
  }
  std::mt19937 rng(13);
  for (int i = 0; i < 20000; ++i) {
    std::string s(rng() % 24, '\0');
    for (auto& c : s) c = static_cast<char>(rng() & 0xFF);
    const std::string shown = visible(s);
    ASSERT_TRUE(inert(shown)) << shown;
  }
}

TEST(Display, HtmlEscapeCoversMarkupAndAttributes) {
  EXPECT_EQ(html_escape("<b onclick='x'>\"&"), "&lt;b onclick=&#39;x&#39;&gt;&quot;&amp;");
  EXPECT_EQ(html_escape("日本語"), "日本語");
}

TEST(Display, ClipSaysHowMuchIsHiddenAndHowToSeeIt) {
  EXPECT_EQ(clip("short", 40, "acp pending --full"), "short");
  const std::string long_text(100, 'a');
  const std::string c = clip(long_text, 40, "acp pending --full");
  EXPECT_EQ(c, std::string(40, 'a') + "…[+60 bytes hidden: acp pending --full]");
  // Never in the middle of a character.
  const std::string jp = "日本語日本語";  // 3 bytes each
  const std::string cj = clip(jp, 4, "see all");
  EXPECT_EQ(cj, "日…[+15 bytes hidden: see all]");
}

TEST(Display, SummaryShowsTheWholeRequestWithItsEscapesVisible) {
  Action get;
  get.host = "127.0.0.1";
  get.port = 8080;
  get.method = "GET";
  get.path = "/status?x=1";
  EXPECT_EQ(summary(get), "GET 127.0.0.1:8080/status?x=1");
  get.path = "/files/" + u8(0x202E) + "txt.exe";
  EXPECT_EQ(summary(get), "GET 127.0.0.1:8080/files/\\u{202E}txt.exe");

  Action connect;
  connect.host = "::1";
  connect.port = 443;
  connect.method = "CONNECT";
  EXPECT_EQ(summary(connect), "CONNECT [::1]:443");

  Action mcp;
  mcp.kind = "mcp";
  mcp.server = "files";
  mcp.tool = "read\x1b[2K\rlist_dir";
  mcp.args = std::string(200, ' ') + "\"path\":\"/etc/shadow\"";
  const std::string s = summary(mcp);
  EXPECT_EQ(s.find('\x1b'), std::string::npos);
  EXPECT_NE(s.find("MCP tool read\\x1b[2K\\rlist_dir on files with "), std::string::npos) << s;
  EXPECT_NE(s.find("\"path\":\"/etc/shadow\""), std::string::npos) << s;  // never cut
}

TEST(Display, ApprovalReachSaysWhatALastingAnswerCovers) {
  Action get;
  get.host = "api.example";
  get.port = 80;
  get.method = "GET";
  get.path = "/status";
  auto r = approval_reach(get, std::chrono::seconds(600));
  EXPECT_EQ(r.once, "this request only");
  EXPECT_EQ(r.duration,
            "every http request to api.example:80, whatever its method and path (and "
            "www.api.example), for 10 min");
  EXPECT_EQ(r.session,
            "every http request to api.example:80, whatever its method and path, until this "
            "session ends");
  EXPECT_NE(r.always.find("in every session"), std::string::npos);

  Action mcp;
  mcp.kind = "mcp";
  mcp.host = "127.0.0.1";
  mcp.port = 3000;
  mcp.server = "files";
  mcp.tool = "delete" + u8(0x200B);
  r = approval_reach(mcp, std::chrono::seconds(60));
  EXPECT_EQ(r.session,
            "every call of MCP tool delete\\u{200B} on files (127.0.0.1:3000), whatever its "
            "arguments, until this session ends");
  EXPECT_NE(r.duration.find("for 1 min"), std::string::npos);
  // As the proxy builds them (mcp::tool_action), MCP actions name the server, not an address.
  mcp.host.clear();
  mcp.port = 0;
  r = approval_reach(mcp, std::chrono::seconds(60));
  EXPECT_EQ(r.session,
            "every call of MCP tool delete\\u{200B} on files, whatever its arguments, until this "
            "session ends");
}

}  // namespace
