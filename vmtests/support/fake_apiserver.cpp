// FakeApiServer: see the header. All state lives on the server's io thread; the public methods
// post to it and wait.
#include "support/fake_apiserver.hpp"

#include <utility>  // before awaitable.hpp (Boost 1.74)

#include <cstdlib>
#include <deque>
#include <fstream>
#include <future>
#include <map>
#include <set>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

// GCC 12 misreads asio's awaitable frame allocator (operator new/delete of
// awaitable_frame_base) as a mismatched pair in coroutines: a known false positive.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace acp::vmtest {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using asio::ip::tcp;
using error_code = boost::system::error_code;
using nlohmann::json;

json pod_json(const PodSpec& p) {
  json labels = json::object();
  if (p.confine) labels["acp.dev/confine"] = "true";
  labels["app"] = p.name;
  json annotations = json::object();
  if (!p.policy.empty()) annotations["acp.dev/policy"] = p.policy;
  if (!p.mirror.empty()) annotations["kubernetes.io/config.mirror"] = p.mirror;
  json status = {{"phase", p.phase}, {"qosClass", p.qos}};
  if (!p.ip.empty()) {
    status["podIP"] = p.ip;
    status["podIPs"] = json::array({{{"ip", p.ip}}});
  }
  return {{"kind", "Pod"},
          {"apiVersion", "v1"},
          {"metadata",
           {{"name", p.name},
            {"namespace", p.ns},
            {"uid", p.uid},
            {"resourceVersion", "0"},
            {"labels", labels},
            {"annotations", annotations}}},
          {"spec", {{"nodeName", p.node}, {"containers", json::array({{{"name", "main"}}})}}},
          {"status", status}};
}

namespace {

std::string pct_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out.push_back(
          static_cast<char>(std::strtol(std::string(s.substr(i + 1, 2)).c_str(), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(s[i] == '+' ? ' ' : s[i]);
    }
  }
  return out;
}

std::map<std::string, std::string> query_of(std::string_view target) {
  std::map<std::string, std::string> q;
  auto qm = target.find('?');
  if (qm == std::string_view::npos) return q;
  std::string_view rest = target.substr(qm + 1);
  while (!rest.empty()) {
    auto amp = rest.find('&');
    std::string_view kv = rest.substr(0, amp);
    auto eq = kv.find('=');
    q[pct_decode(kv.substr(0, eq))] =
        eq == std::string_view::npos ? "" : pct_decode(kv.substr(eq + 1));
    if (amp == std::string_view::npos) break;
    rest = rest.substr(amp + 1);
  }
  return q;
}

std::string status_json(int code, const std::string& reason, const std::string& message) {
  return json{{"kind", "Status"},    {"apiVersion", "v1"}, {"metadata", json::object()},
              {"status", "Failure"}, {"message", message}, {"reason", reason},
              {"code", code}}
      .dump();
}

std::string chunk(const std::string& line) {
  char hex[32];
  std::snprintf(hex, sizeof hex, "%zx\r\n", line.size() + 1);
  return hex + line + "\n\r\n";
}

}  // namespace

// The coroutines hold Impl by `this`, never by a shared_ptr: their frames sit in io's queues, so
// a frame holding Impl would keep alive the io_context that holds the frame (a cycle LSan
// reported). ~FakeApiServer stops and joins the thread first; then ~Impl destroys io last,
// which destroys the still-suspended session frames with it.
struct FakeApiServer::Impl {
  struct Watch {
    explicit Watch(asio::io_context& io) : wake(io) {}
    std::string node;
    std::deque<std::string> lines;
    bool end = false;
    asio::steady_timer wake;
  };

  asio::io_context io;
  ssl::context ctx{ssl::context::tls_server};
  tcp::acceptor acceptor{io};
  std::thread thread;
  std::string dir;
  std::string token = "token-1";
  uint16_t port = 0;
  uint64_t rv = 100;
  uint64_t compacted = 0;
  bool gone_http = false;
  std::map<std::string, json> pods;
  std::vector<std::pair<uint64_t, json>> history;  // (version, event)
  std::set<std::shared_ptr<Watch>> watches;
  Stats stats;

  template <class F>
  auto on_io(F f) {
    using R = decltype(f());
    std::promise<R> p;
    asio::post(io, [&] {
      if constexpr (std::is_void_v<R>) {
        f();
        p.set_value();
      } else {
        p.set_value(f());
      }
    });
    return p.get_future().get();
  }

  static std::string node_of(const json& obj) {
    return obj.value("/spec/nodeName"_json_pointer, std::string());
  }

  void deliver(const std::string& node, const std::string& line, bool end = false) {
    for (const auto& w : watches) {
      if (!node.empty() && w->node != node) continue;
      if (!line.empty()) w->lines.push_back(line);
      if (end) w->end = true;
      w->wake.cancel();
    }
  }

  void emit(const std::string& type, json obj) {
    ++rv;
    obj["metadata"]["resourceVersion"] = std::to_string(rv);
    json ev = {{"type", type}, {"object", obj}};
    history.emplace_back(rv, ev);
    deliver(node_of(obj), ev.dump());
  }

  asio::awaitable<void> write(ssl::stream<tcp::socket>& s, const std::string& data) {
    error_code ec;
    co_await asio::async_write(s, asio::buffer(data),
                               asio::redirect_error(asio::use_awaitable, ec));
  }

  asio::awaitable<void> respond(ssl::stream<tcp::socket>& s, int code, const std::string& reason,
                                const std::string& body) {
    co_await write(s, "HTTP/1.1 " + std::to_string(code) + " " + reason +
                          "\r\nContent-Type: application/json\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
  }

  asio::awaitable<void> session(tcp::socket sock) {
    ssl::stream<tcp::socket> s(std::move(sock), ctx);
    error_code ec;
    co_await s.async_handshake(ssl::stream_base::server,
                               asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    beast::flat_buffer buf;
    http::request<http::string_body> req;
    co_await http::async_read(s, buf, req, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    stats.last_auth = std::string(req[http::field::authorization]);
    if (stats.last_auth != "Bearer " + token) {
      ++stats.unauthorized;
      co_return co_await respond(s, 401, "Unauthorized",
                                 status_json(401, "Unauthorized", "Unauthorized"));
    }
    const std::string target(req.target());
    if (target.rfind("/api/v1/pods?", 0) != 0)
      co_return co_await respond(s, 404, "Not Found", status_json(404, "NotFound", target));
    auto q = query_of(target);
    stats.last_field_selector = q["fieldSelector"];
    const std::string prefix = "spec.nodeName=";
    if (stats.last_field_selector.rfind(prefix, 0) != 0)
      co_return co_await respond(s, 400, "Bad Request",
                                 status_json(400, "BadRequest", "fieldSelector"));
    const std::string node = stats.last_field_selector.substr(prefix.size());

    if (q["watch"] != "1" && q["watch"] != "true") {
      ++stats.lists;
      json items = json::array();
      for (const auto& [uid, pod] : pods)
        if (node_of(pod) == node) items.push_back(pod);
      json list = {{"kind", "PodList"},
                   {"apiVersion", "v1"},
                   {"metadata", {{"resourceVersion", std::to_string(rv)}}},
                   {"items", items}};
      co_return co_await respond(s, 200, "OK", list.dump());
    }

    ++stats.watches;
    stats.last_watch_rv = q["resourceVersion"];
    stats.last_watch_bookmarks = q["allowWatchBookmarks"] == "true";
    const uint64_t from = std::strtoull(stats.last_watch_rv.c_str(), nullptr, 10);
    const std::string gone_msg =
        "too old resource version: " + stats.last_watch_rv + " (" + std::to_string(compacted) + ")";
    if (from < compacted && gone_http)
      co_return co_await respond(s, 410, "Gone", status_json(410, "Expired", gone_msg));
    co_await write(s,
                   "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n");
    auto w = std::make_shared<Watch>(io);
    w->node = node;
    if (from < compacted) {
      w->lines.push_back(
          json{{"type", "ERROR"}, {"object", json::parse(status_json(410, "Expired", gone_msg))}}
              .dump());
      w->end = true;
    } else {
      for (const auto& [v, ev] : history)
        if (v > from && node_of(ev["object"]) == node) w->lines.push_back(ev.dump());
    }
    watches.insert(w);
    for (;;) {
      while (!w->lines.empty()) {
        std::string line = std::move(w->lines.front());
        w->lines.pop_front();
        co_await write(s, chunk(line));
      }
      if (w->end) {
        co_await write(s, "0\r\n\r\n");
        break;
      }
      w->wake.expires_after(std::chrono::hours(1));
      co_await w->wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (!acceptor.is_open()) break;
    }
    watches.erase(w);
    s.lowest_layer().close(ec);
  }

  asio::awaitable<void> accept_loop() {
    for (;;) {
      error_code ec;
      tcp::socket sock =
          co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      asio::co_spawn(io, session(std::move(sock)), asio::detached);
    }
  }
};

std::unique_ptr<FakeApiServer> FakeApiServer::start(const std::string& dir, std::string* why) {
  const std::string cmd =
      "cd '" + dir +
      "' && "
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
      "-keyout ca.key -out ca.crt -subj /CN=acp-test-cluster-ca && "
      "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
      "-keyout server.key -out server.csr -subj /CN=kube-apiserver && "
      "printf 'subjectAltName=IP:127.0.0.1,DNS:kubernetes.default.svc\\n"
      "basicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > server.ext && "
      "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 "
      "-out server.crt -extfile server.ext";
  if (std::system((cmd + " >/dev/null 2>&1").c_str()) != 0) {
    if (why) *why = "openssl could not make the test CA and server certificate";
    return nullptr;
  }
  auto impl = std::make_shared<Impl>();
  impl->dir = dir;
  error_code ec;
  impl->ctx.use_certificate_chain_file(dir + "/server.crt", ec);
  if (!ec) impl->ctx.use_private_key_file(dir + "/server.key", ssl::context::pem, ec);
  tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
  if (!ec) impl->acceptor.open(ep.protocol(), ec);
  if (!ec) impl->acceptor.bind(ep, ec);
  if (!ec) impl->acceptor.listen(64, ec);
  if (ec) {
    if (why) *why = "fake API server: " + ec.message();
    return nullptr;
  }
  impl->port = impl->acceptor.local_endpoint().port();
  std::ofstream(dir + "/token") << impl->token << "\n";
  asio::co_spawn(impl->io, impl->accept_loop(), asio::detached);
  impl->thread = std::thread([io = &impl->io] { io->run(); });
  std::unique_ptr<FakeApiServer> out(new FakeApiServer());
  out->impl_ = impl;
  return out;
}

FakeApiServer::~FakeApiServer() {
  impl_->on_io([this] {
    error_code ec;
    impl_->acceptor.close(ec);
    impl_->deliver("", "", /*end=*/true);
  });
  impl_->io.stop();
  impl_->thread.join();
}

std::string FakeApiServer::url() const {
  return "https://127.0.0.1:" + std::to_string(impl_->port);
}
std::string FakeApiServer::ca_path() const {
  return impl_->dir + "/ca.crt";
}
std::string FakeApiServer::token_path() const {
  return impl_->dir + "/token";
}

void FakeApiServer::rotate_token(const std::string& token) {
  impl_->on_io([&] {
    impl_->token = token;
    std::ofstream(impl_->dir + "/token.new") << token << "\n";
    std::rename((impl_->dir + "/token.new").c_str(), (impl_->dir + "/token").c_str());
  });
}

void FakeApiServer::add(const PodSpec& p) {
  impl_->on_io([&] {
    json obj = pod_json(p);
    impl_->emit("ADDED", obj);
    obj["metadata"]["resourceVersion"] = std::to_string(impl_->rv);
    impl_->pods[p.uid] = obj;
  });
}

void FakeApiServer::modify(const PodSpec& p) {
  impl_->on_io([&] {
    json obj = pod_json(p);
    impl_->emit("MODIFIED", obj);
    obj["metadata"]["resourceVersion"] = std::to_string(impl_->rv);
    impl_->pods[p.uid] = obj;
  });
}

void FakeApiServer::remove(const std::string& uid) {
  impl_->on_io([&] {
    auto it = impl_->pods.find(uid);
    if (it == impl_->pods.end()) return;
    json obj = it->second;
    impl_->pods.erase(it);
    impl_->emit("DELETED", obj);
  });
}

std::string FakeApiServer::bookmark() {
  return impl_->on_io([&] {
    ++impl_->rv;  // bookmarks carry a version the client has not seen in an event
    const std::string v = std::to_string(impl_->rv);
    json ev = {{"type", "BOOKMARK"},
               {"object",
                {{"kind", "Pod"}, {"apiVersion", "v1"}, {"metadata", {{"resourceVersion", v}}}}}};
    impl_->deliver("", ev.dump());
    return v;
  });
}

void FakeApiServer::compact(bool as_http_status) {
  impl_->on_io([&] {
    ++impl_->rv;
    impl_->compacted = impl_->rv;
    impl_->history.clear();
    impl_->gone_http = as_http_status;
    if (as_http_status) {
      impl_->deliver("", "", /*end=*/true);
    } else {
      const std::string line =
          json{{"type", "ERROR"},
               {"object", json::parse(status_json(410, "Expired", "too old resource version"))}}
              .dump();
      impl_->deliver("", line, /*end=*/true);
    }
  });
}

void FakeApiServer::end_watches() {
  impl_->on_io([&] { impl_->deliver("", "", /*end=*/true); });
}

FakeApiServer::Stats FakeApiServer::stats() const {
  return impl_->on_io([&] { return impl_->stats; });
}

int FakeApiServer::open_watches() const {
  return impl_->on_io([&] { return static_cast<int>(impl_->watches.size()); });
}

}  // namespace acp::vmtest
