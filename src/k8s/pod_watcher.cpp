// PodWatcher: list, then watch; reconnect from the last resourceVersion; relist on 410.
#include "acp/k8s/pod_watcher.hpp"

#include <algorithm>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

// GCC 12 misreads asio's awaitable frame allocator (operator new/delete of
// awaitable_frame_base) as a mismatched pair in coroutines: a known false positive.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace acp::k8s {

namespace asio = boost::asio;

PodWatcher::PodWatcher(asio::io_context& io, KubeClient& client, PodWatcherConfig cfg,
                       PodWatchHandler& handler)
    : io_(io), client_(client), cfg_(std::move(cfg)), handler_(handler) {}

std::string PodWatcher::list_target() const {
  return "/api/v1/pods?fieldSelector=" + url_encode("spec.nodeName=" + cfg_.node_name);
}

std::string PodWatcher::watch_target() const {
  return list_target() + "&watch=1&allowWatchBookmarks=true&resourceVersion=" + url_encode(rv_) +
         "&timeoutSeconds=" + std::to_string(cfg_.watch_timeout.count());
}

asio::awaitable<void> PodWatcher::sleep(std::chrono::milliseconds d) {
  asio::steady_timer t(io_, d);
  boost::system::error_code ec;
  co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
}

asio::awaitable<void> PodWatcher::run() {
  auto backoff = cfg_.backoff_initial;
  auto fail = [&](const std::string& what) {
    ++counters_.errors;
    handler_.on_error(what);
  };
  bool first_watch = true;
  for (;;) {
    if (rv_.empty()) {
      auto r = co_await client_.get(list_target());
      if (!r || r->status != 200) {
        fail(!r ? "list pods: " + r.error().message()
                : "list pods: HTTP " + std::to_string(r->status) + ": " + r->body.substr(0, 512));
        co_await sleep(backoff);
        backoff = std::min(backoff * 2, cfg_.backoff_max);
        continue;
      }
      auto list = parse_pod_list(r->body);
      if (!list) {
        fail("list pods: " + list.error().message());
        co_await sleep(backoff);
        backoff = std::min(backoff * 2, cfg_.backoff_max);
        continue;
      }
      ++counters_.lists;
      backoff = cfg_.backoff_initial;
      rv_ = list->resource_version;
      handler_.on_list(list->pods);
    }

    if (!first_watch) ++counters_.watch_restarts;
    first_watch = false;
    bool gone = false;
    std::string stream_error;
    auto r = co_await client_.stream_lines(
        watch_target(),
        [&](std::string_view line) {
          auto ev = parse_watch_event(line);
          if (!ev) {
            stream_error = "watch: " + ev.error().message();
            return false;
          }
          if (ev->type == WatchEventType::Error) {
            if (ev->code == 410) {
              gone = true;
            } else {
              stream_error = "watch: ERROR event " + std::to_string(ev->code) + ": " + ev->message;
            }
            return false;
          }
          if (!ev->resource_version.empty()) rv_ = ev->resource_version;
          if (ev->type == WatchEventType::Bookmark) {
            ++counters_.bookmarks;
            return true;
          }
          ++counters_.events;
          handler_.on_event(*ev);
          return true;
        },
        cfg_.watch_timeout + std::chrono::seconds(60));
    if (r && r->status == 410) gone = true;
    if (gone) {
      // The version we hold is compacted away: only a fresh list tells what exists now.
      ++counters_.relists_gone;
      handler_.on_error("watch: 410 Gone at resourceVersion " + rv_ + ": listing again");
      rv_.clear();
      continue;
    }
    if (!r) {
      fail(r.error().message());
    } else if (r->status != 200) {
      fail("watch pods: HTTP " + std::to_string(r->status) + ": " + r->body.substr(0, 512));
    } else if (!stream_error.empty()) {
      fail(stream_error);
    } else {
      // The server ended the watch (timeoutSeconds): resume at once from the last version.
      backoff = cfg_.backoff_initial;
      continue;
    }
    co_await sleep(backoff);
    backoff = std::min(backoff * 2, cfg_.backoff_max);
  }
}

}  // namespace acp::k8s
