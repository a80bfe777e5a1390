// How agent-controlled text reaches a human: the one place that makes it visible, and the one
// summary of a request that every channel shows (terminal prompt, `acp pending`, `acp status`,
// the web page, Telegram, the webhook's human text). The agent picks hosts, paths, MCP tool
// names and arguments; a terminal, a browser or a chat client must show exactly those bytes,
// not obey them (ANSI escapes that redraw the question, U+202E that reverses a path, a
// zero-width space that makes two names look alike). See docs/consent.md, "What the human sees".
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

#include "acp/proxy/action.hpp"

namespace acp::consent {

// `s` with every character a human could not see or that could change how the rest is shown
// replaced by a visible escape: C0 controls and DEL (\n, \r, \t, else \x1b), invalid UTF-8
// (each bad byte as \xNN), C1 controls, bidi controls, zero-width and other invisible or
// look-alike spacing characters, line/paragraph separators, tags and variation selectors
// (\u{202E}). Printable text in any script, emoji included, passes unchanged. The result is
// printable UTF-8 with no control characters: safe for a terminal as it is; still escape it
// for HTML or chat markup (html_escape) where the medium has markup.
std::string visible(std::string_view s);

// & < > " ' as HTML entities (for Telegram's HTML parse mode and any server-made HTML).
std::string html_escape(std::string_view s);

// `shown` (already visible) cut to at most `max_bytes` at a character boundary, with what was
// cut said: "…[+123 bytes hidden: <how_to_see_all>]". Returned unchanged when it fits.
std::string clip(std::string_view shown, std::size_t max_bytes, std::string_view how_to_see_all);

// The request in one line, every agent-controlled part visible():
//   GET 127.0.0.1:8080/status?x=1 | CONNECT example.com:443 | MCP tool T on S with {args}
// The prompt, the page, `acp pending`, Telegram and the webhook all show this text.
std::string summary(const Action& a);

// What each answer to an ask would let through, in words (visible()), for the prompt and the
// page: a lasting approval covers more than the request shown (see ConsentGate::covered).
struct ApprovalReach {
  std::string once, duration, session, always;
};
ApprovalReach approval_reach(const Action& a, std::chrono::seconds duration);

}  // namespace acp::consent
