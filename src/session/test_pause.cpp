#include "acp/session/test_pause.hpp"

#include <signal.h>

#include <cstdlib>
#include <cstring>

namespace acp {

void test_pause_point(const char* stage) {
  const char* guard = std::getenv("ACP_TEST_HOOKS");
  const char* at = std::getenv("ACP_TEST_PAUSE_AT");
  if (!guard || std::strcmp(guard, "1") != 0 || !at || std::strcmp(at, stage) != 0) return;
  ::raise(SIGSTOP);
}

}  // namespace acp
