// Expected-style results for OS-facing code: an errno plus the context that explains it.
// Library code returns these and does not log; the caller that decides reports once.
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <variant>

namespace acp {

struct Error {
  int err = 0;          // errno value, or 0 when the failure is not an OS error
  std::string context;  // what was being done, with the value: "open /sys/fs/bpf/acp/x"

  // "open /sys/fs/bpf/acp/x: Permission denied"
  std::string message() const {
    if (err == 0) return context;
    return context + ": " + std::strerror(err);
  }
};

// Build an Error from the current errno.
inline Error errno_error(std::string context) {
  return Error{errno, std::move(context)};
}
inline Error make_error(std::string context, int err = 0) {
  return Error{err, std::move(context)};
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Error e) : v_(std::move(e)) {}      // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error e) : e_(std::move(e)), ok_(false) {}  // NOLINT(google-explicit-constructor)
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return e_; }

 private:
  Error e_;
  bool ok_ = true;
};

using Status = Result<void>;

}  // namespace acp
