// The webhook channel (acp/proxy/webhook_channel.hpp): POST each pending request, read a
// strictly validated answer, optionally accept signed callbacks on a loopback listener.
#include "acp/proxy/webhook_channel.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <ctime>
#include <map>
#include <optional>

#include "acp/proxy/display.hpp"
#include "acp/proxy/own_endpoints.hpp"
#include "acp/util/json_text.hpp"
#include "acp/util/redact.hpp"
#include "acp/util/scope_exit.hpp"
#include "http_client.hpp"

namespace acp::consent {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using asio::ip::tcp;
using std::chrono::system_clock;

namespace {

constexpr int kMaxCallbackConnections = 16;
constexpr auto kCallbackReadTimeout = std::chrono::seconds(10);
constexpr auto kMaxBackoff = std::chrono::milliseconds(8000);
constexpr size_t kMaxReason = 1000;
constexpr long long kMaxDurationS = 366LL * 24 * 3600;

long long unix_seconds(system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

std::string iso_time(system_clock::time_point t) {
  std::time_t tt = system_clock::to_time_t(t);
  std::tm tm{};
  ::gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

bool is_json_content_type(std::string ct) {
  for (auto& c : ct) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  auto semi = ct.find(';');
  ct = ct.substr(0, semi);
  while (!ct.empty() && ct.back() == ' ') ct.pop_back();
  return ct == "application/json";
}

// The fields shared by a reply and a callback: approved, reason, scope, duration_s. `extra`
// names the other keys that may appear. Strict: a missing or mistyped field, an unknown key.
Result<Answer> parse_answer(const nlohmann::json& j, std::initializer_list<const char*> extra) {
  if (!j.is_object()) return make_error("the answer is not a JSON object");
  for (const auto& [k, v] : j.items()) {
    bool known = k == "approved" || k == "reason" || k == "scope" || k == "duration_s";
    for (const char* e : extra) known = known || k == e;
    if (!known) return make_error("the answer has an unknown field '" + k + "'");
  }
  auto ap = j.find("approved");
  if (ap == j.end() || !ap->is_boolean())
    return make_error("the answer has no boolean \"approved\"");
  Answer a;
  a.approve = ap->get<bool>();
  a.by = "webhook";
  if (auto r = j.find("reason"); r != j.end()) {
    if (!r->is_string()) return make_error("the answer's \"reason\" is not a string");
    a.reason = r->get<std::string>().substr(0, kMaxReason);
  }
  if (auto sc = j.find("scope"); sc != j.end()) {
    if (!sc->is_string() || !parse_scope(sc->get<std::string>(), a.scope))
      return make_error("the answer's \"scope\" is not once, duration, session or always");
  }
  if (auto d = j.find("duration_s"); d != j.end()) {
    if (!d->is_number_integer() || d->get<long long>() < 1 || d->get<long long>() > kMaxDurationS)
      return make_error("the answer's \"duration_s\" is not a number of seconds");
    if (a.scope != Scope::Duration)
      return make_error("the answer has \"duration_s\" without \"scope\":\"duration\"");
    a.duration = std::chrono::seconds(d->get<long long>());
  }
  if (!a.approve) a.scope = Scope::Once;
  return a;
}

Result<tcp::endpoint> parse_listen(const std::string& s) {
  auto colon = s.rfind(':');
  if (colon == std::string::npos) return make_error("'" + s + "' is not HOST:PORT");
  std::string host = s.substr(0, colon);
  if (host.size() > 1 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  int port = -1;
  auto ps = s.substr(colon + 1);
  auto r = std::from_chars(ps.data(), ps.data() + ps.size(), port);
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec || r.ec != std::errc() || r.ptr != ps.data() + ps.size() || port < 0 || port > 65535)
    return make_error("'" + s + "' is not HOST:PORT");
  if (!addr.is_loopback()) return make_error("'" + s + "' is not a loopback address");
  return tcp::endpoint(addr, static_cast<uint16_t>(port));
}

}  // namespace

WebhookReply parse_webhook_reply(int status, const std::string& content_type,
                                 const std::string& body, bool can_wait) {
  WebhookReply w;
  auto deny = [&w](std::string why) {
    w.kind = WebhookReply::Kind::kDeny;
    w.reason = std::move(why);
    return w;
  };
  if (status != 200 && status != 202)
    return deny("the hook answered HTTP " + std::to_string(status));
  if (!is_json_content_type(content_type))
    return deny("the hook's answer is not application/json (Content-Type '" + content_type + "')");
  auto j = acp::util::parse_json(body);
  if (j.is_discarded()) return deny("the hook's answer is not valid JSON");
  if (j.is_object() && j.size() == 1 && j.contains("pending")) {
    if (!j["pending"].is_boolean() || !j["pending"].get<bool>())
      return deny("the hook's \"pending\" is not true");
    if (!can_wait) return deny("the hook said it will answer later, but no callback_listen is set");
    w.kind = WebhookReply::Kind::kPending;
    return w;
  }
  if (status != 200) return deny("the hook answered HTTP 202 without {\"pending\":true}");
  auto a = parse_answer(j, {});
  if (!a) return deny(a.error().message());
  if (!a->approve && a->reason.empty())
    a->reason = "webhook: denied by the hook";
  else if (!a->approve)
    a->reason = "webhook: " + a->reason;
  w.kind = WebhookReply::Kind::kAnswer;
  w.answer = *a;
  return w;
}

Result<WebhookCallback> parse_webhook_callback(const std::string& body) {
  auto j = acp::util::parse_json(body);
  if (j.is_discarded() || !j.is_object()) return make_error("the body is not a JSON object");
  auto rid = j.find("request_id");
  if (rid == j.end() || !rid->is_string()) return make_error("no string \"request_id\"");
  auto a = parse_answer(j, {"request_id"});
  if (!a) return a.error();
  WebhookCallback cb;
  cb.request_id = rid->get<std::string>();
  cb.answer = *a;
  if (!cb.answer.approve)
    cb.answer.reason =
        "webhook: " + (cb.answer.reason.empty() ? "denied by the hook" : cb.answer.reason);
  return cb;
}

std::string webhook_signature(const std::string& secret, long long unix_ts,
                              const std::string& body) {
  const std::string ts = std::to_string(unix_ts);
  return "t=" + ts + ",v1=" + http::hmac_sha256_hex(secret, ts + "." + body);
}

Status verify_webhook_signature(const std::string& header, const std::string& body,
                                const std::string& secret, system_clock::time_point now,
                                std::chrono::seconds tolerance) {
  std::optional<long long> ts;
  std::vector<std::string> sigs;
  size_t pos = 0;
  while (pos <= header.size()) {
    auto comma = header.find(',', pos);
    std::string part =
        header.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    while (!part.empty() && part.front() == ' ') part.erase(0, 1);
    if (part.rfind("t=", 0) == 0) {
      long long v = 0;
      auto r = std::from_chars(part.data() + 2, part.data() + part.size(), v);
      if (r.ec != std::errc() || r.ptr != part.data() + part.size() || ts)
        return make_error("X-ACP-Signature has a bad timestamp");
      ts = v;
    } else if (part.rfind("v1=", 0) == 0) {
      sigs.push_back(part.substr(3));
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  if (!ts || sigs.empty()) return make_error("X-ACP-Signature is missing or not t=…,v1=…");
  const long long age = unix_seconds(now) - *ts;
  if (age > tolerance.count() || -age > tolerance.count())
    return make_error("X-ACP-Signature's timestamp is " + std::to_string(age) +
                      " s off (more than " + std::to_string(tolerance.count()) +
                      " s: a replay or a wrong clock)");
  const std::string want = http::hmac_sha256_hex(secret, std::to_string(*ts) + "." + body);
  for (const auto& s : sigs)
    if (http::equal_constant_time(s, want)) return {};
  return make_error("X-ACP-Signature does not match the body (wrong secret or altered body)");
}

nlohmann::json webhook_request_body(const PendingInfo& p, const ChannelContext& ctx,
                                    const std::string& callback_url) {
  const Action& a = p.action;
  nlohmann::json action = action_to_json(a);
  // Upstream's shape of an HTTP action: name "http:<METHOD>", args the target, meta {...}.
  const std::string method = a.method.empty() ? "CONNECT" : a.method;
  action["name"] = a.name.empty() ? "http:" + method : a.name;
  if (a.args.empty()) {
    const std::string hostport =
        (a.host.find(':') != std::string::npos ? "[" + a.host + "]" : a.host) + ":" +
        std::to_string(a.port);
    action["args"] = method == "CONNECT" ? hostport : "http://" + hostport + a.path;
  }
  action["meta"] = {{"kind", a.kind}, {"host", a.host}, {"method", method}, {"port", a.port}};
  nlohmann::json j{{"type", "consent_request"},
                   {"request_id", p.id},
                   {"session", p.session},
                   {"created_at", iso_time(p.created)},
                   {"expires_at", iso_time(p.expires)},
                   {"expires_in_s", std::max<long long>(0, unix_seconds(p.expires) -
                                                               unix_seconds(system_clock::now()))},
                   {"rule", p.rule_text},
                   {"agent", ctx.agent_command},
                   {"action", action}};
  // For a human reading the payload (a chat relay, a ticket): the request as every channel
  // shows it, every agent-controlled character visible (acp/proxy/display.hpp); the JSON
  // encoding escapes it for the payload. `action` stays the raw data, for programs.
  const std::string agent =
      ctx.agent_command.empty() ? "the agent" : "agent `" + visible(ctx.agent_command) + "`";
  j["summary"] = summary(a);
  j["text"] = "ACP consent request " + p.id + ": " + agent + " wants " + summary(a) + " (rule " +
              visible(p.rule_text) + ")";
  const auto reach = approval_reach(a, std::chrono::seconds(600));
  j["reach"] = {{"once", reach.once},
                {"duration", reach.duration},
                {"session", reach.session},
                {"always", reach.always}};
  if (!callback_url.empty()) j["callback_url"] = callback_url;
  return j;
}

struct WebhookChannel::State : std::enable_shared_from_this<State> {
  State(asio::io_context& i, ConsentGate& g, WebhookSettings st)
      : io(i), gate(g), s(std::move(st)), client(i) {}
  asio::io_context& io;
  ConsentGate& gate;
  WebhookSettings s;
  http::Url url;
  http::Client client;
  bool started = false;
  bool stopped = false;
  struct Tracked {
    std::shared_ptr<asio::steady_timer> backoff;
  };
  std::map<std::string, Tracked> sent;  // pending requests this channel told the hook about
  std::optional<tcp::acceptor> acceptor;
  proxy::OwnEndpoint own;  // no proxy connects to the callback (own_endpoints.hpp)
  std::map<uint64_t, std::shared_ptr<beast::tcp_stream>> callbacks;  // open connections
  uint64_t next_conn = 0;

  bool live(const std::string& id) const { return !stopped && sent.count(id) != 0; }

  // Stops everything under way for `id`: its backoff timer and its HTTP request.
  void forget(const std::string& id) {
    auto it = sent.find(id);
    if (it == sent.end()) return;
    if (it->second.backoff) it->second.backoff->cancel();
    sent.erase(it);
    client.cancel(id);
  }

  void answer(const std::string& id, Answer a) {
    if (!live(id)) return;
    forget(id);
    (void)gate.answer(id, a);  // unknown id: another channel or the timeout was first
  }
  void deny(const std::string& id, const std::string& why) {
    Answer a;
    a.approve = false;
    a.by = "webhook";
    a.reason = "webhook: " + why;
    answer(id, a);
  }

  std::string callback_url() const {
    if (!acceptor) return "";
    auto ep = acceptor->local_endpoint();
    std::string host = ep.address().to_string();
    if (ep.address().is_v6()) host = "[" + host + "]";
    return "http://" + host + ":" + std::to_string(ep.port()) + kWebhookCallbackPath;
  }

  void handle_reply(const std::string& id, const http::Response& r) {
    WebhookReply w = parse_webhook_reply(r.status, r.content_type, r.body, acceptor.has_value());
    if (w.kind == WebhookReply::Kind::kDeny) return deny(id, w.reason);
    if (w.kind == WebhookReply::Kind::kPending) return;  // the callback (or the timeout) decides
    answer(id, w.answer);
  }

  asio::awaitable<void> deliver(PendingInfo p) {
    auto self = shared_from_this();
    const std::string body = dump(webhook_request_body(p, s.ctx, callback_url()));
    std::string last_error;
    for (int attempt = 0;; ++attempt) {
      if (!live(p.id)) co_return;
      auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(p.expires - system_clock::now());
      if (left.count() <= 0) co_return;  // the gate times it out
      const long long ts = unix_seconds(system_clock::now());
      // Built outside the co_await: GCC 12 mis-compiles braced string literals inside one.
      std::vector<std::pair<std::string, std::string>> headers;
      headers.emplace_back("X-ACP-Secret", s.secret);
      headers.emplace_back("X-ACP-Signature", webhook_signature(s.secret, ts, body));
      headers.emplace_back("X-ACP-Request-Id", p.id);
      const std::string post = "POST";
      auto o = co_await client.request(url, post, url.target, body, std::move(headers),
                                       std::min(s.timeout, left), p.id);
      if (!live(p.id) || o.kind == http::Outcome::Kind::Cancelled) co_return;
      using K = http::Outcome::Kind;
      if (o.kind == K::Ok && o.response.status < 500) {
        handle_reply(p.id, o.response);
        co_return;
      }
      if (o.kind == K::Timeout) {
        deny(p.id, "the hook did not answer within " +
                       std::to_string(std::min(s.timeout, left).count()) + " ms");
        co_return;
      }
      last_error = o.kind == K::Ok ? "HTTP " + std::to_string(o.response.status) : o.error;
      if (attempt >= s.retries) {
        deny(p.id, last_error + " (after " + std::to_string(attempt + 1) + " attempts)");
        co_return;
      }
      auto delay = std::min<std::chrono::milliseconds>(kMaxBackoff,
                                                       s.backoff * (1 << std::min(attempt, 10)));
      auto timer = std::make_shared<asio::steady_timer>(io, delay);
      sent[p.id].backoff = timer;
      boost::system::error_code ec;
      co_await timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (!live(p.id)) co_return;
      sent[p.id].backoff.reset();
    }
  }

  Status start_callback_server() {
    auto ep = parse_listen(s.callback_listen);
    if (!ep) return make_error("callback_listen " + ep.error().message());
    acceptor.emplace(io);
    boost::system::error_code ec;
    acceptor->open(ep->protocol(), ec);
    if (!ec) acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor->bind(*ep, ec);
    if (!ec) {
      // Before listen(): no connection ever reaches the callback unregistered.
      auto reg = proxy::register_own_endpoint(
          acceptor->native_handle(), "webhook callback listener (" + s.callback_listen + ")");
      if (!reg) {
        acceptor.reset();
        return reg.error();
      }
      own = std::move(*reg);
    }
    if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      acceptor.reset();
      return make_error("cannot listen on " + s.callback_listen +
                        " for webhook callbacks: " + ec.message());
    }
    asio::co_spawn(
        io, [self = shared_from_this()] { return self->accept_loop(); }, asio::detached);
    return {};
  }

  asio::awaitable<void> accept_loop() {
    auto self = shared_from_this();
    for (;;) {
      boost::system::error_code ec;
      tcp::socket sock(io);
      co_await acceptor->async_accept(sock, asio::redirect_error(asio::use_awaitable, ec));
      if (stopped) co_return;
      if (ec) continue;
      if (static_cast<int>(callbacks.size()) >= kMaxCallbackConnections) continue;  // closed
      auto stream = std::make_shared<beast::tcp_stream>(std::move(sock));
      const uint64_t id = next_conn++;
      callbacks[id] = stream;
      asio::co_spawn(
          io, [self, id, stream] { return self->serve_callback(id, stream); }, asio::detached);
    }
  }

  std::pair<bhttp::status, nlohmann::json> callback(const bhttp::request<bhttp::string_body>& req) {
    auto err = [](bhttp::status st, const std::string& e) {
      return std::pair{st, nlohmann::json{{"ok", false}, {"error", e}}};
    };
    if (req.target() != kWebhookCallbackPath) return err(bhttp::status::not_found, "not found");
    if (req.method() != bhttp::verb::post)
      return err(bhttp::status::method_not_allowed, "use POST");
    auto sig = verify_webhook_signature(std::string(req["X-ACP-Signature"]), req.body(), s.secret,
                                        system_clock::now());
    if (!sig) return err(bhttp::status::unauthorized, sig.error().message());
    auto cb = parse_webhook_callback(req.body());
    if (!cb) return err(bhttp::status::bad_request, cb.error().message());
    const std::string id = cb->request_id;
    if (!live(id))
      return err(bhttp::status::not_found, "request " + id + " is not pending (answered, timed " +
                                               "out, or never sent to this hook)");
    answer(id, cb->answer);
    return {bhttp::status::ok, {{"ok", true}, {"request_id", id}}};
  }

  asio::awaitable<void> serve_callback(uint64_t id, std::shared_ptr<beast::tcp_stream> stream) {
    auto self = shared_from_this();
    auto forget = util::on_scope_exit([this, id] { callbacks.erase(id); });
    stream->expires_after(kCallbackReadTimeout);
    beast::flat_buffer buf;
    bhttp::request_parser<bhttp::string_body> parser;
    parser.body_limit(64 * 1024);
    parser.header_limit(16 * 1024);
    boost::system::error_code ec;
    co_await bhttp::async_read(*stream, buf, parser, asio::redirect_error(asio::use_awaitable, ec));
    if (ec || stopped) co_return;
    auto [status, reply] = callback(parser.get());
    bhttp::response<bhttp::string_body> res{status, 11};
    res.set(bhttp::field::content_type, "application/json");
    res.set(bhttp::field::connection, "close");
    res.body() = dump(reply) + "\n";
    res.prepare_payload();
    co_await bhttp::async_write(*stream, res, asio::redirect_error(asio::use_awaitable, ec));
    stream->socket().shutdown(tcp::socket::shutdown_both, ec);
  }
};

WebhookChannel::WebhookChannel(asio::io_context& io, ConsentGate& gate, WebhookSettings s)
    : s_(std::make_shared<State>(io, gate, std::move(s))) {}

WebhookChannel::~WebhookChannel() {
  stop();
}

Result<std::unique_ptr<WebhookChannel>> WebhookChannel::from_config(
    asio::io_context& io, ConsentGate& gate, const config::WebhookChannel& cfg,
    const ChannelContext& ctx) {
  auto secret = config::read_secret_file(cfg.secret_file);
  if (!secret) return make_error("webhook: " + secret.error().message());
  WebhookSettings s;
  s.url = cfg.url;
  s.secret = *secret;
  s.timeout = cfg.timeout;
  s.retries = cfg.retries;
  s.callback_listen = cfg.callback_listen;
  s.ctx = ctx;
  if (auto u = http::parse_url(s.url); !u) return make_error("webhook: " + u.error().message());
  return std::make_unique<WebhookChannel>(io, gate, std::move(s));
}

Status WebhookChannel::start() {
  auto& st = *s_;
  auto u = http::parse_url(st.s.url);
  if (!u) return u.error();
  st.url = *u;
  if (st.s.secret.empty()) return make_error("the webhook secret is empty");
  if (auto init = st.client.init(st.s.ca_file); !init) return init;
  if (!st.s.callback_listen.empty())
    if (auto cb = st.start_callback_server(); !cb) return cb;
  st.started = true;
  return {};
}

void WebhookChannel::stop() {
  auto& st = *s_;
  if (st.stopped) return;
  st.stopped = true;
  st.client.cancel_all();
  for (auto& [_, t] : st.sent)
    if (t.backoff) t.backoff->cancel();
  st.sent.clear();
  boost::system::error_code ec;
  if (st.acceptor) st.acceptor->close(ec);
  st.own = {};
  for (auto& [_, c] : st.callbacks) c->socket().close(ec);
}

// A webhook URL may carry a credential in its query (?key=...; user info is refused at load):
// not shown, for the same reasons as the web page's token (web_channel.cpp).
std::string WebhookChannel::describe() const {
  std::string d = "webhook: POST " + util::redact_url(s_->s.url);
  if (s_->acceptor) d += ", answers also at " + s_->callback_url();
  return d;
}

uint16_t WebhookChannel::callback_port() const {
  return s_->acceptor ? s_->acceptor->local_endpoint().port() : 0;
}

void WebhookChannel::on_request(const PendingInfo& p) {
  auto& st = *s_;
  if (st.stopped || !st.started) return;
  st.sent[p.id] = {};
  asio::co_spawn(
      st.io, [self = s_, p] { return self->deliver(p); }, asio::detached);
}

void WebhookChannel::on_resolved(const PendingInfo& p, const ConsentOutcome&) {
  s_->forget(p.id);
}

}  // namespace acp::consent
