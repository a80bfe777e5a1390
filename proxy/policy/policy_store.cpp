// PolicyStore: the policy in force, swapped whole on SIGHUP. Decisions in flight keep the
// Policy they started with (shared_ptr), so a reload never disturbs open tunnels.
#include "acp/proxy/policy.hpp"

namespace acp::policy {

PolicyStore::PolicyStore(Policy initial, std::optional<std::string> path)
    : current_(std::make_shared<const Policy>(std::move(initial))), path_(std::move(path)) {}

std::shared_ptr<const Policy> PolicyStore::current() const {
  std::lock_guard lock(mu_);
  return current_;
}

Status PolicyStore::reload() {
  if (!path_) return {};
  auto next = Policy::load_file(*path_);  // outside the lock: readers never wait on disk
  if (!next) return next.error();
  auto fresh = std::make_shared<const Policy>(std::move(next).value());
  std::lock_guard lock(mu_);
  current_ = std::move(fresh);
  return {};
}

}  // namespace acp::policy
