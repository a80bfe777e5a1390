#include "acp/util/random_id.hpp"

#include <sys/random.h>

#include <cerrno>
#include <vector>

namespace acp::util {

Status random_bytes(std::span<unsigned char> out) {
  size_t got = 0;
  while (got < out.size()) {
    ssize_t n = ::getrandom(out.data() + got, out.size() - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      return Error{n < 0 ? errno : EIO,
                   "cannot read " + std::to_string(out.size()) +
                       " random bytes from the kernel (getrandom); no id or secret is made "
                       "without them: check that getrandom(2) is not blocked (seccomp) or "
                       "missing (kernel older than 3.17)"};
    got += static_cast<size_t>(n);
  }
  return {};
}

Result<std::string> random_hex(size_t bytes) {
  std::vector<unsigned char> b(bytes);
  if (auto st = random_bytes(b); !st) return st.error();
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * bytes);
  for (unsigned char c : b) {
    out += kDigits[c >> 4];
    out += kDigits[c & 0xf];
  }
  return out;
}

}  // namespace acp::util
