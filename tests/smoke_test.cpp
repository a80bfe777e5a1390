#include <gtest/gtest.h>

#include "acp/util/result.hpp"

TEST(Result, CarriesErrnoAndContext) {
  acp::Result<int> r = acp::make_error("open /nonexistent", 2);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message(), "open /nonexistent: No such file or directory");
}
