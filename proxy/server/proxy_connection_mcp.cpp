// The proxy's MCP hook: MCP's Streamable HTTP transport sends JSON-RPC in POST bodies. The body
// is read into the connection's buffer (raw, so that the usual relay then forwards exactly the
// bytes the client sent), each tools/call in it is judged as an Action of kind "mcp", and a
// refused message is answered with a JSON-RPC error and never reaches the server.
// Everything else (GET event streams, responses, other JSON) passes untouched. docs/mcp.md.
#include <utility>  // before boost/asio/awaitable.hpp (Boost 1.74)

#include <string_view>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "acp/proxy/mcp.hpp"
#include "proxy_connection.hpp"

namespace acp::proxy {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;

namespace {

auto redirect(error_code& ec) {
  return net::redirect_error(net::use_awaitable, ec);
}

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

}  // namespace

net::awaitable<Connection::McpGate> Connection::mcp_gate(RequestParser& p,
                                                         const RequestTarget& target,
                                                         const Judgement& j,
                                                         nlohmann::json& event) {
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
  const bool client_keep = req.keep_alive();

  // What ACP cannot read it cannot judge: refused when it looks like MCP or goes to a host
  // with kind: mcp rules, else left alone.
  std::string cannot;
  unsigned cannot_status = 0;
  const std::string too_large =
      "the body is over " + std::to_string(mcp::kMaxHttpBodyBytes) + " bytes";
  const bool chunked = p.chunked();
  const auto length = p.content_length();
  const std::string te = field_value(req, http::field::transfer_encoding);
  if (!mcp::identity_coding(encoding)) {
    cannot = "Content-Encoding " + encoding;
    cannot_status = 415;
  } else if (chunked && !beast::iequals(te, "chunked")) {
    cannot = "Transfer-Encoding " + te;
    cannot_status = 415;
  } else if (!mcp::utf8_charset(content_type)) {
    cannot = "Content-Type " + content_type + " (the server would decode another charset)";
    cannot_status = 415;
  } else if (!chunked && (!length || *length > mcp::kMaxHttpBodyBytes)) {
    cannot = too_large;
    cannot_status = 413;
  }

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
        cannot = too_large;
        cannot_status = 413;
        break;
      }
      if (r == mcp::Dechunk::Bad) {
        event["status"] = 400;
        co_await send_refusal(400, "Bad request", "malformed chunked request body", true);
        co_return McpGate::AnsweredClose;
      }
    }
    error_code ec;
    client_.expires_after(state_->cfg.limits.idle_timeout);
    size_t n = co_await client_.async_read_some(buffer_.prepare(kReadChunk), redirect(ec));
    buffer_.commit(n);
    if (ec || closed_) {
      event["status"] = 0;
      event["reason"] = "client closed during the request body";
      state_->n_errors.fetch_add(1, std::memory_order_relaxed);
      co_return McpGate::AnsweredClose;
    }
  }
  if (!cannot.empty()) {
    event["mcp"] = "not inspected: " + cannot;
    if (!strict) co_return McpGate::Forward;
    event["status"] = cannot_status;
    // Built apart from the co_await: GCC 12 destroys a ?: temporary inside one twice.
    std::string why = "ACP cannot inspect this MCP request: " + cannot;
    if (!signs) why += " (a kind: mcp rule applies to " + target.host + ")";
    co_await send_refusal(cannot_status, "Blocked by ACP", why, true, j.request_id);
    co_return McpGate::AnsweredClose;
  }

  const auto in = mcp::inspect(body);
  if (in.kind == mcp::Inspection::Kind::NotJsonRpc || in.kind == mcp::Inspection::Kind::NoToolCall)
    co_return McpGate::Forward;
  auto out = co_await mcp::judge_message(in, target.host, state_->cfg.session_id,
                                         [this](Action a) { return judge(std::move(a)); });
  if (closed_) co_return McpGate::AnsweredClose;
  event["mcp"] = {{"tool_calls", in.calls.size()},
                  {"judged", out.judged},
                  {"forwarded", out.forward},
                  {"request_ids", out.request_ids}};
  if (out.forward) co_return McpGate::Forward;

  // Refused: the client gets ACP's JSON-RPC answer in place of the server's.
  state_->n_denied.fetch_add(1, std::memory_order_relaxed);
  event["reason"] = out.reason;
  const bool keep = client_keep && drain_body(p, buffer_);
  http::response<http::string_body> res{
      out.reply.empty() ? http::status::accepted : http::status::ok, 11};
  res.set(http::field::server, "acp");
  if (!out.reply.empty()) res.set(http::field::content_type, "application/json");
  if (!out.request_id.empty()) res.set("X-ACP-Request-Id", out.request_id);
  res.body() = out.reply;
  res.keep_alive(keep);
  res.prepare_payload();
  event["status"] = res.result_int();
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
