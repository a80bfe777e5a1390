// on_scope_exit: runs once at the end of the scope however it ends, and not after release().
#include "acp/util/scope_exit.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

namespace {

using acp::util::on_scope_exit;

TEST(UtilScopeExit, RunsOnceAtTheEndOfTheScope) {
  int runs = 0;
  {
    auto g = on_scope_exit([&] { ++runs; });
    EXPECT_EQ(runs, 0);
  }
  EXPECT_EQ(runs, 1);
}

TEST(UtilScopeExit, RunsWhenAnExceptionLeavesTheScope) {
  int runs = 0;
  EXPECT_THROW(
      {
        auto g = on_scope_exit([&] { ++runs; });
        throw std::runtime_error("x");
      },
      std::runtime_error);
  EXPECT_EQ(runs, 1);
}

TEST(UtilScopeExit, ReleaseDisarmsIt) {
  int runs = 0;
  {
    auto g = on_scope_exit([&] { ++runs; });
    g.release();
  }
  EXPECT_EQ(runs, 0);
}

}  // namespace
