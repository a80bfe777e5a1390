#include "libbpf_log.hpp"

#include <bpf/libbpf.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace acp::kernel::detail {
namespace {

int print_to_stderr(enum libbpf_print_level level, const char* fmt, va_list args) {
  return std::vfprintf(stderr, fmt, args);
}

int drop(enum libbpf_print_level, const char*, va_list) {
  return 0;
}

}  // namespace

void quiet_libbpf_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    const char* dbg = std::getenv("ACP_DEBUG");
    libbpf_set_print(dbg && *dbg && *dbg != '0' ? print_to_stderr : drop);
  });
}

}  // namespace acp::kernel::detail
