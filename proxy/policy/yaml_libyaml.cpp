// The policy YAML reader: libyaml's event parser builds the small document the loader
// validates, with line numbers, and words syntax errors.
#include <yaml.h>

#include <memory>
#include <optional>

#include "acp/proxy/policy_yaml.hpp"

namespace acp::policy::yaml {
namespace {

std::string at(const std::string& source, size_t line) {
  return source + ":" + std::to_string(line) + ": ";
}

// YAML forbids tabs in indentation; libyaml's words for it ("found character that cannot
// start any token") do not say so.
std::optional<Error> find_tab_indent(std::string_view text, const std::string& source) {
  if (text.find('\t') == std::string_view::npos) return std::nullopt;
  size_t line = 1;
  bool in_indent = true;
  for (char c : text) {
    if (c == '\n') {
      ++line;
      in_indent = true;
    } else if (in_indent && c == '\t') {
      return make_error(at(source, line) +
                        "tab character in indentation; YAML indents with spaces only");
    } else if (c != ' ') {
      in_indent = false;
    }
  }
  return std::nullopt;
}

struct ParserDeleter {
  void operator()(yaml_parser_t* p) const {
    yaml_parser_delete(p);
    delete p;
  }
};

Result<Document> parse_libyaml(std::string_view text, const std::string& source) {
  std::unique_ptr<yaml_parser_t, ParserDeleter> parser(new yaml_parser_t);
  if (!yaml_parser_initialize(parser.get())) return make_error("libyaml: out of memory");
  yaml_parser_set_input_string(parser.get(), reinterpret_cast<const unsigned char*>(text.data()),
                               text.size());
  Document doc;
  struct Open {
    uint32_t node;
    uint32_t last;
  };
  std::vector<Open> stack;
  int documents = 0;
  auto attach = [&](uint32_t child) -> void {
    if (stack.empty()) return;
    Open& o = stack.back();
    if (o.last == kNone)
      doc.nodes[o.node].first = child;
    else
      doc.nodes[o.last].next = child;
    o.last = child;
  };
  for (;;) {
    yaml_event_t ev;
    if (!yaml_parser_parse(parser.get(), &ev)) {
      const yaml_parser_t& p = *parser;
      std::string msg = at(source, p.problem_mark.line + 1) +
                        "YAML syntax error: " + (p.problem ? p.problem : "unknown problem");
      if (p.context) msg += std::string(" (") + p.context + ")";
      if (p.context && std::string_view(p.context).find("alias") != std::string_view::npos)
        msg += "; a value that starts with * must be quoted, e.g. host: \"*.example.com\"";
      return make_error(std::move(msg));
    }
    std::unique_ptr<yaml_event_t, void (*)(yaml_event_t*)> guard(&ev, yaml_event_delete);
    const uint32_t line = static_cast<uint32_t>(ev.start_mark.line + 1);
    switch (ev.type) {
      case YAML_STREAM_END_EVENT:
        return doc;
      case YAML_DOCUMENT_START_EVENT:
        if (++documents > 1)
          return make_error(at(source, line) + "a policy file holds one YAML document, not more");
        break;
      case YAML_ALIAS_EVENT:
        return make_error(at(source, line) + "YAML aliases (*" +
                          reinterpret_cast<const char*>(ev.data.alias.anchor) +
                          ") are not supported; a glob that starts with * must be quoted, "
                          "e.g. host: \"*.example.com\"");
      case YAML_SCALAR_EVENT: {
        if (ev.data.scalar.tag && !ev.data.scalar.plain_implicit && !ev.data.scalar.quoted_implicit)
          return make_error(at(source, line) + "YAML tags (!" +
                            reinterpret_cast<const char*>(ev.data.scalar.tag) +
                            ") are not supported");
        doc.owned.emplace_back(reinterpret_cast<const char*>(ev.data.scalar.value),
                               ev.data.scalar.length);
        Node n;
        n.kind = NodeKind::Scalar;
        n.line = line;
        n.plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        n.text = doc.owned.back();
        doc.nodes.push_back(n);
        attach(static_cast<uint32_t>(doc.nodes.size() - 1));
        break;
      }
      case YAML_SEQUENCE_START_EVENT:
      case YAML_MAPPING_START_EVENT: {
        Node n;
        n.kind = ev.type == YAML_SEQUENCE_START_EVENT ? NodeKind::Sequence : NodeKind::Mapping;
        n.line = line;
        doc.nodes.push_back(n);
        uint32_t idx = static_cast<uint32_t>(doc.nodes.size() - 1);
        attach(idx);
        stack.push_back(Open{idx, kNone});
        break;
      }
      case YAML_SEQUENCE_END_EVENT:
      case YAML_MAPPING_END_EVENT:
        if (!stack.empty()) stack.pop_back();
        break;
      default:
        break;
    }
  }
}

}  // namespace

Result<Document> parse(std::string_view text, const std::string& source) {
  if (auto tab = find_tab_indent(text, source)) return *tab;
  return parse_libyaml(text, source);
}

}  // namespace acp::policy::yaml
