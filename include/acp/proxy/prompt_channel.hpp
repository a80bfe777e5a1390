// The prompt consent channel: asks on the operator's terminal (/dev/tty, opened by acp,
// read without blocking through an asio stream_descriptor), one request at a time, with a
// countdown:
//   [acp] agent `curl …` wants CONNECT example.com:443 (rule {…}).
//         Allow? [y]es once / [t]en minutes / [s]ession / [n]o (57s)
// Answers are lines (y, t, s, n + Enter). Answer::by is "prompt".
//
// The agent must not own that terminal: whoever holds it can read the operator's answer or
// type one. As upstream refused `--interactive` with a terminal channel ("both the agent and
// ACP cannot share stdin"), start() refuses when any of the agent's stdio fds (acp's own 0, 1
// and 2, which the agent inherits) is that terminal, and says what to do instead. See
// docs/consent.md, "Prompt" (and its limits).
#pragma once

#include <utility>  // before boost/asio (Boost 1.74)

#include <boost/asio/io_context.hpp>
#include <memory>
#include <string>
#include <vector>

#include "acp/proxy/channel.hpp"
#include "acp/proxy/channels.hpp"
#include "acp/proxy/consent_gate.hpp"
#include "acp/util/result.hpp"

namespace acp::consent {

struct PromptSettings {
  std::string tty_path = "/dev/tty";
  std::vector<int> agent_fds = {0, 1, 2};  // the fds the agent will inherit
  ChannelContext ctx;
};

class PromptChannel final : public Channel {
 public:
  PromptChannel(boost::asio::io_context& io, ConsentGate& gate, PromptSettings s);
  ~PromptChannel() override;

  std::string name() const override { return "prompt"; }
  Status start() override;
  void stop() override;
  std::string describe() const override;
  void on_request(const PendingInfo& p) override;
  void on_resolved(const PendingInfo& p, const ConsentOutcome& o) override;

  struct State;

 private:
  std::shared_ptr<State> s_;
};

}  // namespace acp::consent
