// The Telegram channel (acp/proxy/telegram_channel.hpp).
#include "acp/proxy/telegram_channel.hpp"

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <climits>
#include <map>
#include <nlohmann/json.hpp>

#include "acp/proxy/display.hpp"
#include "acp/util/json_text.hpp"
#include "http_client.hpp"

// See http_client.cpp: a GCC 12 false positive on asio's coroutine frames.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace acp::consent {

namespace asio = boost::asio;
using json = nlohmann::json;

namespace {

constexpr auto kMaxBackoff = std::chrono::milliseconds(30000);
constexpr auto kCallTimeout = std::chrono::milliseconds(15000);
constexpr auto kTenMinutes = std::chrono::seconds(600);

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// Telegram's limit is 4096 characters a message: a longer request is cut with a note that
// says how much and where to read it all, never silently.
constexpr std::size_t kMaxShown = 3000;

// Agent-controlled text for a message sent with parse_mode HTML: made visible, then escaped for
// HTML, in <code> so that Telegram neither links nor formats any of it.
std::string code(const std::string& s, std::size_t max = kMaxShown,
                 const std::string& how = "acp pending --full, or the web page") {
  return "<code>" + html_escape(clip(visible(s), max, how)) + "</code>";
}

// The chat id as Telegram sends it (an integer) in the config's text form.
std::string chat_id_text(const json& j) {
  if (j.is_number_integer()) return std::to_string(j.get<long long>());
  if (j.is_string()) return j.get<std::string>();
  return "";
}

const json* member(const json& o, const char* key) {
  if (!o.is_object()) return nullptr;
  auto it = o.find(key);
  return it == o.end() ? nullptr : &*it;
}

}  // namespace

std::optional<json> telegram_result(const std::string& body) {
  auto j = acp::util::parse_json(body);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  const json* ok = member(j, "ok");
  // Not j.value("ok", false): that throws when "ok" is there with another type.
  if (!ok || !ok->is_boolean() || !ok->get<bool>()) return std::nullopt;
  const json* r = member(j, "result");
  if (!r) return std::nullopt;
  return *r;
}

TelegramUpdates telegram_updates(const json& result, long long offset) {
  TelegramUpdates out;
  out.next_offset = offset;
  if (!result.is_array()) return out;
  for (const auto& u : result) {
    const json* id = member(u, "update_id");
    if (!id || !id->is_number_integer()) continue;
    // An unsigned id beyond long long, or the largest one, cannot be advanced past: skip it
    // rather than overflow.
    if (id->is_number_unsigned() &&
        id->get<unsigned long long>() >= static_cast<unsigned long long>(LLONG_MAX))
      continue;
    const long long v = id->get<long long>();
    if (v == LLONG_MAX) continue;
    out.next_offset = std::max(out.next_offset, v + 1);
    if (const json* cb = member(u, "callback_query"); cb && cb->is_object())
      out.callbacks.push_back(*cb);
  }
  return out;
}

std::optional<long long> telegram_message_id(const json& result) {
  const json* m = member(result, "message_id");
  if (!m || !m->is_number_integer()) return std::nullopt;
  if (m->is_number_unsigned() &&
      m->get<unsigned long long>() > static_cast<unsigned long long>(LLONG_MAX))
    return std::nullopt;
  return m->get<long long>();
}

TelegramPress parse_telegram_callback(const json& cb, const std::string& chat_id) {
  TelegramPress p;
  if (const json* id = member(cb, "id"); id && id->is_string())
    p.callback_id = id->get<std::string>();
  if (p.callback_id.empty()) {
    p.error = "no callback id";
    return p;
  }
  std::string chat;
  if (const json* m = member(cb, "message"))
    if (const json* c = member(*m, "chat"))
      if (const json* id = member(*c, "id")) chat = chat_id_text(*id);
  if (chat.empty() || chat != chat_id) {
    p.error = "not allowed: this bot answers only its configured chat";
    return p;
  }
  const json* d = member(cb, "data");
  const std::string data = d && d->is_string() ? d->get<std::string>() : "";
  // acp:<request id>:<once|10m|deny>
  auto c1 = data.find(':'), c2 = data.rfind(':');
  if (data.rfind("acp:", 0) != 0 || c1 == c2) {
    p.error = "unknown button";
    return p;
  }
  p.request_id = data.substr(c1 + 1, c2 - c1 - 1);
  const std::string choice = data.substr(c2 + 1);
  std::string who = "telegram";
  if (const json* f = member(cb, "from")) {
    const json* un = member(*f, "username");
    const json* id = member(*f, "id");
    if (un && un->is_string())
      who += ":@" + un->get<std::string>();
    else if (id && id->is_number_integer())
      who += ":" + (id->is_number_unsigned() ? std::to_string(id->get<unsigned long long>())
                                             : std::to_string(id->get<long long>()));
  }
  p.answer.by = who;
  if (choice == "once") {
    p.answer.approve = true;
    p.answer.scope = Scope::Once;
  } else if (choice == "10m") {
    p.answer.approve = true;
    p.answer.scope = Scope::Duration;
    p.answer.duration = kTenMinutes;
  } else if (choice == "deny") {
    p.answer.approve = false;
    p.answer.reason = "denied on Telegram by " + who;
  } else {
    p.error = "unknown button";
  }
  return p;
}

struct TelegramChannel::State : std::enable_shared_from_this<State> {
  State(asio::io_context& i, ConsentGate& g, TelegramSettings st)
      : io(i), gate(g), s(std::move(st)), client(i), backoff_timer(i) {}
  asio::io_context& io;
  ConsentGate& gate;
  TelegramSettings s;
  http::Url base;
  http::Client client;
  asio::steady_timer backoff_timer;
  bool started = false;
  bool stopped = false;
  long long offset = 0;
  struct Message {
    long long message_id = 0;  // 0 until sendMessage answered
    std::string text;
    std::string answered_by;  // set when a press here answered it
    std::string final_text;   // set when it ended before sendMessage answered
  };
  std::map<std::string, Message> messages;  // by request id

  asio::awaitable<http::Outcome> call(std::string method, json body,
                                      std::chrono::milliseconds timeout) {
    std::string prefix = base.target;
    while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
    const std::string target = prefix + "/bot" + s.token + "/" + method;
    const std::string post = "POST";
    std::vector<std::pair<std::string, std::string>> headers;
    co_return co_await client.request(base, post, target, dump(body), std::move(headers), timeout);
  }

  // The result of a Bot API call, or null when it failed (transport, status, ok:false).
  static json result_of(const http::Outcome& o) {
    if (o.kind != http::Outcome::Kind::Ok || o.response.status != 200) return nullptr;
    auto r = telegram_result(o.response.body);
    return r ? std::move(*r) : json(nullptr);
  }

  void fire(std::string method, json body) {
    asio::co_spawn(
        io,
        [self = shared_from_this(), method = std::move(method),
         body = std::move(body)]() -> asio::awaitable<void> {
          if (self->stopped) co_return;
          (void)co_await self->call(method, body, kCallTimeout);
        },
        asio::detached);
  }

  void answer_callback(const std::string& cb_id, const std::string& text) {
    json b;
    b["callback_query_id"] = cb_id;
    b["text"] = text;
    fire("answerCallbackQuery", std::move(b));
  }

  void edit(long long message_id, const std::string& text) {
    json b;
    b["chat_id"] = s.chat_id;
    b["message_id"] = message_id;
    b["text"] = text;
    b["parse_mode"] = "HTML";  // the text is the request's message, escaped as it was
    b["reply_markup"] = json{{"inline_keyboard", json::array()}};
    fire("editMessageText", std::move(b));
  }

  asio::awaitable<void> send(PendingInfo p) {
    auto self = shared_from_this();
    const std::string id = p.id;
    const long long left = std::max<long long>(0, std::chrono::duration_cast<std::chrono::seconds>(
                                                      p.expires - std::chrono::system_clock::now())
                                                      .count());
    const std::string how = "acp pending " + id + ", or the web page";
    std::string text = "ACP consent request " + html_escape(id) + "\n";
    if (!s.ctx.agent_command.empty())
      text += "Agent: " + code(s.ctx.agent_command, 300, how) + "\n";
    text += "Wants: <code>" + html_escape(clip(summary(p.action), kMaxShown, how)) + "</code>\n";
    if (!p.rule_text.empty()) text += "Rule: " + code(p.rule_text, 300, how) + "\n";
    text += "Session: " + code(p.session) + "\n";
    const auto reach = approval_reach(p.action, kTenMinutes);
    text += "Approve 10 min covers " + html_escape(clip(reach.duration, 500, how)) + ".\n";
    text += "Answer within " + std::to_string(left) + " s, or it is denied.";
    messages[id].text = text;
    auto button = [&](const std::string& label, const std::string& choice) {
      return json{{"text", label}, {"callback_data", "acp:" + id + ":" + choice}};
    };
    json body;
    body["chat_id"] = s.chat_id;
    body["text"] = text;
    body["parse_mode"] = "HTML";
    body["reply_markup"] = {
        {"inline_keyboard", json::array({json::array({button("Approve once", "once"),
                                                      button("Approve 10 min", "10m")}),
                                         json::array({button("Deny", "deny")})})}};
    const std::string method = "sendMessage";
    auto o = co_await call(method, body, kCallTimeout);
    if (stopped) co_return;
    auto it = messages.find(id);
    if (it == messages.end()) co_return;
    auto mid = telegram_message_id(result_of(o));
    if (!mid) {
      // Nobody sees this request on Telegram; the other channels or the timeout decide.
      messages.erase(it);
      co_return;
    }
    it->second.message_id = *mid;
    if (!it->second.final_text.empty()) {  // it ended while the message was on its way
      edit(it->second.message_id, it->second.final_text);
      messages.erase(it);
    }
  }

  void handle_callback(const json& cb) {
    TelegramPress p = parse_telegram_callback(cb, s.chat_id);
    if (p.callback_id.empty()) return;
    if (!p.error.empty()) {
      answer_callback(p.callback_id, p.error);
      return;
    }
    const std::string& id = p.request_id;
    if (auto m = messages.find(id); m != messages.end()) m->second.answered_by = p.answer.by;
    auto st = gate.answer(id, p.answer);
    if (!st) {
      if (auto m = messages.find(id); m != messages.end()) m->second.answered_by.clear();
      answer_callback(p.callback_id, "this request is no longer pending");
      return;
    }
    answer_callback(p.callback_id, p.answer.approve ? "Approved" : "Denied");
  }

  asio::awaitable<void> poll_loop() {
    auto self = shared_from_this();
    auto delay = s.backoff;
    while (!stopped) {
      json body;
      body["offset"] = offset;
      body["timeout"] = s.poll_timeout.count();
      body["allowed_updates"] = json::array({"callback_query"});
      const std::string method = "getUpdates";
      auto o = co_await call(method, body,
                             std::chrono::duration_cast<std::chrono::milliseconds>(
                                 s.poll_timeout + std::chrono::seconds(10)));
      if (stopped) co_return;
      auto r = result_of(o);
      if (!r.is_array()) {
        backoff_timer.expires_after(delay);
        boost::system::error_code ec;
        co_await backoff_timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        delay = std::min<std::chrono::milliseconds>(kMaxBackoff, delay * 2);
        continue;
      }
      delay = s.backoff;
      auto updates = telegram_updates(r, offset);
      offset = updates.next_offset;
      for (const auto& cb : updates.callbacks) {
        handle_callback(cb);
        if (stopped) co_return;
      }
    }
  }
};

TelegramChannel::TelegramChannel(asio::io_context& io, ConsentGate& gate, TelegramSettings s)
    : s_(std::make_shared<State>(io, gate, std::move(s))) {}

TelegramChannel::~TelegramChannel() {
  stop();
}

Result<std::unique_ptr<TelegramChannel>> TelegramChannel::from_config(
    asio::io_context& io, ConsentGate& gate, const config::TelegramChannel& cfg,
    const ChannelContext& ctx) {
  auto token = config::read_secret_file(cfg.token_file);
  if (!token) return make_error("telegram: " + token.error().message());
  TelegramSettings s;
  s.api_base = cfg.api_base;
  s.token = *token;
  s.chat_id = cfg.chat_id;
  s.ca_file = cfg.ca_file;
  s.ctx = ctx;
  return std::make_unique<TelegramChannel>(io, gate, std::move(s));
}

Status TelegramChannel::start() {
  auto& st = *s_;
  auto u = http::parse_url(st.s.api_base);
  if (!u) return make_error("api_base: " + u.error().message());
  if (!u->tls) return make_error("api_base " + st.s.api_base + " is not https://");
  st.base = *u;
  if (st.s.token.empty()) return make_error("the bot token is empty");
  if (st.s.chat_id.empty()) return make_error("no chat_id");
  if (auto init = st.client.init(st.s.ca_file); !init) return init;
  st.started = true;
  asio::co_spawn(
      st.io, [self = s_] { return self->poll_loop(); }, asio::detached);
  return {};
}

void TelegramChannel::stop() {
  auto& st = *s_;
  if (st.stopped) return;
  st.stopped = true;
  st.backoff_timer.cancel();
  st.client.cancel_all();
  st.messages.clear();
}

std::string TelegramChannel::describe() const {
  return "telegram: chat " + s_->s.chat_id + " via " + s_->s.api_base;
}

void TelegramChannel::on_request(const PendingInfo& p) {
  auto& st = *s_;
  if (st.stopped || !st.started) return;
  st.messages[p.id] = {};
  asio::co_spawn(
      st.io, [self = s_, p] { return self->send(p); }, asio::detached);
}

void TelegramChannel::on_resolved(const PendingInfo& p, const ConsentOutcome& o) {
  auto& st = *s_;
  auto it = st.messages.find(p.id);
  if (it == st.messages.end() || st.stopped) return;
  std::string result;
  const std::string where = it->second.answered_by.empty()
                                ? "on another channel"
                                : "by " + html_escape(visible(it->second.answered_by));
  if (o.approved) {
    result = "APPROVED (" + html_escape(o.scope) + ") " + where;
  } else if (o.decided_by == "timeout") {
    result = "TIMED OUT: denied (nobody answered in time)";
  } else if (o.decided_by == "error") {
    result = "DENIED: " + html_escape(visible(o.reason));
  } else {
    result = "DENIED " + where;
  }
  const std::string text = it->second.text + "\n\n" + result;
  if (it->second.message_id == 0) {
    it->second.final_text = text;  // send() edits it once the message exists
    return;
  }
  st.edit(it->second.message_id, text);
  st.messages.erase(it);
}

}  // namespace acp::consent
