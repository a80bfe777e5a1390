// MCP tool-call consent: what ACP reads in a JSON-RPC message (one HTTP body of the Streamable
// HTTP transport, or one line of the stdio transport), and how it judges and refuses the
// `tools/call` requests in it. Pure parsing and reply building here, so that the proxy hook
// (proxy/server/mcp_gate.cpp), the stdio wrapper (`acp mcp`, proxy/mcp/stdio_relay.cpp)
// and the fuzzer (fuzz/fuzz_mcp.cpp) run exactly the same code. See docs/mcp.md.
#pragma once

#include <utility>  // before boost/asio/awaitable.hpp (Boost 1.74)

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>

#include "acp/proxy/action.hpp"

namespace acp::mcp {

// The largest JSON-RPC body the HTTP hook reads into memory to judge (docs/mcp.md says what
// happens to larger ones).
inline constexpr size_t kMaxHttpBodyBytes = 1024 * 1024;
// The largest stdio line `acp mcp` holds; a longer line is refused, not forwarded.
inline constexpr size_t kMaxStdioLineBytes = 16 * 1024 * 1024;
// A message nested deeper than this is refused as Invalid (bounded work and stack for the
// canonical form).
inline constexpr int kMaxDepth = 64;

// JSON-RPC error codes in ACP's replies: the server-error range (-32000..-32099).
inline constexpr int kCodeDenied = -32001;         // this tools/call was denied
inline constexpr int kCodeBatchRefused = -32002;   // another call in the same batch was denied
inline constexpr int kCodeUninspectable = -32003;  // ACP could not read the message to judge it

// The canonical JSON that `args` globs match: object keys sorted (byte order), no whitespace,
// strings as nlohmann writes them (UTF-8 kept, control characters escaped), numbers as read.
std::string canonical_json(const nlohmann::json& j);

struct ToolCall {
  size_t index = 0;     // position in the batch (0 for a single message)
  bool has_id = false;  // false: sent as a notification (judged all the same)
  nlohmann::json id;    // the request's id, as sent
  std::string tool;     // params.name
  std::string args;     // canonical_json(params.arguments), "{}" when absent
};

struct Inspection {
  enum class Kind {
    NotJsonRpc,  // valid JSON, but no JSON-RPC message in it: passes untouched
    NoToolCall,  // JSON-RPC without a tools/call (initialize, notifications...): passes untouched
    ToolCalls,   // has tools/call requests: judge `calls`
    Invalid,     // cannot be read safely (not JSON, duplicate keys, malformed tools/call, too
                 // deep): refused, never forwarded; `reason` says why
  };
  Kind kind = Kind::NotJsonRpc;
  bool batch = false;
  std::vector<ToolCall> calls;
  // Every element that expects a reply (a request: has a method and an id), in order, with
  // its position in the batch: the ids that a refusal of the whole message answers.
  std::vector<std::pair<size_t, nlohmann::json>> request_ids;
  std::string reason;
};

// Reads one message (an HTTP body or a stdio line without its newline).
Inspection inspect(std::string_view text);

// The Action a tools/call is judged as: kind "mcp", server, tool, args; host, port, method and
// path stay empty so that HTTP rules naming a host never decide a tool call.
Action tool_action(const ToolCall& call, const std::string& server, const std::string& session);

// {"jsonrpc":"2.0","id":ID,"error":{"code":CODE,"message":"ACP: ...","data":{"acp":{...}}}}
nlohmann::json error_response(const nlohmann::json& id, int code, const std::string& message,
                              const std::string& reason, const std::string& request_id);

// What happens to one message after judging.
struct Outcome {
  bool forward = true;                   // false: refused; never reaches the server
  std::string reply;                     // when refused: the JSON-RPC reply for the client (single
                                         // object or batch array); empty when no element had an id
  std::string reason;                    // why it was refused
  std::string request_id;                // the refused call's audit/consent id
  size_t judged = 0;                     // tools/call judged
  std::vector<std::string> request_ids;  // audit/consent id of every judged call
};

using JudgeFn = std::function<boost::asio::awaitable<Judgement>(Action)>;

// Judges every tools/call in `in` in order, through `judge` (the proxy's RequestJudge: policy,
// then a human for `ask`, then the audit log). The first denial refuses the whole message: a
// batch is all or nothing (docs/mcp.md). Invalid messages are refused without asking.
// Everything by value: the coroutine may start after the caller's temporaries are gone.
boost::asio::awaitable<Outcome> judge_message(Inspection in, std::string server,
                                              std::string session, JudgeFn judge);

// The refusal reply for a message (`code`/`message` for the refused call, kCodeBatchRefused
// for the other requests of a batch). Empty when nothing in it expects a reply.
std::string refusal_reply(const Inspection& in, size_t refused_index, int code,
                          const std::string& message, const std::string& reason,
                          const std::string& request_id);

// HTTP helpers for the proxy hook.
// Removes chunked transfer coding from a complete raw body. Complete: `body` is set and
// `consumed` is how many raw bytes the chunked body took (trailers included). NeedMore: the
// last chunk has not arrived. Bad: malformed framing.
enum class Dechunk { Complete, NeedMore, TooLarge, Bad };
Dechunk dechunk(std::string_view raw, std::string& body, size_t& consumed, size_t max_body);

// Does a request with these headers carry JSON that ACP must read? (a POST whose Content-Type
// names json, or that shows the Streamable HTTP transport's headers).
bool is_json_post(std::string_view method, std::string_view content_type);
// The transport's own signs: Mcp-Session-Id, MCP-Protocol-Version, Accept: text/event-stream.
// `accept` is every Accept line joined (field_value): a server reads them all.
bool has_mcp_signs(std::string_view accept, bool has_session_id, bool has_protocol_version);
// A Content-Encoding value (all lines joined) under which the body is the bytes sent: empty, or
// only `identity` codings.
bool identity_coding(std::string_view content_encoding);
// A Content-Type value (all lines joined) whose charset, if any, is UTF-8: the one JSON charset
// ACP parses. Another (utf-7, utf-16, latin1...) would let the server decode a tools/call out of
// bytes ACP read as something else.
bool utf8_charset(std::string_view content_type);

}  // namespace acp::mcp
