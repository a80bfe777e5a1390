// One allowed HTTP request to the origin and its response back: the same code for an
// absolute-form request, a request inside an inspected CONNECT and one inside a plain-HTTP
// tunnel (ProxyStream is plain or TLS on either side). docs/proxy.md, "What it speaks".
#include <utility>  // before boost/asio/awaitable.hpp (Boost 1.74)

#include <limits>
#include <optional>
#include <string_view>
#include <vector>

#include <boost/asio/write.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/rfc7230.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/write.hpp>

#include "coro.hpp"
#include "proxy_connection.hpp"

namespace acp::proxy {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;

namespace {

constexpr size_t kRelayBufferBytes = 64 * 1024;
constexpr size_t kResponseHeaderLimit = 256 * 1024;

// Hop-by-hop headers (RFC 9110 7.6.1) and the ones the Connection header names. Framing
// headers are never removed on a Connection header's word: Beast re-frames the body itself.
template <class Fields>
void strip_hop_by_hop(Fields& f) {
  std::vector<std::string> named;
  for (const auto& h : f) {
    if (h.name() != http::field::connection) continue;
    for (auto tok : http::token_list{h.value()}) named.emplace_back(tok);
  }
  for (const auto& n : named) {
    auto fld = http::string_to_field(n);
    if (fld == http::field::content_length || fld == http::field::transfer_encoding ||
        fld == http::field::host)
      continue;
    f.erase(n);
  }
  for (auto fld : {http::field::connection, http::field::keep_alive, http::field::proxy_connection,
                   http::field::proxy_authorization, http::field::proxy_authenticate,
                   http::field::te, http::field::trailer, http::field::upgrade})
    f.erase(fld);
}

enum class RelayFail { None, Read, Write, BodyLimit };

// Streams one message body from `in` (through parser `p`) to `out` (through serializer
// `sr`, whose header is already written), one buffer at a time.
template <bool isRequest>
net::awaitable<RelayFail> relay_body(http::parser<isRequest, http::buffer_body>& p, ProxyStream& in,
                                     beast::flat_buffer& in_buffer, ProxyStream& out,
                                     http::serializer<isRequest, http::buffer_body>& sr, char* buf,
                                     std::chrono::seconds idle, uint64_t& bytes, error_code& ec) {
  while (!sr.is_done()) {
    auto& body = p.get().body();
    if (!p.is_done()) {
      body.data = buf;
      body.size = kRelayBufferBytes;
      in.expires_after(idle);
      co_await http::async_read_some(in, in_buffer, p, redirect(ec));
      if (ec == http::error::need_buffer) ec = {};
      if (ec == http::error::body_limit) co_return RelayFail::BodyLimit;
      if (ec) co_return RelayFail::Read;
      body.size = kRelayBufferBytes - body.size;
      // Never an empty buffer with data: a chunked serializer would end the body with it.
      body.data = body.size > 0 ? buf : nullptr;
      body.more = !p.is_done();
      bytes += body.size;
    } else {
      body.data = nullptr;
      body.size = 0;
      body.more = false;
    }
    out.expires_after(idle);
    co_await http::async_write(out, sr, redirect(ec));
    if (ec == http::error::need_buffer) ec = {};
    if (ec) co_return RelayFail::Write;
  }
  co_return RelayFail::None;
}

}  // namespace

struct Connection::Forward {
  Forward(RequestParser& p, const RequestTarget& target, const Judgement& j, bool client_keep,
          unsigned client_version)
      : p(p), target(target), j(j), client_keep(client_keep), client_version(client_version) {}

  RequestParser& p;
  const RequestTarget& target;
  const Judgement& j;
  bool client_keep;         // the client asked for keep-alive
  unsigned client_version;  // 10 or 11, as the client sent it
  std::string key = target.host + ":" + std::to_string(target.port);
  bool head = false;
  bool expect_continue = false;  // the proxy answers the client's Expect: 100-continue itself
  bool sent_continue = false;
  bool close_upstream_after = false;  // a body where a path rule applies: see prepare_request
  bool had_body = false;
  uint64_t bytes_up = 0, bytes_down = 0;
  std::optional<http::response_parser<http::buffer_body>> rp;

  // After a refusal the connection stays only if the client asked for it and sent its body.
  bool keep_after_refusal() const { return client_keep && p.is_done(); }
};

net::awaitable<bool> Connection::handle_http(RequestParser& p, RequestEvent& event) {
  auto& req = p.get();
  const bool client_keep = req.keep_alive();
  const unsigned client_version = req.version();
  // Canonical (request_target.hpp): what the policy, the gate and the audit see is what the
  // origin gets, target and Host alike.
  auto target =
      inspected_ ? parse_origin_form(req.target(), *inspected_) : parse_absolute_url(req.target());
  if (!target) {
    const bool keep = client_keep && p.is_done();
    co_await refuse(event, {400, "Bad request target", target.error().message(), {}, !keep});
    co_return keep;
  }
  event.target(*target);
  event.note("path", target->path);
  const auto j = co_await judge(*target, std::string(req.method_string()), event);
  if (closed_) co_return false;
  if (!j.allowed) {
    const bool keep = client_keep && p.is_done();
    co_await refuse(event, {403, "Blocked by ACP", j.reason, j.request_id, !keep});
    co_return keep;
  }
  // MCP tool-call consent (mcp_gate.cpp): each tools/call in a JSON-RPC body is judged before
  // anything is forwarded; a refused message is answered here.
  if (auto gate = co_await mcp_gate(p, *target, j, event); gate != McpGate::Forward)
    co_return gate == McpGate::AnsweredKeep;
  Forward f{p, *target, j, client_keep, client_version};
  if (!co_await prepare_request(f, event)) co_return false;
  if (auto answered = co_await send_request(f, event)) co_return *answered;
  co_return co_await relay_response(f, event);
}

net::awaitable<bool> Connection::prepare_request(Forward& f, RequestEvent& event) {
  auto& p = f.p;
  auto& req = p.get();
  // Where a path or method rule could apply, the origin must run exactly the request that was
  // judged. Content on a method whose handlers commonly ignore it (GET, HEAD, OPTIONS, TRACE)
  // would be read by such an origin as a second, unjudged request (python's http.server does):
  // refused. A body on any other method is forwarded on an upstream connection that closes
  // after it, so bytes the origin left unread are never parsed as a request. Headers that make
  // origins run another method or path are removed.
  const bool has_content = p.chunked() || p.content_length().value_or(0) > 0;
  if (f.j.inside_path) {
    const auto v = req.method();
    if (has_content && (v == http::verb::get || v == http::verb::head || v == http::verb::options ||
                        v == http::verb::trace)) {
      const std::string why = std::string(req.method_string()) +
                              " with a body, where a path or method rule applies: an origin "
                              "that ignores the body would run it as another request";
      co_await refuse(event, {400, "Bad request", why, f.j.request_id});
      co_return false;
    }
    for (std::string_view h : {"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override",
                               "X-Original-URL", "X-Rewrite-URL", "X-Original-Method"})
      req.erase(h);
    f.close_upstream_after = has_content;
  }
  // The request as the origin gets it: origin-form target, our Host, no hop-by-hop headers.
  f.head = req.method() == http::verb::head;
  f.expect_continue =
      has_token(field_value(req, http::field::expect), "100-continue") && !p.is_done();
  req.erase(http::field::expect);
  strip_hop_by_hop(req);
  req.target(f.target.path);
  req.version(11);
  req.set(http::field::host, f.target.host_header(inspected_ && !plain_tunnel_ ? 443 : 80));
  // One framing, the parser's: "Content-Length: 5, 5" is forwarded as 5.
  if (!p.chunked() && p.content_length()) req.content_length(*p.content_length());
  if (f.close_upstream_after) req.set(http::field::connection, "close");
  f.had_body = !p.is_done();
  co_return true;
}

net::awaitable<std::optional<bool>> Connection::open_upstream(Forward& f, RequestEvent& event) {
  up_.drop();
  auto c = co_await connect_upstream(*state_, f.target, f.j.host_named);
  if (closed_) co_return false;
  if (!c.stream) {
    const bool keep = f.keep_after_refusal();
    c.refusal.request_id = f.j.request_id;
    c.refusal.close = !keep;
    co_await refuse(event, std::move(c.refusal));
    co_return keep;
  }
  up_.hold(std::move(*c.stream), f.key, c.restricted);
  if (inspected_ && !plain_tunnel_) {
    if (auto refusal = co_await upstream_tls(f.target, f.j.request_id)) {
      up_.drop();
      co_await refuse(event, std::move(*refusal));
      co_return false;
    }
  }
  co_return std::nullopt;
}

net::awaitable<std::optional<bool>> Connection::send_request(Forward& f, RequestEvent& event) {
  const auto& lim = state_->cfg.limits;
  if (!relay_buffer_) relay_buffer_.reset(new char[kRelayBufferBytes]);
  for (int attempt = 0;; ++attempt) {
    const bool reused = up_.reusable_for(f.key, f.j.host_named, f.close_upstream_after);
    if (!reused)
      if (auto answered = co_await open_upstream(f, event)) co_return answered;
    auto& up = up_.stream();
    // The proxy answers Expect itself once it knows the request can go through.
    error_code ec;
    if (f.expect_continue && !f.sent_continue) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      client_.expires_after(lim.idle_timeout);
      co_await net::async_write(client_, net::buffer(kContinue), redirect(ec));
      if (ec) co_return false;
      f.sent_continue = true;
    }
    http::serializer<true, http::buffer_body> sr{f.p.get()};
    // The header goes out on its own only when the body is not already here; otherwise
    // header and body leave in one write.
    if (!f.p.is_done() && buffer_.size() == 0) {
      up.expires_after(lim.idle_timeout);
      co_await http::async_write_header(up, sr, redirect(ec));
    }
    RelayFail fail = ec ? RelayFail::Write : RelayFail::None;
    if (!ec)
      fail = co_await relay_body(f.p, client_, buffer_, up, sr, relay_buffer_.get(),
                                 lim.idle_timeout, f.bytes_up, ec);
    const bool retry = reused && !f.had_body && attempt == 0;
    if (fail == RelayFail::BodyLimit) {
      up_.drop();
      co_await refuse(event, {413, "Request body too large",
                              "the request body exceeds " + std::to_string(lim.max_body_bytes) +
                                  " bytes (max_body_bytes)",
                              f.j.request_id});
      co_return false;
    }
    if (fail == RelayFail::Read) {  // the client went away or sent a broken body
      up_.drop();
      event.broke(0, "client closed during the request body");
      state_->n_errors.fetch_add(1, std::memory_order_relaxed);
      co_return false;
    }
    if (fail == RelayFail::Write) {
      if (retry) continue;  // a kept-alive upstream the origin had closed
      up_.drop();
      co_await refuse(event,
                      {502, "Upstream write failed", f.key + ": " + ec.message(), f.j.request_id});
      co_return false;
    }
    // Interim 1xx responses are dropped: the proxy answered Expect itself.
    for (;;) {
      f.rp.emplace();
      f.rp->header_limit(kResponseHeaderLimit);
      f.rp->body_limit(std::numeric_limits<std::uint64_t>::max());
      if (f.head) f.rp->skip(true);
      up.expires_after(lim.idle_timeout);
      co_await http::async_read_header(up, up_.buffer(), *f.rp, redirect(ec));
      if (ec) break;
      auto code = f.rp->get().result_int();
      if (code < 100 || code >= 200 || code == 101) break;
    }
    if (ec && retry) {
      f.rp.reset();
      continue;
    }
    if (ec) {
      up_.drop();
      const unsigned status = ec == beast::error::timeout ? 504 : 502;
      co_await refuse(
          event, {status, status == 504 ? "Upstream response timeout" : "Bad upstream response",
                  f.key + ": " + ec.message(), f.j.request_id});
      co_return false;
    }
    co_return std::nullopt;
  }
}

net::awaitable<bool> Connection::relay_response(Forward& f, RequestEvent& event) {
  const auto& lim = state_->cfg.limits;
  state_->n_allowed.fetch_add(1, std::memory_order_relaxed);
  auto& rp = *f.rp;
  auto& res = rp.get();
  const unsigned code = res.result_int();
  if (code == 101) {
    up_.drop();
    co_await refuse(
        event, {502, "Bad upstream response", "the origin switched protocols", f.j.request_id});
    co_return false;
  }
  const bool until_eof =
      !f.head && code != 204 && code != 304 && !rp.chunked() && !rp.content_length().has_value();
  const bool up_keep = res.keep_alive() && !until_eof && !f.close_upstream_after;
  bool client_keep = f.client_keep;
  strip_hop_by_hop(res);
  if (f.client_version < 11) {
    res.version(10);
    if (rp.chunked() || until_eof) {
      res.chunked(false);  // a 1.0 client reads to the end of the connection
      client_keep = false;
    }
  } else {
    res.version(11);
    if (until_eof) res.chunked(true);  // re-framed so the client connection can stay
  }
  client_keep = client_keep && f.p.is_done();
  res.keep_alive(client_keep);
  event.answered(code);

  error_code ec;
  http::serializer<false, http::buffer_body> sr{res};
  if (!rp.is_done() && up_.buffer().size() == 0) {
    client_.expires_after(lim.idle_timeout);
    co_await http::async_write_header(client_, sr, redirect(ec));
  }
  auto fail = ec ? RelayFail::Write
                 : co_await relay_body(rp, up_.stream(), up_.buffer(), client_, sr,
                                       relay_buffer_.get(), lim.idle_timeout, f.bytes_down, ec);
  event.note("bytes_up", f.bytes_up);
  event.note("bytes_down", f.bytes_down);
  if (fail == RelayFail::Read && until_eof && rp.is_done()) fail = RelayFail::None;
  if (fail != RelayFail::None || !up_keep) up_.drop();
  if (fail != RelayFail::None) {
    state_->n_errors.fetch_add(1, std::memory_order_relaxed);
    co_return false;
  }
  co_return client_keep;
}

}  // namespace acp::proxy
