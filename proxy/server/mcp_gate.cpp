// The proxy's MCP hook: MCP's Streamable HTTP transport sends JSON-RPC in POST bodies. The body
// is read into the connection's buffer (raw, so that the usual relay then forwards exactly the
// bytes the client sent), each tools/call in it is judged as an Action of kind "mcp", and a
// refused message is answered with a JSON-RPC error and never reaches the server.
// Everything else (GET event streams, responses, other JSON) passes untouched. docs/mcp.md.
#include <utility>  // before boost/asio/awaitable.hpp (Boost 1.74)

#include <string_view>

#include <boost/asio/write.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "acp/proxy/mcp.hpp"
#include "coro.hpp"
#include "proxy_connection.hpp"

namespace acp::proxy {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;

namespace {

constexpr size_t kReadChunk = 64 * 1024;

// Lets the parser take the body that is already in `buffer` (after a refusal), so that the
// connection can stay open for the next request.
bool drain_body(RequestParser& p, beast::flat_buffer& buffer) {
  char sink[16 * 1024];
  while (!p.is_done()) {
    p.get().body().data = sink;
    p.get().body().size = sizeof sink;
    error_code ec;
    size_t n = p.put(buffer.data(), ec);
    if (ec == http::error::need_buffer) ec = {};
    if (ec) return false;
    buffer.consume(n);
    if (n == 0 && p.get().body().size == sizeof sink) return p.is_done();
  }
  return true;
}

// "the body is over 1048576 bytes": why a body too large to inspect is not.
std::string too_large_body() {
  return "the body is over " + std::to_string(mcp::kMaxHttpBodyBytes) + " bytes";
}

// Why the body of `p` cannot be read as the server would read it, and the status that refuses
// it (415, 413); empty when it can.
std::pair<std::string, unsigned> unreadable_body(const RequestParser& p,
                                                 const std::string& content_type,
                                                 const std::string& encoding) {
  const auto length = p.content_length();
  const std::string te = field_value(p.get(), http::field::transfer_encoding);
  if (!mcp::identity_coding(encoding)) return {"Content-Encoding " + encoding, 415};
  if (p.chunked() && !beast::iequals(te, "chunked")) return {"Transfer-Encoding " + te, 415};
  if (!mcp::utf8_charset(content_type))
    return {"Content-Type " + content_type + " (the server would decode another charset)", 415};
  if (!p.chunked() && (!length || *length > mcp::kMaxHttpBodyBytes)) return {too_large_body(), 413};
  return {};
}

}  // namespace

net::awaitable<Connection::McpGate> Connection::mcp_gate(RequestParser& p,
                                                         const RequestTarget& target,
                                                         const Judgement& j, RequestEvent& event) {
  auto& req = p.get();
  if (p.is_done()) co_return McpGate::Forward;  // no body: no JSON-RPC message
  // Every header judged by is read as the origin reads it: all its lines joined.
  const std::string content_type = field_value(req, http::field::content_type);
  const std::string encoding = field_value(req, http::field::content_encoding);
  const bool signs =
      mcp::has_mcp_signs(field_value(req, http::field::accept), req.count("Mcp-Session-Id") > 0,
                         req.count("MCP-Protocol-Version") > 0);
  // Where a kind: mcp rule could apply, or the transport's headers are there, every body is
  // read, whatever the method and the Content-Type say: a server that takes a tools/call ACP
  // did not read would run it unjudged.
  const bool strict = signs || j.inside_mcp;
  if (!strict &&
      (req.method() != http::verb::post || !mcp::is_json_post(req.method_string(), content_type)))
    co_return McpGate::Forward;

  // What ACP cannot read it cannot judge: refused when it looks like MCP or goes to a host
  // with kind: mcp rules, else left alone.
  auto unreadable = unreadable_body(p, content_type, encoding);
  std::string cannot = std::move(unreadable.first);
  unsigned cannot_status = unreadable.second;
  const bool chunked = p.chunked();
  const auto length = p.content_length();

  if (cannot.empty() && has_token(field_value(req, http::field::expect), "100-continue")) {
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    error_code ec;
    client_.expires_after(state_->cfg.limits.idle_timeout);
    co_await net::async_write(client_, net::buffer(kContinue), redirect(ec));
    if (ec) co_return McpGate::AnsweredClose;
    req.erase(http::field::expect);
  }

  // Read the whole raw body into buffer_.
  std::string body;
  while (cannot.empty()) {
    auto d = buffer_.data();
    std::string_view raw(static_cast<const char*>(d.data()), d.size());
    if (!chunked && raw.size() >= *length) {
      body.assign(raw.substr(0, *length));
      break;
    }
    if (chunked) {
      size_t consumed = 0;
      auto r = mcp::dechunk(raw, body, consumed, mcp::kMaxHttpBodyBytes);
      if (r == mcp::Dechunk::Complete) break;
      if (r == mcp::Dechunk::TooLarge) {
        cannot = too_large_body();
        cannot_status = 413;
        break;
      }
      if (r == mcp::Dechunk::Bad) {
        co_await refuse(event, {400, "Bad request", "malformed chunked request body"});
        co_return McpGate::AnsweredClose;
      }
    }
    error_code ec;
    client_.expires_after(state_->cfg.limits.idle_timeout);
    size_t n = co_await client_.async_read_some(buffer_.prepare(kReadChunk), redirect(ec));
    buffer_.commit(n);
    if (ec || closed_) {
      event.broke(0, "client closed during the request body");
      state_->n_errors.fetch_add(1, std::memory_order_relaxed);
      co_return McpGate::AnsweredClose;
    }
  }
  if (!cannot.empty()) {
    event.note("mcp", "not inspected: " + cannot);
    if (!strict) co_return McpGate::Forward;
    // Built apart from the co_await: GCC 12 destroys a ?: temporary inside one twice.
    std::string why = "ACP cannot inspect this MCP request: " + cannot;
    if (!signs) why += " (a kind: mcp rule applies to " + target.host + ")";
    co_await refuse(event, {cannot_status, "Blocked by ACP", why, j.request_id});
    co_return McpGate::AnsweredClose;
  }

  const auto in = mcp::inspect(body);
  if (in.kind == mcp::Inspection::Kind::NotJsonRpc || in.kind == mcp::Inspection::Kind::NoToolCall)
    co_return McpGate::Forward;
  auto out = co_await mcp::judge_message(in, target.host, state_->cfg.session_id,
                                         [this](Action a) { return judge(std::move(a)); });
  if (closed_) co_return McpGate::AnsweredClose;
  event.note("mcp", nlohmann::json{{"tool_calls", in.calls.size()},
                                   {"judged", out.judged},
                                   {"forwarded", out.forward},
                                   {"request_ids", out.request_ids}});
  if (out.forward) co_return McpGate::Forward;
  // Refused: the client gets ACP's JSON-RPC answer in place of the server's.
  state_->n_denied.fetch_add(1, std::memory_order_relaxed);
  co_return co_await answer_mcp(p, out.reply, out.request_id, out.reason, event);
}

net::awaitable<Connection::McpGate> Connection::answer_mcp(RequestParser& p,
                                                           const std::string& reply,
                                                           const std::string& request_id,
                                                           const std::string& reason,
                                                           RequestEvent& event) {
  const bool keep = p.get().keep_alive() && drain_body(p, buffer_);
  http::response<http::string_body> res{reply.empty() ? http::status::accepted : http::status::ok,
                                        11};
  res.set(http::field::server, "acp");
  if (!reply.empty()) res.set(http::field::content_type, "application/json");
  if (!request_id.empty()) res.set("X-ACP-Request-Id", request_id);
  res.body() = reply;
  res.keep_alive(keep);
  res.prepare_payload();
  event.answered(res.result_int(), reason);
  error_code ec;
  client_.expires_after(state_->cfg.limits.idle_timeout);
  co_await http::async_write(client_, res, redirect(ec));
  if (ec) co_return McpGate::AnsweredClose;
  if (!keep) {
    co_await lingering_close();
    co_return McpGate::AnsweredClose;
  }
  co_return McpGate::AnsweredKeep;
}

}  // namespace acp::proxy
