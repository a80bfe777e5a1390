// Fuzz target: the control-socket protocol (include/acp/proxy/control.hpp). Each input line goes
// through handle_control_line() as the server reads it, against a real ConsentGate on an
// io_context that has two requests pending. "$0" and "$1" in a line stand for the pending
// requests' ids (random at run time, so the fuzzer could not guess them). Every reply must be
// one well-formed JSON object with "ok" that survives the wire encoding.
#include <unistd.h>

#include <utility>  // before boost/asio (Boost 1.74)

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "acp/proxy/consent_gate.hpp"
#include "acp/proxy/control.hpp"

using namespace acp;
using namespace acp::consent;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

// A scratch directory for the "always" grants file, removed at exit.
struct Scratch {
  std::string dir;
  Scratch() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "acp-fuzz-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) std::abort();
    dir = tmpl;
  }
  ~Scratch() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

void replace_all(std::string& s, std::string_view from, const std::string& to) {
  for (size_t i = s.find(from); i != std::string::npos; i = s.find(from, i + to.size()))
    s.replace(i, from.size(), to);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Scratch scratch;
  if (size > 256 * 1024) return 0;
  const std::string grants = scratch.dir + "/grants.json";
  std::filesystem::remove(grants);  // each input starts from no grants

  boost::asio::io_context io;
  int answered = 0;
  {
    GateConfig cfg;
    cfg.session_id = "fuzz";
    cfg.grants_path = grants;
    ConsentGate gate(io, cfg);
    for (const char* host : {"a.example", "b.example"}) {
      Action a;
      a.kind = "http";
      a.host = host;
      a.port = 443;
      a.method = "CONNECT";
      PolicyDecision d;
      d.verdict = Verdict::Ask;
      d.timeout = std::chrono::seconds(3600);
      boost::asio::co_spawn(
          io,
          [&gate, a, d, &answered]() -> boost::asio::awaitable<void> {
            (void)co_await gate.ask(a, d);
            ++answered;
          },
          boost::asio::detached);
    }
    io.poll();
    std::vector<std::string> ids;
    for (const auto& p : gate.pending()) ids.push_back(p.id);
    check(ids.size() == 2);

    std::string_view in(reinterpret_cast<const char*>(data), size);
    while (!in.empty()) {
      size_t nl = in.find('\n');
      std::string line(in.substr(0, nl));
      in.remove_prefix(nl == std::string_view::npos ? in.size() : nl + 1);
      if (line.size() > kMaxControlLine) break;  // the server refuses the line and closes
      replace_all(line, "$0", ids[0]);
      replace_all(line, "$1", ids[1]);
      auto reply = handle_control_line(gate, line, "fuzz uid=0 pid=1");
      if (!reply) continue;
      check(reply->is_object() && reply->contains("ok") && (*reply)["ok"].is_boolean());
      if (!(*reply)["ok"].get<bool>()) check((*reply)["error"].is_string());
      std::string wire = control_reply_text(*reply);
      check(!wire.empty() && wire.back() == '\n');
      check(wire.find('\n') == wire.size() - 1);  // one line
      auto back = nlohmann::json::parse(wire, nullptr, false);
      check(!back.is_discarded() && back.is_object());
      io.poll();
    }
  }  // the gate releases whatever is still pending
  io.poll();
  check(answered == 2);
  return 0;
}
