// The web page channel over real loopback sockets: the token (file, query, cookie, bearer), the
// Host and Origin checks, the JSON API against a live gate, and the Server-Sent Events stream.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <future>
#include <map>

#include "acp/proxy/audit_log.hpp"
#include "acp/proxy/web_channel.hpp"
#include "consent_test_support.hpp"

namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using acp::consent::ConsentOutcome;
using acp::testing::TempDir;
using asio::ip::tcp;
using nlohmann::json;

struct Reply {
  int status = 0;
  std::map<std::string, std::string> headers;
  std::string body;
  json j() const { return json::parse(body, nullptr, false); }
};

// One request with Beast's synchronous client, as curl would send it.
Reply request(uint16_t port, http::verb verb, const std::string& target,
              const std::map<std::string, std::string>& headers = {}, const std::string& body = "",
              bool set_host = true) {
  asio::io_context io;
  tcp::socket s(io);
  s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  http::request<http::string_body> req{verb, target, 11};
  if (set_host) req.set(http::field::host, "127.0.0.1:" + std::to_string(port));
  for (const auto& [k, v] : headers) req.set(k, v);
  req.body() = body;
  req.prepare_payload();
  http::write(s, req);
  boost::beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(s, buf, res);
  Reply r;
  r.status = static_cast<int>(res.result_int());
  for (const auto& f : res) r.headers[std::string(f.name_string())] = std::string(f.value());
  r.body = res.body();
  return r;
}

class WebChannelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    session_ = std::make_unique<acp::testing::GateSession>(dir_, "cafe00000042", "control.sock");
    cfg_.listen = "127.0.0.1:0";
    cfg_.token_file = dir_ / "etc/web.token";
    ctx_.session_id = "cafe00000042";
    ctx_.agent_command = "python3 agent.py";
    ctx_.audit_path = dir_ / "audit.jsonl";
    ctx_.proxy_url = "http://127.0.0.1:8443";
    ctx_.session_status = [] { return json{{"id", "cafe00000042"}, {"mode", "enforce"}}; };
  }
  void TearDown() override {
    stop_channel();
    session_.reset();
  }

  acp::Status start_channel() {
    std::promise<acp::Status> done;
    asio::post(session_->io, [&] {
      channel_ = acp::consent::WebChannel::create(session_->io, *session_->gate, cfg_, ctx_);
      auto st = channel_->start();
      if (st)
        session_->gate->add_observer(channel_.get());
      else
        channel_.reset();
      done.set_value(st);
    });
    return done.get_future().get();
  }
  void stop_channel() {
    if (!channel_) return;
    std::promise<void> done;
    asio::post(session_->io, [&] {
      session_->gate->remove_observer(channel_.get());
      channel_->stop();
      channel_.reset();
      done.set_value();
    });
    done.get_future().wait();
  }
  uint16_t port() const { return channel_->port(); }
  std::map<std::string, std::string> bearer() const {
    return {{"Authorization", "Bearer " + channel_->token()}};
  }
  std::future<ConsentOutcome> ask(const std::string& host) {
    acp::Action a;
    a.kind = "http";
    a.host = host;
    a.port = 80;
    a.method = "GET";
    a.path = "/x";
    return session_->ask(a, "{kind: http, host: \"" + host + "\"}");
  }
  std::string wait_pending_id() {
    auto r = session_->wait_pending(1);
    return r.is_null() ? "" : r["pending"][0]["id"].get<std::string>();
  }

  TempDir dir_;
  std::unique_ptr<acp::testing::GateSession> session_;
  acp::config::WebChannel cfg_;
  acp::consent::ChannelContext ctx_;
  std::unique_ptr<acp::consent::WebChannel> channel_;
};

TEST_F(WebChannelTest, CreatesAPrivateTokenFileOnceAndKeepsIt) {
  ASSERT_TRUE(start_channel().ok());
  struct stat st {};
  ASSERT_EQ(::stat(cfg_.token_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  struct stat dst {};
  ASSERT_EQ(::stat((dir_ / "etc").c_str(), &dst), 0);
  EXPECT_EQ(dst.st_mode & 0777, 0755u);
  const std::string tok = channel_->token();
  EXPECT_EQ(tok.size(), 64u);
  EXPECT_EQ(tok.find_first_not_of("0123456789abcdef"), std::string::npos);
  // The description goes where the agent may read it: the page and where its token is, never
  // the token (url() has it, for acp's terminal only).
  EXPECT_NE(channel_->describe().find("web: http://127.0.0.1:" + std::to_string(port()) +
                                      "/?token=… (the token is in " + cfg_.token_file),
            std::string::npos)
      << channel_->describe();
  EXPECT_EQ(channel_->describe().find(tok), std::string::npos) << channel_->describe();
  EXPECT_EQ(channel_->url(), "http://127.0.0.1:" + std::to_string(port()) + "/?token=" + tok);
  EXPECT_NE(channel_->describe().find("new token"), std::string::npos);
  stop_channel();
  ASSERT_TRUE(start_channel().ok());
  EXPECT_EQ(channel_->token(), tok);
  EXPECT_EQ(channel_->describe().find("new token"), std::string::npos);
}

TEST_F(WebChannelTest, RefusesATokenFileOthersCanRead) {
  std::filesystem::create_directories(dir_ / "etc");
  std::ofstream(cfg_.token_file) << std::string(64, 'a') << "\n";
  ::chmod(cfg_.token_file.c_str(), 0644);
  auto st = start_channel();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message().find("readable by others"), std::string::npos);
}

TEST_F(WebChannelTest, ATakenPortThatWasAskedForIsAnError) {
  asio::io_context io;
  tcp::acceptor busy(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  cfg_.listen = "127.0.0.1:" + std::to_string(busy.local_endpoint().port());
  auto st = start_channel();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message().find("cannot listen"), std::string::npos);
}

TEST_F(WebChannelTest, EveryRequestWithoutTheTokenGets403AndNothingElse) {
  ASSERT_TRUE(start_channel().ok());
  const std::string wrong(64, '0');
  for (const auto& target :
       {"/", "/api/pending", "/api/events", "/api/audit", "/api/session", "/nope"}) {
    auto none = request(port(), http::verb::get, target);
    EXPECT_EQ(none.status, 403) << target;
    EXPECT_EQ(none.body, "forbidden\n") << target;
    EXPECT_EQ(none.headers.count("Set-Cookie"), 0u);
    EXPECT_EQ(request(port(), http::verb::get, std::string(target) + "?token=" + wrong).status,
              403);
    EXPECT_EQ(
        request(port(), http::verb::get, target, {{"Authorization", "Bearer " + wrong}}).status,
        403);
    EXPECT_EQ(request(port(), http::verb::get, target,
                      {{"Cookie", "acp_web_" + std::to_string(port()) + "=" + wrong}})
                  .status,
              403);
  }
  // A prefix of the token is not the token.
  auto prefix =
      request(port(), http::verb::get, "/api/pending?token=" + channel_->token().substr(0, 63));
  EXPECT_EQ(prefix.status, 403);
  EXPECT_EQ(request(port(), http::verb::get, "/api/pending", bearer()).status, 200);
}

TEST_F(WebChannelTest, QueryTokenBecomesAnHttpOnlyStrictCookie) {
  ASSERT_TRUE(start_channel().ok());
  auto r = request(port(), http::verb::get, "/?token=" + channel_->token());
  ASSERT_EQ(r.status, 303);
  EXPECT_EQ(r.headers["Location"], "/");
  const std::string cookie = r.headers["Set-Cookie"];
  const std::string name = "acp_web_" + std::to_string(port());
  EXPECT_EQ(cookie.rfind(name + "=" + channel_->token() + ";", 0), 0u) << cookie;
  EXPECT_NE(cookie.find("HttpOnly"), std::string::npos);
  EXPECT_NE(cookie.find("SameSite=Strict"), std::string::npos);
  auto page =
      request(port(), http::verb::get, "/", {{"Cookie", "x=1; " + name + "=" + channel_->token()}});
  ASSERT_EQ(page.status, 200);
  EXPECT_NE(page.headers["Content-Type"].find("text/html"), std::string::npos);
  EXPECT_NE(page.headers["Content-Security-Policy"].find("default-src 'none'"), std::string::npos);
  EXPECT_EQ(page.headers["X-Frame-Options"], "DENY");
  EXPECT_NE(page.body.find("<title>ACP consent</title>"), std::string::npos);
  EXPECT_NE(page.body.find("EventSource"), std::string::npos);
}

TEST_F(WebChannelTest, HostHeaderMustNameTheListenAddress) {
  ASSERT_TRUE(start_channel().ok());
  const std::string p = std::to_string(port());
  auto with_host = [&](const std::string& host) {
    auto h = bearer();
    h["Host"] = host;
    return request(port(), http::verb::get, "/api/pending", h, "", false).status;
  };
  EXPECT_EQ(with_host("127.0.0.1:" + p), 200);
  EXPECT_EQ(with_host("localhost:" + p), 200);
  EXPECT_EQ(with_host("attacker.example:" + p), 403);  // DNS rebinding
  EXPECT_EQ(with_host("127.0.0.1"), 403);
  EXPECT_EQ(with_host("127.0.0.1:1"), 403);
  EXPECT_EQ(request(port(), http::verb::get, "/api/pending", bearer(), "", false).status, 403);
}

TEST_F(WebChannelTest, ApproveFromThePageWithTheScopeAndWhoAnswered) {
  ASSERT_TRUE(start_channel().ok());
  auto outcome = ask("api.example.com");
  const std::string id = wait_pending_id();
  ASSERT_FALSE(id.empty());
  auto list = request(port(), http::verb::get, "/api/pending", bearer()).j();
  ASSERT_EQ(list["pending"].size(), 1u);
  EXPECT_EQ(list["pending"][0]["id"], id);
  EXPECT_EQ(list["pending"][0]["action"]["host"], "api.example.com");
  EXPECT_EQ(list["pending"][0]["agent_command"], "python3 agent.py");
  EXPECT_EQ(list["pending"][0]["rule"], "{kind: http, host: \"api.example.com\"}");
  EXPECT_GT(list["pending"][0]["expires"].get<long long>(), 0);

  const std::string origin = "http://127.0.0.1:" + std::to_string(port());
  auto a = request(
      port(), http::verb::post, "/api/answer",
      {{"Origin", origin},
       {"Cookie", "acp_web_" + std::to_string(port()) + "=" + channel_->token()},
       {"Content-Type", "application/json"}},
      json{{"id", id}, {"approve", true}, {"scope", "duration"}, {"duration_s", 600}}.dump());
  ASSERT_EQ(a.status, 200) << a.body;
  auto o = outcome.get();
  EXPECT_TRUE(o.approved);
  EXPECT_EQ(o.scope, "duration");
  EXPECT_EQ(o.answered_by, "web");
  EXPECT_NE(o.reason.find("by web for 10 min"), std::string::npos) << o.reason;
  // The first answer won: a second one finds no such request.
  auto again = request(port(), http::verb::post, "/api/answer", bearer(),
                       json{{"id", id}, {"approve", false}}.dump());
  EXPECT_EQ(again.status, 404);
  // 10 min covers the next ask of the same host at once.
  EXPECT_EQ(ask("api.example.com").get().scope, "grant:duration");
}

TEST_F(WebChannelTest, DenyWithAReasonAndBadAnswersAreRefused) {
  ASSERT_TRUE(start_channel().ok());
  auto outcome = ask("deny.example.com");
  const std::string id = wait_pending_id();
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(request(port(), http::verb::post, "/api/answer", bearer(), "not json").status, 400);
  EXPECT_EQ(request(port(), http::verb::post, "/api/answer", bearer(),
                    json{{"id", id}, {"approve", true}, {"scope", "forever"}}.dump())
                .status,
            400);
  EXPECT_EQ(request(port(), http::verb::get, "/api/answer", bearer()).status, 405);
  auto d = request(port(), http::verb::post, "/api/answer", bearer(),
                   json{{"id", id}, {"approve", false}, {"reason", "not today"}}.dump());
  ASSERT_EQ(d.status, 200) << d.body;
  auto o = outcome.get();
  EXPECT_FALSE(o.approved);
  EXPECT_EQ(o.answered_by, "web");
  EXPECT_NE(o.reason.find("not today"), std::string::npos);
}

TEST_F(WebChannelTest, CrossOriginPostsAreRefused) {
  ASSERT_TRUE(start_channel().ok());
  auto outcome = ask("csrf.example.com");
  const std::string id = wait_pending_id();
  ASSERT_FALSE(id.empty());
  const std::string cookie = "acp_web_" + std::to_string(port()) + "=" + channel_->token();
  const std::string body = json{{"id", id}, {"approve", true}}.dump();
  EXPECT_EQ(request(port(), http::verb::post, "/api/answer",
                    {{"Origin", "http://attacker.example"}, {"Cookie", cookie}}, body)
                .status,
            403);
  auto h = bearer();
  h["Origin"] = "null";
  EXPECT_EQ(request(port(), http::verb::post, "/api/answer", h, body).status, 403);
  // The cookie alone, without an Origin, does not answer either.
  EXPECT_EQ(request(port(), http::verb::post, "/api/answer", {{"Cookie", cookie}}, body).status,
            403);
  // Still pending: nothing above answered it.
  EXPECT_EQ(request(port(), http::verb::get, "/api/pending", bearer()).j()["pending"].size(), 1u);
  ASSERT_EQ(request(port(), http::verb::post, "/api/answer", bearer(),
                    json{{"id", id}, {"approve", false}}.dump())
                .status,
            200);
  EXPECT_FALSE(outcome.get().approved);
}

// Reads SSE events ("event: X\ndata: Y\n\n") from a raw socket.
struct SseReader {
  asio::io_context io;
  tcp::socket s{io};
  std::string buf;
  std::string head;
  SseReader(uint16_t port, const std::string& token) {
    s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    std::string req = "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                      "\r\nAuthorization: Bearer " + token + "\r\n\r\n";
    asio::write(s, asio::buffer(req));
    auto n = asio::read_until(s, asio::dynamic_buffer(buf), "\r\n\r\n");
    head = buf.substr(0, n);
    buf.erase(0, n);
  }
  // The next named event's data (comments and retry lines skipped).
  std::pair<std::string, json> next() {
    for (;;) {
      auto n = asio::read_until(s, asio::dynamic_buffer(buf), "\n\n");
      std::string block = buf.substr(0, n);
      buf.erase(0, n);
      std::string event, data;
      std::istringstream in(block);
      for (std::string line; std::getline(in, line);) {
        if (line.rfind("event: ", 0) == 0) event = line.substr(7);
        if (line.rfind("data: ", 0) == 0) data = line.substr(6);
      }
      if (!event.empty()) return {event, json::parse(data, nullptr, false)};
    }
  }
};

TEST_F(WebChannelTest, EventsStreamNewRequestsAndHowTheyEnded) {
  ASSERT_TRUE(start_channel().ok());
  SseReader sse(port(), channel_->token());
  EXPECT_NE(sse.head.find("200 OK"), std::string::npos);
  EXPECT_NE(sse.head.find("text/event-stream"), std::string::npos);
  auto [e0, snap] = sse.next();
  EXPECT_EQ(e0, "snapshot");
  EXPECT_EQ(snap["pending"].size(), 0u);

  auto outcome = ask("sse.example.com");
  auto [e1, req] = sse.next();
  ASSERT_EQ(e1, "request");
  EXPECT_EQ(req["action"]["host"], "sse.example.com");
  EXPECT_EQ(req["agent_command"], "python3 agent.py");
  // Answered elsewhere (the control socket, as `acp approve` does): the page is told who.
  auto r = acp::consent::control_request(
      session_->server->path(), {{"op", "approve"}, {"id", req["id"]}, {"scope", "session"}});
  ASSERT_TRUE(r.ok());
  auto [e2, res] = sse.next();
  ASSERT_EQ(e2, "resolved");
  EXPECT_EQ(res["id"], req["id"]);
  EXPECT_EQ(res["approved"], true);
  EXPECT_EQ(res["scope"], "session");
  EXPECT_NE(res["by"].get<std::string>().find("control uid="), std::string::npos);
  EXPECT_TRUE(outcome.get().approved);
}

TEST_F(WebChannelTest, AuditTailAndChainState) {
  {
    auto log = acp::audit::AuditLog::open(ctx_.audit_path);
    ASSERT_TRUE(log.ok());
    for (int i = 0; i < 5; ++i)
      ASSERT_TRUE((*log)->append({{"kind", "request"}, {"verdict", "allow"}, {"n", i}}).ok());
  }
  ASSERT_TRUE(start_channel().ok());
  auto r = request(port(), http::verb::get, "/api/audit?n=2", bearer()).j();
  ASSERT_EQ(r["entries"].size(), 2u);
  EXPECT_EQ(r["entries"][0]["n"], 3);
  EXPECT_EQ(r["entries"][1]["n"], 4);
  // The chain is checked off the event loop; ask until the report is there (bounded).
  json chain;
  for (int i = 0; i < 500; ++i) {
    chain = request(port(), http::verb::get, "/api/audit?n=1", bearer()).j()["chain"];
    if (chain["state"] != "checking") break;
    std::this_thread::yield();
  }
  EXPECT_EQ(chain["state"], "ok") << chain.dump();
  EXPECT_EQ(chain["lines"], 5);
}

// Issue 13: a U+202E in a path reversed what the page showed. Everything the page shows of
// the agent's text comes from the server already visible (summary(), reach, the audit tail,
// the events), so the page's textContent shows \u{202E}, never the character.
TEST_F(WebChannelTest, AgentTextReachesThePageVisible) {
  const std::string rlo = "\xe2\x80\xae";  // U+202E RIGHT-TO-LEFT OVERRIDE
  {
    auto log = acp::audit::AuditLog::open(ctx_.audit_path);
    ASSERT_TRUE(log.ok());
    ASSERT_TRUE((*log)
                    ->append({{"kind", "request"},
                              {"verdict", "deny"},
                              {"comm", "x\x1b]0;t\x07"},
                              {"action",
                               {{"kind", "http"},
                                {"host", "files.example"},
                                {"port", 80},
                                {"method", "GET"},
                                {"path", "/report" + rlo + "fdp.exe"}}}})
                    .ok());
  }
  ctx_.agent_command = "agent\x1b[2J";
  ASSERT_TRUE(start_channel().ok());
  SseReader sse(port(), channel_->token());
  (void)sse.next();  // the snapshot
  acp::Action a;
  a.kind = "http";
  a.host = "files.example";
  a.port = 80;
  a.method = "GET";
  a.path = "/report" + rlo + "fdp.exe";
  auto outcome = session_->ask(a, "{kind: http}");
  auto [e1, req] = sse.next();
  ASSERT_EQ(e1, "request");
  const std::string want = "GET files.example:80/report\\u{202E}fdp.exe";
  EXPECT_EQ(req["summary"], want);
  EXPECT_EQ(req["agent_command"], "agent\\x1b[2J");
  EXPECT_NE(
      req["reach"]["session"].get<std::string>().find("every http request to files.example:80"),
      std::string::npos);
  auto list = request(port(), http::verb::get, "/api/pending", bearer()).j();
  EXPECT_EQ(list["pending"][0]["summary"], want);
  auto audit = request(port(), http::verb::get, "/api/audit?n=5", bearer());
  EXPECT_EQ(audit.body.find(rlo), std::string::npos) << audit.body;
  EXPECT_EQ(audit.body.find("\\u001b"), std::string::npos) << audit.body;  // no raw ESC in JSON
  auto entries = audit.j()["entries"];
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0]["summary"], want);
  EXPECT_EQ(entries[0]["comm"], "x\\x1b]0;t\\x07");
  auto r =
      acp::consent::control_request(session_->server->path(), {{"op", "deny"}, {"id", req["id"]}});
  ASSERT_TRUE(r.ok());
  auto [e2, res] = sse.next();
  ASSERT_EQ(e2, "resolved");
  EXPECT_EQ(res["summary"], want);
  EXPECT_FALSE(outcome.get().approved);
}

TEST_F(WebChannelTest, SessionStatusComesFromTheSession) {
  ASSERT_TRUE(start_channel().ok());
  auto r = request(port(), http::verb::get, "/api/session", bearer()).j();
  EXPECT_EQ(r["session"], "cafe00000042");
  EXPECT_EQ(r["agent_command"], "python3 agent.py");
  EXPECT_EQ(r["status"]["mode"], "enforce");
}

}  // namespace
