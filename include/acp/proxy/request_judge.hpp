// The seam between the proxy and everything that decides: the proxy calls judge() once per
// request (every request on a kept-alive connection, every CONNECT) and obeys the answer.
#pragma once

#include <utility>  // before awaitable.hpp: Boost 1.74 uses std::exchange without it

#include <boost/asio/awaitable.hpp>

#include "acp/proxy/action.hpp"

namespace acp {

class RequestJudge {
 public:
  virtual ~RequestJudge() = default;
  // Runs on the proxy's io_context. Must never throw for a decision: any failure inside
  // (policy error, consent channel down, audit write failed) is a Judgement{allowed=false}.
  virtual boost::asio::awaitable<Judgement> judge(Action action) = 0;
};

}  // namespace acp
