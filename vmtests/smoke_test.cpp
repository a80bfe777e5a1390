#include <gtest/gtest.h>
#include <unistd.h>
TEST(VmSmoke, RunsAsRootOrSkips) {
  if (geteuid() != 0) GTEST_SKIP() << "vmtests need root";
  SUCCEED();
}
