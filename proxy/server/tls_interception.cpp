// TLS interception of an allowed CONNECT (docs/tls-inspection.md): the agent's side ends on a
// leaf minted for the CONNECT host, the origin's side is verified TLS, and every name the agent
// gives (SNI, Host) must be the host that was judged.
#include <utility>  // before boost/asio/awaitable.hpp (Boost 1.74)

#include <openssl/ssl.h>
#include <boost/asio/write.hpp>

#include "acp/proxy/tls_inspector.hpp"
#include "coro.hpp"
#include "proxy_connection.hpp"

namespace acp::proxy {

namespace net = boost::asio;
namespace beast = boost::beast;
using boost::system::error_code;

net::awaitable<bool> Connection::start_inspection(const RequestTarget& target,
                                                  const std::string& request_id,
                                                  RequestEvent& event,
                                                  std::string_view established) {
  auto& insp = *state_->cfg.inspect_tls;
  up_.drop();  // never reuse a plain upstream for the inspected requests
  error_code ec;
  if (!established.empty()) {
    client_.expires_after(kAnswerWriteTimeout);
    co_await net::async_write(client_, net::buffer(established), redirect(ec));
  }
  if (ec || closed_) co_return false;
  event.note("tls", "inspected");
  auto& tls = client_.start_tls(insp.client_side());
  if (auto st = insp.use_leaf(tls.native_handle(), target.host); !st) {
    event.broke(500, st.error().message());
    state_->n_errors.fetch_add(1, std::memory_order_relaxed);
    co_return false;
  }
  // The ClientHello may already sit behind the CONNECT header.
  client_.expires_after(state_->cfg.limits.header_timeout);
  co_await tls.async_handshake(net::ssl::stream_base::server, buffer_.data(), redirect(ec));
  buffer_.consume(buffer_.size());
  if (ec || closed_) {
    // Typically the agent does not trust the ACP CA, or pins the certificate.
    event.broke(0, "TLS handshake with the agent failed: " + ec.message());
    state_->n_errors.fetch_add(1, std::memory_order_relaxed);
    state_->audit({{"kind", "tls"},
                   {"event", "agent_handshake_failed"},
                   {"request_id", request_id},
                   {"host", target.host},
                   {"port", target.port},
                   {"reason", ec.message()}});
    co_return false;
  }
  inspected_ = target;
  state_->n_tunnels.fetch_add(1, std::memory_order_relaxed);
  event.answered(200);
  // SNI is optional (clients leave it out for IP literals), but when given it must be the
  // host the CONNECT was judged for. The refusal is an inner request's: its own event.
  if (const char* sni = SSL_get_servername(tls.native_handle(), TLSEXT_NAMETYPE_host_name)) {
    if (normalize_host(sni) != target.host) {
      RequestEvent inner(++state_->next_request, peer_);
      inner.note("tls", "inspected");
      inner.target(target);
      co_await refuse(inner, name_mismatch("the TLS SNI (" + std::string(sni) +
                                               ") does not name the CONNECT host " + target.host,
                                           request_id));
      state_->finish(inner);
      co_return false;
    }
  }
  co_return true;
}

Refusal Connection::name_mismatch(std::string reason, const std::string& request_id) const {
  Refusal r{403, "Blocked by ACP", std::move(reason), request_id};
  r.audit = {{"kind", plain_tunnel_ ? "http" : "tls"},
             {"event", "name_mismatch"},
             {"request_id", request_id},
             {"host", inspected_ ? inspected_->host : std::string()},
             {"port", inspected_ ? inspected_->port : 0},
             {"allowed", false}};
  return r;
}

net::awaitable<std::optional<Refusal>> Connection::upstream_tls(const RequestTarget& target,
                                                                const std::string& request_id) {
  auto& insp = *state_->cfg.inspect_tls;
  auto& up = up_.stream();
  auto& tls = up.start_tls(insp.upstream_side());
  const std::string where = target.host + ":" + std::to_string(target.port);
  std::optional<Refusal> refusal;
  error_code ec;
  if (auto st = TlsInspector::expect_upstream(tls.native_handle(), target.host); !st) {
    refusal = Refusal{502, "Upstream TLS failed", where + ": " + st.error().message()};
  } else {
    up.expires_after(state_->cfg.limits.connect_timeout);
    co_await tls.async_handshake(net::ssl::stream_base::client, redirect(ec));
    up.expires_never();
    if (!ec) co_return std::nullopt;
    if (auto why = TlsInspector::verify_failure(tls.native_handle()); !why.empty())
      refusal = Refusal{502, "Upstream certificate refused",
                        where + ": the origin's certificate does not verify: " + why};
    else if (ec == beast::error::timeout)
      refusal = Refusal{504, "Upstream connect timeout", where + ": the TLS handshake timed out"};
    else
      refusal = Refusal{502, "Upstream TLS failed", where + ": " + ec.message()};
  }
  refusal->request_id = request_id;
  refusal->audit = {{"kind", "tls"},
                    {"event", "upstream_refused"},
                    {"request_id", request_id},
                    {"host", target.host},
                    {"port", target.port}};
  co_return refusal;
}

}  // namespace acp::proxy
