// PodWatcher + KubeClient against the fake API server (vmtests/support/fake_apiserver): real
// TLS with a CA made at test time, the real list/watch wire format. Unprivileged.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include "acp/k8s/pod_watcher.hpp"
#include "support/fake_apiserver.hpp"

namespace acp::k8s {
namespace {

using vmtest::FakeApiServer;
using vmtest::PodSpec;

bool eventually(const std::function<bool()>& cond) {
  for (int i = 0; i < 600; ++i) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return cond();
}

PodSpec pod(const std::string& uid, const std::string& name) {
  PodSpec p;
  p.uid = uid;
  p.name = name;
  p.ip = "10.0.0.1";
  p.confine = true;
  return p;
}

struct Recorder : PodWatchHandler {
  std::mutex mu;
  int lists = 0;
  std::vector<std::string> listed;
  std::vector<std::string> events;  // "ADDED name"
  std::vector<std::string> errors;
  void on_list(const std::vector<Pod>& pods) override {
    std::lock_guard l(mu);
    ++lists;
    listed.clear();
    for (const auto& p : pods) listed.push_back(p.name);
  }
  void on_event(const WatchEvent& ev) override {
    std::lock_guard l(mu);
    const char* t = ev.type == WatchEventType::Added      ? "ADDED"
                    : ev.type == WatchEventType::Modified ? "MODIFIED"
                                                          : "DELETED";
    events.push_back(std::string(t) + " " + ev.pod.name);
  }
  void on_error(const std::string& what) override {
    std::lock_guard l(mu);
    errors.push_back(what);
  }
  template <class F>
  auto with(F f) {
    std::lock_guard l(mu);
    return f();
  }
};

class K8sPodWatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char t[] = "/tmp/acp-watch-XXXXXX";
    ASSERT_NE(mkdtemp(t), nullptr);
    dir_ = t;
    std::string why;
    server_ = FakeApiServer::start(dir_, &why);
    ASSERT_TRUE(server_) << why;
  }
  void TearDown() override {
    io_.stop();
    if (thread_.joinable()) thread_.join();
    server_.reset();
    (void)std::system(("rm -rf '" + dir_ + "'").c_str());
  }
  void run(const std::string& ca_path) {
    ApiServerConfig cfg;
    ASSERT_TRUE(parse_api_server_url(server_->url(), cfg));
    cfg.ca_path = ca_path;
    cfg.token_path = server_->token_path();
    client_ = std::make_unique<KubeClient>(io_, cfg);
    watcher_ = std::make_unique<PodWatcher>(
        io_, *client_,
        PodWatcherConfig{.node_name = "node-a",
                         .backoff_initial = std::chrono::milliseconds(10),
                         .backoff_max = std::chrono::milliseconds(50)},
        rec_);
    boost::asio::co_spawn(io_, watcher_->run(), boost::asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }

  std::string dir_;
  std::unique_ptr<FakeApiServer> server_;
  boost::asio::io_context io_;
  std::unique_ptr<KubeClient> client_;
  std::unique_ptr<PodWatcher> watcher_;
  Recorder rec_;
  std::thread thread_;
};

TEST_F(K8sPodWatcherTest, ListsThenWatchesResumesAndRelistsOnGone) {
  server_->add(pod("00000000-0000-4000-8000-000000000001", "first"));
  PodSpec other = pod("00000000-0000-4000-8000-000000000009", "other-node");
  other.node = "node-b";
  server_->add(other);
  run(server_->ca_path());
  ASSERT_TRUE(eventually([&] { return rec_.with([&] { return rec_.lists == 1; }); }));
  EXPECT_EQ(rec_.with([&] { return rec_.listed; }), std::vector<std::string>{"first"});
  ASSERT_TRUE(eventually([&] { return server_->open_watches() == 1; }));
  EXPECT_EQ(server_->stats().last_field_selector, "spec.nodeName=node-a");
  EXPECT_TRUE(server_->stats().last_watch_bookmarks);

  server_->add(pod("00000000-0000-4000-8000-000000000002", "second"));
  server_->remove("00000000-0000-4000-8000-000000000001");
  ASSERT_TRUE(eventually([&] { return rec_.with([&] { return rec_.events.size() == 2; }); }));
  EXPECT_EQ(rec_.with([&] { return rec_.events; }),
            (std::vector<std::string>{"ADDED second", "DELETED first"}));

  // Bookmark, then the server ends the watch: the next one starts at the bookmark's version,
  // and nothing is delivered twice.
  const std::string bv = server_->bookmark();
  server_->end_watches();
  ASSERT_TRUE(eventually([&] { return server_->stats().watches == 2; }));
  EXPECT_EQ(server_->stats().last_watch_rv, bv);
  EXPECT_EQ(rec_.with([&] { return rec_.events.size(); }), 2u);

  // 410 as an ERROR event: list again.
  server_->compact(false);
  ASSERT_TRUE(eventually([&] { return rec_.with([&] { return rec_.lists == 2; }); }));
  EXPECT_EQ(rec_.with([&] { return rec_.listed; }), std::vector<std::string>{"second"});
  // 410 as the HTTP status: list again.
  ASSERT_TRUE(eventually([&] { return server_->open_watches() == 1; }));
  server_->compact(true);
  ASSERT_TRUE(eventually([&] { return rec_.with([&] { return rec_.lists == 3; }); }));
  EXPECT_EQ(watcher_->counters().relists_gone, 2u);
  EXPECT_EQ(server_->stats().unauthorized, 0);
}

TEST_F(K8sPodWatcherTest, RefusesAServerItsCaDidNotSign) {
  ASSERT_EQ(std::system(("cd '" + dir_ +
                         "' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
                         "-nodes -days 1 -keyout other.key -out other.crt -subj /CN=other "
                         ">/dev/null 2>&1")
                            .c_str()),
            0);
  run(dir_ + "/other.crt");
  ASSERT_TRUE(eventually([&] { return rec_.with([&] { return rec_.errors.size() >= 2; }); }));
  EXPECT_EQ(rec_.with([&] { return rec_.lists; }), 0);
  EXPECT_NE(rec_.with([&] { return rec_.errors[0]; }).find("TLS handshake"), std::string::npos)
      << rec_.with([&] { return rec_.errors[0]; });
  EXPECT_EQ(server_->stats().lists, 0);
}

TEST(K8sKubeClientTest, ParsesApiServerUrls) {
  ApiServerConfig c;
  ASSERT_TRUE(parse_api_server_url("https://10.96.0.1:443", c));
  EXPECT_EQ(c.host, "10.96.0.1");
  EXPECT_EQ(c.port, 443);
  ASSERT_TRUE(parse_api_server_url("https://[fd00::1]:6443/", c));
  EXPECT_EQ(c.host, "fd00::1");
  EXPECT_EQ(c.port, 6443);
  ASSERT_TRUE(parse_api_server_url("https://kubernetes.default.svc", c));
  EXPECT_EQ(c.port, 443);
  EXPECT_FALSE(parse_api_server_url("http://10.96.0.1", c));
  EXPECT_FALSE(parse_api_server_url("https://h:99999", c));
  EXPECT_EQ(url_encode("spec.nodeName=node-a"), "spec.nodeName%3Dnode-a");
}

}  // namespace
}  // namespace acp::k8s
