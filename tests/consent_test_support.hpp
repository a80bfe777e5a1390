// Helpers for the audit and consent tests: a mkdtemp dir removed at the end, whole-file I/O,
// and an io_context that drives the gate from the test thread.
#pragma once

#include <unistd.h>

#include <utility>  // before awaitable.hpp (Boost 1.74)

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>
#include "acp/proxy/consent_gate.hpp"
#include "acp/proxy/control.hpp"

namespace acp::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "acp-consent-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) std::abort();
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

inline void write_lines(const std::string& path, const std::vector<std::string>& lines) {
  std::ofstream out(path, std::ios::trunc);
  for (const auto& l : lines) out << l << "\n";
}

// Runs every handler that is ready now (no blocking, no timers waited for).
inline void pump(boost::asio::io_context& io) {
  io.restart();
  io.poll();
}

// A session's gate and control server on an io_context run by a thread of its own, as in acp;
// the test thread is the `acp approve` side.
struct GateSession {
  boost::asio::io_context io;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work{io.get_executor()};
  std::unique_ptr<consent::ConsentGate> gate;
  std::unique_ptr<consent::ControlServer> server;
  std::thread thread;

  GateSession(const TempDir& dir, const std::string& id, const std::string& sock) {
    consent::GateConfig cfg;
    cfg.session_id = id;
    cfg.grants_path = dir / ("grants-" + id + ".json");
    gate = std::make_unique<consent::ConsentGate>(io, cfg);
    auto s = consent::ControlServer::start(io, dir / sock, *gate);
    if (!s.ok()) throw std::runtime_error(s.error().message());
    server = std::move(*s);
    thread = std::thread([this] { io.run(); });
  }
  ~GateSession() {
    std::promise<void> done;
    boost::asio::post(io, [&] {
      server.reset();
      gate.reset();
      done.set_value();
    });
    done.get_future().wait();
    work.reset();
    io.stop();
    thread.join();
  }
  // Asks the gate on its own thread, as the proxy would, with an `ask` decision.
  std::future<consent::ConsentOutcome> ask(Action a, const std::string& rule_text) {
    auto p = std::make_shared<std::promise<consent::ConsentOutcome>>();
    auto f = p->get_future();
    boost::asio::post(io, [this, a = std::move(a), rule_text, p] {
      boost::asio::co_spawn(
          io,
          [this, a, rule_text, p]() -> boost::asio::awaitable<void> {
            PolicyDecision d;
            d.verdict = Verdict::Ask;
            d.rule_text = rule_text;
            p->set_value(co_await gate->ask(a, d));
          },
          boost::asio::detached);
    });
    return f;
  }
  // Polls the control socket until `n` requests are pending (the asks run on the other
  // thread); the reply, or null after a bounded wait.
  nlohmann::json wait_pending(size_t n) {
    for (int i = 0; i < 2000; ++i) {
      auto r = consent::control_request(server->path(), {{"op", "pending"}});
      if (r.ok() && (*r)["pending"].size() == n) return *r;
      std::this_thread::yield();
    }
    return nullptr;
  }
};

}  // namespace acp::testing
