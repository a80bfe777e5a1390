// What a human is shown (acp/proxy/display.hpp).
#include "acp/proxy/display.hpp"

#include <cstdio>

namespace acp::consent {
namespace {

// The length of the well-formed UTF-8 sequence at s[i] (RFC 3629: no overlongs, no surrogates,
// nothing past U+10FFFF) and its code point; 0 when the bytes there are not one.
std::size_t decode(std::string_view s, std::size_t i, char32_t& cp) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  std::size_t n;
  unsigned char lo = 0x80, hi = 0xBF;  // the second byte's range
  if (c < 0x80) {
    cp = c;
    return 1;
  } else if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    cp = c & 0x0F;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;  // U+D800..DFFF are surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    cp = c & 0x07;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (b(1) < lo || b(1) > hi) return 0;
  cp = (cp << 6) | (b(1) & 0x3F);
  for (std::size_t k = 2; k < n; ++k) {
    if ((b(k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(k) & 0x3F);
  }
  return n;
}

// Code points that show nothing, look like an ordinary space, or change how the text around
// them is laid out. Printable characters of every script are not here.
bool hidden(char32_t c) {
  struct Range {
    char32_t lo, hi;
  };
  static constexpr Range kHidden[] = {
      {0x0080, 0x009F},    // C1 controls (0x9B is a CSI on some terminals)
      {0x00A0, 0x00A0},    // no-break space
      {0x00AD, 0x00AD},    // soft hyphen
      {0x034F, 0x034F},    // combining grapheme joiner
      {0x061C, 0x061C},    // Arabic letter mark (bidi)
      {0x115F, 0x1160},    // Hangul fillers
      {0x1680, 0x1680},    // Ogham space mark
      {0x17B4, 0x17B5},    // Khmer inherent vowels (invisible)
      {0x180B, 0x180F},    // Mongolian variation selectors and vowel separator
      {0x2000, 0x200F},    // spaces of other widths, zero-width space/joiners, LRM, RLM
      {0x2028, 0x202F},    // line/paragraph separators, bidi embeddings/overrides, narrow space
      {0x205F, 0x206F},    // math space, word joiner, invisible operators, bidi isolates
      {0x2800, 0x2800},    // braille blank
      {0x3000, 0x3000},    // ideographic space
      {0x3164, 0x3164},    // Hangul filler
      {0xFDD0, 0xFDEF},    // noncharacters
      {0xFE00, 0xFE0F},    // variation selectors
      {0xFEFF, 0xFEFF},    // zero-width no-break space (BOM)
      {0xFFA0, 0xFFA0},    // halfwidth Hangul filler
      {0xFFF9, 0xFFFB},    // interlinear annotation controls
      {0x1BCA0, 0x1BCA3},  // shorthand format controls
      {0x1D173, 0x1D17A},  // musical format controls
      {0xE0000, 0xE007F},  // tags
      {0xE0100, 0xE01EF},  // variation selectors supplement
  };
  if ((c & 0xFFFE) == 0xFFFE) return true;  // U+xxFFFE, U+xxFFFF: noncharacters
  for (const auto& r : kHidden)
    if (c >= r.lo && c <= r.hi) return true;
  return false;
}

void append_hex_byte(std::string& out, unsigned char c) {
  char b[5];
  std::snprintf(b, sizeof b, "\\x%02x", c);
  out += b;
}

std::string bracketed(const std::string& host) {
  return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

std::string human_duration(std::chrono::seconds s) {
  auto n = s.count();
  if (n >= 86400 && n % 86400 == 0) return std::to_string(n / 86400) + " d";
  if (n >= 3600 && n % 3600 == 0) return std::to_string(n / 3600) + " h";
  if (n >= 60 && n % 60 == 0) return std::to_string(n / 60) + " min";
  return std::to_string(n) + " s";
}

}  // namespace

std::string visible(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    char32_t cp = 0;
    std::size_t n = decode(s, i, cp);
    if (n == 0) {  // not UTF-8: the byte as it is, never a replacement character that hides it
      append_hex_byte(out, static_cast<unsigned char>(s[i]));
      ++i;
      continue;
    }
    if (cp < 0x20 || cp == 0x7F) {
      if (cp == '\n')
        out += "\\n";
      else if (cp == '\r')
        out += "\\r";
      else if (cp == '\t')
        out += "\\t";
      else
        append_hex_byte(out, static_cast<unsigned char>(cp));
    } else if (hidden(cp)) {
      char b[16];
      std::snprintf(b, sizeof b, "\\u{%04X}", static_cast<unsigned>(cp));
      out += b;
    } else {
      out.append(s.substr(i, n));
    }
    i += n;
  }
  return out;
}

std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string clip(std::string_view shown, std::size_t max_bytes, std::string_view how_to_see_all) {
  if (shown.size() <= max_bytes) return std::string(shown);
  std::size_t cut = max_bytes;
  while (cut > 0 && (static_cast<unsigned char>(shown[cut]) & 0xC0) == 0x80) --cut;
  std::string out(shown.substr(0, cut));
  out += "…[+" + std::to_string(shown.size() - cut) + " bytes hidden: ";
  out += how_to_see_all;
  out += "]";
  return out;
}

std::string summary(const Action& a) {
  if (a.kind == "mcp")
    return "MCP tool " + visible(a.tool) + " on " + visible(a.server) + " with " +
           (a.args.empty() ? std::string("{}") : visible(a.args));
  if (a.kind != "http" && !a.name.empty())
    return visible(a.kind) + " " + visible(a.name) + (a.args.empty() ? "" : " " + visible(a.args));
  std::string s = (a.method.empty() ? std::string("CONNECT") : visible(a.method)) + " " +
                  visible(bracketed(a.host)) + ":" + std::to_string(a.port) + visible(a.path);
  if (a.kind != "http") s = visible(a.kind) + " " + s;
  return s;
}

ApprovalReach approval_reach(const Action& a, std::chrono::seconds duration) {
  // As ConsentGate::covered() matches grants: kind, host, port, and for MCP server and tool.
  std::string what;
  bool has_twin = false;
  if (a.kind == "mcp") {
    // MCP actions carry the server's name, not an address (mcp::tool_action).
    what =
        "every call of MCP tool " + visible(a.tool) + " on " + visible(a.server) +
        (a.host.empty() ? std::string()
                        : " (" + visible(bracketed(a.host)) + ":" + std::to_string(a.port) + ")") +
        ", whatever its arguments";
  } else if (a.host.empty()) {
    what = "every " + visible(a.kind) + " action, whatever its name and arguments";
  } else {
    what = "every " + visible(a.kind) + " request to " + visible(bracketed(a.host)) + ":" +
           std::to_string(a.port) + ", whatever its method and path";
    // The www. twin (upstream's duration grants): names only, not addresses.
    has_twin = a.host.find(':') == std::string::npos &&
               a.host.find_first_of("abcdefghijklmnopqrstuvwxyz") != std::string::npos;
  }
  ApprovalReach r;
  r.once = "this request only";
  r.duration = what;
  if (has_twin) {
    const bool www = a.host.rfind("www.", 0) == 0;
    r.duration += " (and " + visible(www ? a.host.substr(4) : "www." + a.host) + ")";
  }
  r.duration += ", for " + human_duration(duration);
  r.session = what + ", until this session ends";
  r.always = what + ", in every session, until removed from the grants file";
  return r;
}

}  // namespace acp::consent
