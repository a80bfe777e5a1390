// A stand-in for the Kubernetes API server, for the node agent's tests: HTTPS on 127.0.0.1
// with a test CA made by the openssl command at test time, bearer-token checked, serving
// GET /api/v1/pods?fieldSelector=spec.nodeName=N as a PodList and, with watch=1, as the real
// watch wire format: HTTP/1.1 chunked, one JSON WatchEvent per line (ADDED, MODIFIED, DELETED,
// BOOKMARK, ERROR). Every change gets the next resourceVersion and is kept, so a watch from
// version R replays what came after R, like the real server; compact() forgets the history, so
// an older R gets 410 Gone (as an ERROR event, or as the HTTP status when asked).
//
// The server runs on its own thread; every method may be called from the test's thread.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace acp::vmtest {

struct PodSpec {
  std::string uid;
  std::string ns = "default";
  std::string name;
  std::string node = "node-a";
  std::string qos = "Burstable";
  std::string ip;  // status.podIP; empty: none yet
  bool confine = false;
  std::string policy;  // annotation acp.dev/policy; empty: none
  std::string mirror;  // annotation kubernetes.io/config.mirror (a static pod's); empty: none
  std::string phase = "Running";
};
nlohmann::json pod_json(const PodSpec& p);

class FakeApiServer {
 public:
  // Makes the CA, the server certificate (SAN IP:127.0.0.1) and the token file in dir.
  // nullptr (with *why) when the openssl command or the listener fails.
  static std::unique_ptr<FakeApiServer> start(const std::string& dir, std::string* why);
  ~FakeApiServer();

  std::string url() const;  // https://127.0.0.1:<port>
  std::string ca_path() const;
  std::string token_path() const;
  // Writes a new token to the token file; requests must carry it from now on (401 otherwise).
  void rotate_token(const std::string& token);

  void add(const PodSpec& p);
  void modify(const PodSpec& p);
  void remove(const std::string& uid);
  // A BOOKMARK event at the current version to every open watch; returns that version.
  std::string bookmark();
  // Forgets the history: watches from before now get 410. Open watches get an ERROR 410 event
  // (and are ended) unless as_http_status, in which case they are ended and the next watch
  // request from an old version gets HTTP 410.
  void compact(bool as_http_status);
  // Ends every open watch normally (the terminating chunk), like timeoutSeconds would.
  void end_watches();

  struct Stats {
    int lists = 0;
    int watches = 0;
    int unauthorized = 0;
    std::string last_watch_rv;          // resourceVersion= of the latest watch request
    std::string last_auth;              // Authorization of the latest request
    std::string last_field_selector;    // decoded fieldSelector of the latest request
    bool last_watch_bookmarks = false;  // allowWatchBookmarks=true on the latest watch
  };
  Stats stats() const;
  int open_watches() const;

  struct Impl;

 private:
  FakeApiServer() = default;
  std::shared_ptr<Impl> impl_;
};

}  // namespace acp::vmtest
