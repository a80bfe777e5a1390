// Builds the consent channels a config asks for (acp/proxy/acp_config.hpp). Each channel is
// implemented in proxy/consent/channels/; this is the one place that knows them all.
#pragma once

#include <utility>  // before boost/asio (Boost 1.74)

#include <boost/asio/io_context.hpp>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "acp/proxy/acp_config.hpp"
#include "acp/proxy/channel.hpp"
#include "acp/proxy/consent_gate.hpp"
#include "acp/util/result.hpp"

namespace acp::consent {

// What a channel may show about the session it serves.
struct ChannelContext {
  std::string session_id;
  std::string agent_command;  // the agent's argv, joined for display
  std::string audit_path;     // the session's audit log (recent entries for pages)
  std::string proxy_url;
  // A snapshot of the session for pages ({"session":..., "counters":{...}}); may be empty.
  std::function<nlohmann::json()> session_status;
};

// The enabled channels of `cfg`, not yet started. Errors: a channel that is enabled but cannot
// be built (a missing secret file, a bad url): the session must not start without its human.
Result<std::vector<std::unique_ptr<Channel>>> make_channels(boost::asio::io_context& io,
                                                            ConsentGate& gate,
                                                            const config::Config& cfg,
                                                            const ChannelContext& ctx);

}  // namespace acp::consent
