// Fuzz target: the MCP consent path (include/acp/proxy/mcp.hpp). A JSON-RPC message as an agent
// sends it (an HTTP body or a stdio line) is inspected and judged as the proxy hook and
// `acp mcp` do, with a judge that denies some tools. Beyond "no crash, no UB", it checks what the
// consent path relies on: every tools/call found is judged or the message is refused; a refusal
// is well-formed JSON-RPC (one error per request, each with its id); the canonical arguments
// read back to the same JSON; the chunked-body reader never claims more bytes than it was given.
#include <utility>  // before boost/asio/awaitable.hpp (Boost 1.74)

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include "acp/proxy/mcp.hpp"

using namespace acp;
using namespace acp::mcp;
using json = nlohmann::json;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

void check_refusal(const Inspection& in, const Outcome& out) {
  check(!out.forward);
  if (out.reply.empty()) {
    // Only notifications were refused (nothing to answer).
    check(in.kind != Inspection::Kind::Invalid || !in.batch);
    check(in.request_ids.empty());
    return;
  }
  auto r = json::parse(out.reply, nullptr, false);
  check(!r.is_discarded());
  auto check_error = [](const json& e) {
    check(e.is_object() && e["jsonrpc"] == "2.0" && e.contains("id"));
    int code = e["error"]["code"];
    check(code <= -32000 && code >= -32099);
    check(e["error"]["message"].get<std::string>().rfind("ACP ", 0) == 0);
  };
  if (r.is_array()) {
    check(in.batch);
    check(r.size() == in.request_ids.size() || (in.request_ids.empty() && r.size() == 1));
    for (size_t i = 0; i < in.request_ids.size(); ++i) {
      check_error(r[i]);
      check(r[i]["id"] == in.request_ids[i].second);
    }
  } else {
    check_error(r);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  Inspection in = inspect(text);
  if (in.kind == Inspection::Kind::ToolCalls) {
    check(!in.calls.empty());
    for (const auto& c : in.calls) {
      check(!c.tool.empty());
      auto args = json::parse(c.args, nullptr, false);
      check(!args.is_discarded());
      check(canonical_json(args) == c.args);
    }
  } else {
    check(in.calls.empty());
  }

  size_t judged = 0;
  boost::asio::io_context io;
  JudgeFn judge = [&judged](Action a) -> boost::asio::awaitable<Judgement> {
    ++judged;
    check(a.kind == "mcp" && a.host.empty() && a.port == 0);
    const bool deny = !a.tool.empty() && (a.tool[0] & 1);
    co_return Judgement{!deny, deny ? "denied by the fuzzer" : "ok", "fz", false};
  };
  Outcome out;
  bool done = false;
  boost::asio::co_spawn(io, judge_message(in, "server", "session", judge),
                        [&](std::exception_ptr e, Outcome o) {
                          check(!e);
                          out = std::move(o);
                          done = true;
                        });
  io.run();
  check(done);
  check(out.judged == judged);
  if (in.kind == Inspection::Kind::Invalid) {
    check(judged == 0);
    check_refusal(in, out);
  } else if (in.kind == Inspection::Kind::ToolCalls) {
    bool any_denied = false;
    for (size_t i = 0; i < judged; ++i) any_denied = any_denied || (in.calls[i].tool[0] & 1);
    check(out.forward == !any_denied);
    if (out.forward) check(judged == in.calls.size());
    if (!out.forward) check_refusal(in, out);
  } else {
    check(out.forward && judged == 0);
  }

  std::string body;
  size_t consumed = 0;
  if (dechunk(text, body, consumed, 4096) == Dechunk::Complete) {
    check(consumed <= size);
    check(body.size() <= consumed);
  }
  return 0;
}
