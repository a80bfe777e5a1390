// The fast path of the policy YAML reader: a line-oriented parser for the subset of YAML that
// policy files use. libyaml parses about 17 MB/s, too slow for 100k rules in 100 ms; this reads
// the same files several times faster. It gives up (nullopt) on anything outside the subset
// or anything doubtful (anchors, tags, block scalars, multi-line scalars or flows, tabs, CR,
// escapes other than the common ones, non-ASCII outside comments); libyaml then decides.
#include <array>
#include <cstring>

#include "acp/proxy/policy_yaml.hpp"

namespace acp::policy::yaml {
namespace {

// Characters that end or complicate a plain scalar: in block context and in flow context.
constexpr uint8_t kStopBlock = 1, kStopFlow = 2;
constexpr auto kStop = [] {
  std::array<uint8_t, 256> t{};
  t[':'] = t['#'] = kStopBlock;
  for (int c = 0x80; c < 0x100; ++c) t[c] = kStopBlock;
  for (unsigned char c : {',', '[', ']', '{', '}'}) t[c] = kStopFlow;
  return t;
}();

// Whether libyaml reads every character of `t` as the fast path does: well-formed UTF-8 (no
// overlong forms, surrogates or values past U+10FFFF), only the characters YAML 1.1 calls
// printable, and no line break other than '\n' (and "\r\n", which the fast path refuses). The
// fast path skips comments without looking at them, so it must not accept a file that libyaml
// refuses for a byte in a comment (found by fuzz/fuzz_policy.cpp).
bool readable_by_libyaml(std::string_view t) {
  const auto* p = reinterpret_cast<const unsigned char*>(t.data());
  const auto* end = p + t.size();
  while (p < end) {
    unsigned c = *p;
    if (c < 0x80) {
      if (!(c == '\t' || c == '\n' || c == '\r' || (c >= 0x20 && c <= 0x7e))) return false;
      ++p;
      continue;
    }
    int width = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
    if (width == 0 || end - p < width) return false;
    uint32_t v = c & (width == 2 ? 0x1f : width == 3 ? 0x0f : 0x07);
    for (int k = 1; k < width; ++k) {
      if ((p[k] & 0xc0) != 0x80) return false;
      v = (v << 6) | (p[k] & 0x3f);
    }
    if ((width == 2 && v < 0x80) || (width == 3 && v < 0x800) || (width == 4 && v < 0x10000))
      return false;  // overlong
    bool printable = v == 0x85 || (v >= 0xa0 && v <= 0xd7ff) ||
                     (v >= 0xe000 && v <= 0xfffd && v != 0xfeff) || (v >= 0x10000 && v <= 0x10ffff);
    // NEL, LS and PS end a line for libyaml (a comment ends there and text after it counts);
    // the fast path splits lines at '\n' only.
    bool line_break = v == 0x85 || v == 0x2028 || v == 0x2029;
    if (!printable || line_break) return false;
    p += width;
  }
  return true;
}

class FastParser {
 public:
  explicit FastParser(std::string_view text) : t_(text) {}

  std::optional<Document> run() {
    if (!readable_by_libyaml(t_)) return std::nullopt;
    if (!split_lines()) return std::nullopt;
    if (lines_.empty()) return std::nullopt;    // empty document: libyaml words the error
    doc_.nodes.reserve(lines_.size() * 5 + 8);  // ~4.5 per line in rule lists
    uint32_t root = block_node(-1);
    if (fail_ || root == kNone || cur_ != lines_.size()) return std::nullopt;
    if (root != 0) return std::nullopt;  // root is always created first
    doc_.used_fast_path = true;
    return std::move(doc_);
  }

 private:
  struct Line {
    uint32_t start;  // offset of the line
    uint32_t begin;  // offset of the first content character
    uint32_t end;    // offset of the line end (no newline)
    int indent;      // column of `begin`
    uint32_t lineno;
  };

  bool split_lines() {
    size_t pos = 0;
    uint32_t lineno = 0;
    const size_t n = t_.size();
    if (n > UINT32_MAX / 2) return false;
    while (pos < n) {
      ++lineno;
      const char* nl = static_cast<const char*>(std::memchr(t_.data() + pos, '\n', n - pos));
      size_t end = nl ? static_cast<size_t>(nl - t_.data()) : n;
      size_t b = pos;
      while (b < end && t_[b] == ' ') ++b;
      if (b < end && t_[b] != '#') {
        // Document markers and directives are outside the subset.
        if (b == pos && end - b >= 3 &&
            (t_.compare(b, 3, "---") == 0 || t_.compare(b, 3, "...") == 0))
          return false;
        lines_.push_back(Line{static_cast<uint32_t>(pos), static_cast<uint32_t>(b),
                              static_cast<uint32_t>(end), static_cast<int>(b - pos), lineno});
      }
      // Control characters anywhere (tab, CR, NUL...) send the file to libyaml. Branch-free
      // so that the compiler vectorizes it.
      unsigned bad = 0;
      for (size_t i = pos; i < end; ++i) {
        const unsigned char c = static_cast<unsigned char>(t_[i]);
        bad |= static_cast<unsigned>(c < 0x20) | static_cast<unsigned>(c == 0x7f);
      }
      if (bad) return false;
      pos = end + 1;
    }
    return true;
  }

  uint32_t add(NodeKind k, uint32_t line, std::string_view text = {}, bool plain = true) {
    Node node;
    node.kind = k;
    node.line = line;
    node.text = text;
    node.plain = plain;
    doc_.nodes.push_back(node);
    return static_cast<uint32_t>(doc_.nodes.size() - 1);
  }
  void append(uint32_t parent, uint32_t& last, uint32_t child) {
    if (last == kNone)
      doc_.nodes[parent].first = child;
    else
      doc_.nodes[last].next = child;
    last = child;
  }
  uint32_t bail() {
    fail_ = true;
    return kNone;
  }

  bool is_seq_item(const Line& l) const {
    return t_[l.begin] == '-' && (l.begin + 1 == l.end || t_[l.begin + 1] == ' ');
  }
  bool at_line_end(const Line& l, uint32_t pos) const {
    while (pos < l.end && t_[pos] == ' ') ++pos;
    if (pos == l.end) return true;
    // A comment needs a space before it.
    return t_[pos] == '#' && t_[pos - 1] == ' ';
  }

  uint32_t block_node(int parent_indent) {
    if (cur_ >= lines_.size() || lines_[cur_].indent <= parent_indent) return bail();
    const Line& l = lines_[cur_];
    return is_seq_item(l) ? block_seq(l.indent) : block_map(l.indent);
  }

  uint32_t block_map(int n) {
    uint32_t map = add(NodeKind::Mapping, lines_[cur_].lineno);
    uint32_t last = kNone;
    while (!fail_ && cur_ < lines_.size() && lines_[cur_].indent == n &&
           !is_seq_item(lines_[cur_])) {
      const Line& l = lines_[cur_];
      uint32_t pos = l.begin;
      uint32_t key = scalar(l, pos, /*flow=*/false, /*key=*/true);
      if (key == kNone) return bail();
      if (pos >= l.end || t_[pos] != ':') return bail();
      ++pos;  // ':' is followed by a space or the line end (checked by scalar())
      skip_spaces(l, pos);
      uint32_t value;
      if (at_line_end(l, pos)) {
        uint32_t keyline = l.lineno;
        ++cur_;
        if (cur_ < lines_.size() && lines_[cur_].indent > n)
          value = block_node(n);
        else if (cur_ < lines_.size() && lines_[cur_].indent == n && is_seq_item(lines_[cur_]))
          value = block_seq(n);
        else
          value = add(NodeKind::Scalar, keyline);
      } else {
        value = inline_value(l, pos);
        ++cur_;
        if (cur_ < lines_.size() && lines_[cur_].indent > n) return bail();
      }
      if (value == kNone || fail_) return bail();
      append(map, last, key);
      append(map, last, value);
    }
    if (cur_ < lines_.size() && lines_[cur_].indent >= n) {
      // Same indent but a sequence item, or deeper: not a shape the subset knows.
      if (lines_[cur_].indent > n || is_seq_item(lines_[cur_])) return bail();
    }
    return map;
  }

  uint32_t block_seq(int n) {
    uint32_t seq = add(NodeKind::Sequence, lines_[cur_].lineno);
    uint32_t last = kNone;
    while (!fail_ && cur_ < lines_.size() && lines_[cur_].indent == n &&
           is_seq_item(lines_[cur_])) {
      Line& l = lines_[cur_];
      uint32_t c = l.begin + 1;
      while (c < l.end && t_[c] == ' ') ++c;
      uint32_t value;
      if (c == l.end || t_[c] == '#') {
        uint32_t itemline = l.lineno;
        ++cur_;
        if (cur_ < lines_.size() && lines_[cur_].indent > n)
          value = block_node(n);
        else
          value = add(NodeKind::Scalar, itemline);
      } else if (t_[c] == '-' && (c + 1 == l.end || t_[c + 1] == ' ')) {
        return bail();
      } else if (line_has_key_at(l, c)) {
        // "- key: value": a block mapping whose indent is the key's column.
        l.begin = c;
        l.indent = static_cast<int>(c - l.start);
        value = block_map(l.indent);
      } else {
        value = inline_value(l, c);
        ++cur_;
        if (cur_ < lines_.size() && lines_[cur_].indent > n) return bail();
      }
      if (value == kNone || fail_) return bail();
      append(seq, last, value);
    }
    if (cur_ < lines_.size() && lines_[cur_].indent > n) return bail();
    return seq;
  }

  bool line_has_key_at(const Line& l, uint32_t pos) {
    char c = t_[pos];
    if (c == '{' || c == '[') return false;
    if (c == '"' || c == '\'') {
      uint32_t i = pos + 1;
      while (i < l.end && t_[i] != c) i += (c == '"' && t_[i] == '\\') ? 2 : 1;
      if (i >= l.end) return false;
      ++i;
      while (i < l.end && t_[i] == ' ') ++i;
      return i < l.end && t_[i] == ':' && (i + 1 == l.end || t_[i + 1] == ' ');
    }
    for (uint32_t i = pos; i < l.end; ++i) {
      if (t_[i] == ':' && (i + 1 == l.end || t_[i + 1] == ' ')) return true;
      if (t_[i] == '#' && i > pos && t_[i - 1] == ' ') return false;
    }
    return false;
  }

  // A value on the rest of the line: a flow collection or a scalar, then the line end.
  uint32_t inline_value(const Line& l, uint32_t pos) {
    uint32_t v;
    if (t_[pos] == '{' || t_[pos] == '[') {
      v = flow_node(l, pos);
    } else {
      v = scalar(l, pos, /*flow=*/false, /*key=*/false);
    }
    if (v == kNone || !at_line_end(l, pos)) return bail();
    return v;
  }

  static bool is_flow_indicator(char c) {
    return c == ',' || c == '[' || c == ']' || c == '{' || c == '}';
  }

  // A scalar starting at pos; advances pos past it (and past trailing spaces for keys).
  uint32_t scalar(const Line& l, uint32_t& pos, bool flow, bool key) {
    if (pos >= l.end) return bail();
    char c = t_[pos];
    if (c == '"' || c == '\'') {
      uint32_t node = quoted(l, pos);
      if (node == kNone) return kNone;
      if (key) {
        while (pos < l.end && t_[pos] == ' ') ++pos;
        if (pos >= l.end || t_[pos] != ':' || (pos + 1 < l.end && t_[pos + 1] != ' '))
          return bail();
      }
      return node;
    }
    // Indicators that start anchors, aliases, tags, block scalars, directives, reserved.
    switch (c) {
      case '&':
      case '*':
      case '!':
      case '|':
      case '>':
      case '%':
      case '@':
      case '`':
      case '#':
      case ',':
      case '[':
      case ']':
      case '{':
      case '}':
      case '-':
      case '?':
      case ':':  // rare forms as a first character; libyaml decides
        return bail();
      default:
        break;
    }
    uint32_t i = pos;
    const uint8_t mask = flow ? (kStopBlock | kStopFlow) : kStopBlock;
    for (;;) {
      while (i < l.end && !(kStop[static_cast<unsigned char>(t_[i])] & mask)) ++i;
      if (i >= l.end) break;
      const char ch = t_[i];
      if (static_cast<unsigned char>(ch) >= 0x80) return bail();
      if (ch == ':') {
        if (i + 1 == l.end || t_[i + 1] == ' ') break;
        if (flow) return bail();
      } else if (ch == '#') {
        if (t_[i - 1] == ' ') break;
      } else {
        break;  // a flow indicator
      }
      ++i;
    }
    uint32_t e = i;
    while (e > pos && t_[e - 1] == ' ') --e;
    if (e == pos) return bail();
    bool is_key_end = i < l.end && t_[i] == ':';
    if (!flow && key != is_key_end) return bail();
    const uint32_t b = pos;
    pos = i;
    return add(NodeKind::Scalar, l.lineno, t_.substr(b, e - b), true);
  }

  uint32_t quoted(const Line& l, uint32_t& pos) {
    char q = t_[pos];
    uint32_t b = pos + 1;
    uint32_t i = b;
    bool escaped = false;
    while (i < l.end && t_[i] != q) {
      if (static_cast<unsigned char>(t_[i]) >= 0x80) return bail();
      if (q == '"' && t_[i] == '\\') {
        escaped = true;
        i += 2;
        continue;
      }
      ++i;
    }
    if (q == '\'') {
      // '' is an escaped quote: keep scanning past pairs.
      while (i + 1 < l.end && t_[i] == '\'' && t_[i + 1] == '\'') {
        escaped = true;
        i += 2;
        while (i < l.end && t_[i] != '\'') {
          if (static_cast<unsigned char>(t_[i]) >= 0x80) return bail();
          ++i;
        }
      }
    }
    if (i >= l.end) return bail();  // multi-line quoted scalar
    std::string_view raw = t_.substr(b, i - b);
    pos = i + 1;
    if (!escaped) return add(NodeKind::Scalar, l.lineno, raw, false);
    std::string out;
    out.reserve(raw.size());
    for (size_t k = 0; k < raw.size(); ++k) {
      char c = raw[k];
      if (q == '\'') {
        out.push_back(c);
        if (c == '\'') ++k;  // the pair
        continue;
      }
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      if (++k >= raw.size()) return bail();
      switch (raw[k]) {
        case '\\':
          out.push_back('\\');
          break;
        case '"':
          out.push_back('"');
          break;
        case '/':
          out.push_back('/');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'r':
          out.push_back('\r');
          break;
        default:
          return bail();
      }
    }
    doc_.owned.push_back(std::move(out));
    return add(NodeKind::Scalar, l.lineno, doc_.owned.back(), false);
  }

  void skip_spaces(const Line& l, uint32_t& pos) const {
    while (pos < l.end && t_[pos] == ' ') ++pos;
  }

  uint32_t flow_node(const Line& l, uint32_t& pos) {
    skip_spaces(l, pos);
    if (pos >= l.end) return bail();
    char c = t_[pos];
    if (c == '{' || c == '[') {
      const bool is_map = c == '{';
      const char close = is_map ? '}' : ']';
      uint32_t node = add(is_map ? NodeKind::Mapping : NodeKind::Sequence, l.lineno);
      uint32_t last = kNone;
      ++pos;
      for (;;) {
        skip_spaces(l, pos);
        if (pos >= l.end) return bail();
        if (t_[pos] == close) {
          ++pos;
          return node;
        }
        if (is_map) {
          if (t_[pos] == '{' || t_[pos] == '[') return bail();
          uint32_t key = flow_scalar(l, pos);
          if (key == kNone) return kNone;
          skip_spaces(l, pos);
          if (pos + 1 >= l.end || t_[pos] != ':' || t_[pos + 1] != ' ') return bail();
          ++pos;
          skip_spaces(l, pos);
          if (pos >= l.end || t_[pos] == ',' || t_[pos] == '}') return bail();
          uint32_t value = flow_node(l, pos);
          if (value == kNone) return kNone;
          append(node, last, key);
          append(node, last, value);
        } else {
          uint32_t value = flow_node(l, pos);
          if (value == kNone) return kNone;
          append(node, last, value);
        }
        skip_spaces(l, pos);
        if (pos >= l.end) return bail();
        if (t_[pos] == ',') {
          ++pos;
        } else if (t_[pos] != close) {
          return bail();
        }
      }
    }
    return flow_scalar(l, pos);
  }

  uint32_t flow_scalar(const Line& l, uint32_t& pos) {
    if (t_[pos] == '"' || t_[pos] == '\'') return quoted(l, pos);
    return scalar(l, pos, /*flow=*/true, /*key=*/false);
  }

  std::string_view t_;
  std::vector<Line> lines_;
  size_t cur_ = 0;
  bool fail_ = false;
  Document doc_;
};

}  // namespace

std::optional<Document> parse_fast(std::string_view text) {
  return FastParser(text).run();
}

}  // namespace acp::policy::yaml
