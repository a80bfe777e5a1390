// Reading JSON-RPC messages for MCP consent: inspect(), the canonical form of tool arguments,
// ACP's error replies, and the chunked-body reader of the HTTP hook. See docs/mcp.md.
#include <algorithm>
#include <cctype>
#include <set>

#include "acp/proxy/mcp.hpp"

namespace acp::mcp {

namespace {

using json = nlohmann::json;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool all_space(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; });
}

// Looks at one element (the message itself, or one entry of a batch). Returns false with
// `why` set when it is a tools/call that cannot be judged.
bool read_element(const json& m, size_t index, Inspection& out, bool& rpc, std::string& why) {
  if (!m.is_object()) return true;
  auto method = m.find("method");
  auto id = m.find("id");
  if (method != m.end() || m.contains("jsonrpc")) rpc = true;
  if (method == m.end()) return true;  // a response the client sends (e.g. to sampling)
  if (id != m.end()) out.request_ids.emplace_back(index, *id);
  if (!method->is_string() || method->get_ref<const std::string&>() != "tools/call") return true;
  ToolCall call;
  call.index = index;
  call.has_id = id != m.end();
  if (call.has_id) call.id = *id;
  auto params = m.find("params");
  if (params == m.end() || !params->is_object()) {
    why = "tools/call without a params object";
    return false;
  }
  auto name = params->find("name");
  if (name == params->end() || !name->is_string() || name->get_ref<const std::string&>().empty()) {
    why = "tools/call without a tool name (params.name)";
    return false;
  }
  call.tool = name->get<std::string>();
  auto args = params->find("arguments");
  call.args = args == params->end() ? "{}" : canonical_json(*args);
  out.calls.push_back(std::move(call));
  return true;
}

}  // namespace

std::string canonical_json(const json& j) {
  // nlohmann's object_t is a std::map: keys come out sorted by byte order already.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Inspection inspect(std::string_view text) {
  Inspection out;
  if (all_space(text)) return out;
  // nlohmann's lexer takes a NUL for the end of input: "1\0{...tools/call...}" would read as
  // the number 1 while a server reads on. JSON text never holds a raw NUL.
  if (text.find('\0') != std::string_view::npos) {
    out.kind = Inspection::Kind::Invalid;
    out.reason = "holds a NUL byte (not JSON text)";
    return out;
  }
  // Duplicate keys and depth are checked while parsing: two parsers that keep different
  // copies of a duplicated "name" would judge one tool and run another.
  std::vector<std::set<std::string>> keys;
  std::string problem;
  auto cb = [&](int depth, json::parse_event_t ev, json& parsed) {
    if (!problem.empty()) return true;
    if (depth > kMaxDepth) {
      problem = "nested deeper than " + std::to_string(kMaxDepth) + " levels";
      return true;
    }
    switch (ev) {
      case json::parse_event_t::object_start:
        keys.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        break;
      case json::parse_event_t::key:
        if (!keys.empty() && parsed.is_string() &&
            !keys.back().insert(parsed.get<std::string>()).second)
          problem = "duplicate key \"" + parsed.get<std::string>() + "\"";
        break;
      default:
        break;
    }
    return true;
  };
  json doc;
  try {
    doc = json::parse(text.begin(), text.end(), cb, true, false);
  } catch (const json::exception& e) {
    out.kind = Inspection::Kind::Invalid;
    out.reason = std::string("not valid JSON (") + e.what() + ")";
    return out;
  }
  if (!problem.empty()) {
    out.kind = Inspection::Kind::Invalid;
    out.reason = problem;
    return out;
  }
  bool rpc = false;
  std::string why;
  bool ok = true;
  if (doc.is_array()) {
    out.batch = true;
    for (size_t i = 0; i < doc.size() && ok; ++i) ok = read_element(doc[i], i, out, rpc, why);
  } else {
    ok = read_element(doc, 0, out, rpc, why);
  }
  if (!ok) {
    out.kind = Inspection::Kind::Invalid;
    out.reason = why;
    out.calls.clear();
  } else if (!out.calls.empty()) {
    out.kind = Inspection::Kind::ToolCalls;
  } else {
    out.kind = rpc ? Inspection::Kind::NoToolCall : Inspection::Kind::NotJsonRpc;
  }
  return out;
}

Action tool_action(const ToolCall& call, const std::string& server, const std::string& session) {
  Action a;
  a.kind = "mcp";
  a.server = server;
  a.tool = call.tool;
  a.args = call.args;
  a.session = session;
  return a;
}

json error_response(const json& id, int code, const std::string& message, const std::string& reason,
                    const std::string& request_id) {
  json acp{{"reason", reason}};
  if (!request_id.empty()) acp["request_id"] = request_id;
  return json{{"jsonrpc", "2.0"},
              {"id", id},
              {"error", {{"code", code}, {"message", message}, {"data", {{"acp", acp}}}}}};
}

std::string refusal_reply(const Inspection& in, size_t refused_index, int code,
                          const std::string& message, const std::string& reason,
                          const std::string& request_id) {
  if (in.kind == Inspection::Kind::Invalid && in.request_ids.empty() && !in.batch)
    return canonical_json(error_response(nullptr, code, message, reason, request_id));
  json replies = json::array();
  for (const auto& [index, id] : in.request_ids) {
    if (index == refused_index || in.kind == Inspection::Kind::Invalid) {
      replies.push_back(error_response(id, code, message, reason, request_id));
    } else {
      replies.push_back(error_response(id, kCodeBatchRefused,
                                       "ACP refused the whole batch: request " +
                                           std::to_string(refused_index + 1) +
                                           " in it was denied (" + message + ")",
                                       reason, request_id));
    }
  }
  if (replies.empty()) {
    // Only notifications: nothing to answer, except a batch that cannot be read at all.
    if (in.kind == Inspection::Kind::Invalid && in.batch)
      return canonical_json(error_response(nullptr, code, message, reason, request_id));
    return {};
  }
  if (!in.batch) return canonical_json(replies[0]);
  return canonical_json(replies);
}

boost::asio::awaitable<Outcome> judge_message(Inspection in, std::string server,
                                              std::string session, JudgeFn judge) {
  Outcome out;
  if (in.kind == Inspection::Kind::Invalid) {
    out.forward = false;
    out.reason = "ACP cannot inspect this JSON-RPC message: " + in.reason;
    out.reply = refusal_reply(in, SIZE_MAX, kCodeUninspectable, "ACP refused: " + out.reason,
                              out.reason, {});
    co_return out;
  }
  for (const auto& call : in.calls) {
    Judgement j = co_await judge(tool_action(call, server, session));
    ++out.judged;
    out.request_ids.push_back(j.request_id);
    if (j.allowed) continue;
    out.forward = false;
    out.reason = j.reason;
    out.request_id = j.request_id;
    out.reply =
        refusal_reply(in, call.index, kCodeDenied,
                      "ACP denied the tool call '" + call.tool + "' on " + server + ": " + j.reason,
                      j.reason, j.request_id);
    break;
  }
  co_return out;
}

Dechunk dechunk(std::string_view raw, std::string& body, size_t& consumed, size_t max_body) {
  body.clear();
  size_t pos = 0;
  auto line_end = [&](size_t from) { return raw.find("\r\n", from); };
  for (;;) {
    size_t eol = line_end(pos);
    if (eol == std::string_view::npos)
      return raw.size() - pos > 1024 ? Dechunk::Bad : Dechunk::NeedMore;
    std::string_view line = raw.substr(pos, eol - pos);
    size_t semi = line.find(';');
    std::string_view hex = line.substr(0, semi);
    if (hex.empty() || hex.size() > 16) return Dechunk::Bad;
    uint64_t size = 0;
    for (char c : hex) {
      int v = std::isdigit(static_cast<unsigned char>(c)) ? c - '0'
              : (c >= 'a' && c <= 'f')                    ? c - 'a' + 10
              : (c >= 'A' && c <= 'F')                    ? c - 'A' + 10
                                                          : -1;
      if (v < 0) return Dechunk::Bad;
      size = size * 16 + static_cast<uint64_t>(v);
    }
    pos = eol + 2;
    if (size == 0) break;
    if (size > max_body || body.size() + size > max_body) return Dechunk::TooLarge;
    if (raw.size() - pos < size + 2) return Dechunk::NeedMore;
    body.append(raw.substr(pos, size));
    pos += size;
    if (raw.substr(pos, 2) != "\r\n") return Dechunk::Bad;
    pos += 2;
  }
  // Trailer fields, then the empty line.
  for (;;) {
    size_t eol = line_end(pos);
    if (eol == std::string_view::npos)
      return raw.size() - pos > 8192 ? Dechunk::Bad : Dechunk::NeedMore;
    bool empty = eol == pos;
    pos = eol + 2;
    if (empty) break;
  }
  consumed = pos;
  return Dechunk::Complete;
}

bool is_json_post(std::string_view method, std::string_view content_type) {
  return method == "POST" && lower(content_type).find("json") != std::string::npos;
}

bool has_mcp_signs(std::string_view accept, bool has_session_id, bool has_protocol_version) {
  return has_session_id || has_protocol_version ||
         lower(accept).find("text/event-stream") != std::string::npos;
}

bool identity_coding(std::string_view content_encoding) {
  for (size_t pos = 0; pos <= content_encoding.size();) {
    size_t comma = content_encoding.find(',', pos);
    if (comma == std::string_view::npos) comma = content_encoding.size();
    auto token = content_encoding.substr(pos, comma - pos);
    while (!token.empty() && (token.front() == ' ' || token.front() == '\t'))
      token.remove_prefix(1);
    while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
    if (!token.empty() && lower(token) != "identity") return false;
    pos = comma + 1;
  }
  return true;
}

bool utf8_charset(std::string_view content_type) {
  const std::string ct = lower(content_type);
  for (size_t pos = ct.find("charset"); pos != std::string::npos;
       pos = ct.find("charset", pos + 1)) {
    size_t i = pos + 7;
    while (i < ct.size() && (ct[i] == ' ' || ct[i] == '\t')) ++i;
    if (i >= ct.size() || ct[i] != '=') continue;  // "charset" inside another word or value
    ++i;
    while (i < ct.size() && (ct[i] == ' ' || ct[i] == '\t' || ct[i] == '"')) ++i;
    size_t end = i;
    while (end < ct.size() && ct[end] != ';' && ct[end] != ',' && ct[end] != '"' &&
           ct[end] != ' ' && ct[end] != '\t')
      ++end;
    const std::string_view value = std::string_view(ct).substr(i, end - i);
    if (value != "utf-8" && value != "utf8") return false;
  }
  return true;
}

}  // namespace acp::mcp
