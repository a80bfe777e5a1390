// Runs a callable when the scope it guards ends, however it ends (return, co_return, an
// exception, a coroutine frame destroyed while suspended). For the one-off clean-ups of a
// connection (untrack it, cancel its timer) that no owning type already does.
#pragma once

#include <type_traits>
#include <utility>

namespace acp::util {

template <typename F>
class [[nodiscard]] ScopeExit {
 public:
  explicit ScopeExit(F f) : f_(std::move(f)) {}
  ScopeExit(const ScopeExit&) = delete;
  ScopeExit& operator=(const ScopeExit&) = delete;
  ScopeExit(ScopeExit&&) = delete;
  ScopeExit& operator=(ScopeExit&&) = delete;
  ~ScopeExit() {
    if (armed_) f_();
  }
  // The clean-up is no longer needed (the work it undoes was handed on).
  void release() { armed_ = false; }

 private:
  F f_;
  bool armed_ = true;
};

// auto untrack = on_scope_exit([&] { conns.erase(&stream); });
template <typename F>
ScopeExit<std::decay_t<F>> on_scope_exit(F&& f) {
  return ScopeExit<std::decay_t<F>>(std::forward<F>(f));
}

}  // namespace acp::util
