// The pods of one node, kept current: list with fieldSelector=spec.nodeName=<node>, then
// watch from the list's resourceVersion (bookmarks on), reconnecting from the last
// resourceVersion seen with backoff; 410 Gone (as the HTTP status or as an ERROR event)
// means the version is too old: list again.
#pragma once

#include <utility>  // before awaitable.hpp (Boost 1.74)

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include "acp/k8s/kube_client.hpp"
#include "acp/k8s/pod.hpp"

namespace acp::k8s {

class PodWatchHandler {
 public:
  virtual ~PodWatchHandler() = default;
  // After every successful list: all pods of the node. Pods the handler knows that are not
  // in the list are gone.
  virtual void on_list(const std::vector<Pod>& pods) = 0;
  // ADDED / MODIFIED / DELETED (bookmarks and errors are the watcher's business).
  virtual void on_event(const WatchEvent& ev) = 0;
  // Every failure the watcher recovers from, for the log: "watch: connect ...: refused".
  virtual void on_error(const std::string& what) = 0;
};

struct PodWatcherConfig {
  std::string node_name;
  std::chrono::milliseconds backoff_initial{250};
  std::chrono::milliseconds backoff_max{30000};
  // Asked of the server per watch (it ends the watch then, and we resume from the last rv).
  std::chrono::seconds watch_timeout{300};
};

struct PodWatcherCounters {
  uint64_t lists = 0;           // successful lists
  uint64_t relists_gone = 0;    // lists forced by 410 Gone
  uint64_t watch_restarts = 0;  // watches started again after the first one
  uint64_t errors = 0;          // failed lists/watches (each followed by a backoff)
  uint64_t events = 0;          // ADDED/MODIFIED/DELETED handled
  uint64_t bookmarks = 0;
};

class PodWatcher {
 public:
  PodWatcher(boost::asio::io_context& io, KubeClient& client, PodWatcherConfig cfg,
             PodWatchHandler& handler);
  // Runs until the io_context stops.
  boost::asio::awaitable<void> run();

  const PodWatcherCounters& counters() const { return counters_; }
  const std::string& resource_version() const { return rv_; }
  // True once the first list succeeded.
  bool synced() const { return counters_.lists > 0; }

  std::string list_target() const;
  std::string watch_target() const;

 private:
  boost::asio::awaitable<void> sleep(std::chrono::milliseconds d);

  boost::asio::io_context& io_;
  KubeClient& client_;
  PodWatcherConfig cfg_;
  PodWatchHandler& handler_;
  PodWatcherCounters counters_;
  std::string rv_;
};

}  // namespace acp::k8s
