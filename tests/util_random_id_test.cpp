// random_hex: the length and alphabet callers check ids against, no repeats, and no id at all
// when the kernel's generator fails (getrandom blocked by a seccomp filter in a child).
#include "acp/util/random_id.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <set>

#include "getrandom_failure_support.hpp"

namespace {

using acp::util::random_hex;

TEST(UtilRandomId, HexOfTwiceTheByteCountInLowercase) {
  for (size_t n : {1u, 4u, 6u, 32u}) {
    auto id = random_hex(n);
    ASSERT_TRUE(id.ok()) << id.error().message();
    EXPECT_EQ(id->size(), 2 * n);
    EXPECT_EQ(id->find_first_not_of("0123456789abcdef"), std::string::npos) << *id;
  }
}

TEST(UtilRandomId, NoRepeatsAndEveryDigitAppears) {
  std::set<std::string> seen;
  std::set<char> digits;
  for (int i = 0; i < 2000; ++i) {
    auto id = random_hex(6);
    ASSERT_TRUE(id.ok());
    EXPECT_TRUE(seen.insert(*id).second) << "repeated id " << *id;
    digits.insert(id->begin(), id->end());
  }
  EXPECT_EQ(digits.size(), 16u);  // a stuck nibble or a constant byte shows here
}

// In a child: with getrandom blocked, random_hex gives an error naming it; exits 0 when so.
[[noreturn]] void make_an_id_without_getrandom() {
  if (!acp::testing::block_getrandom()) ::_exit(10);
  auto id = random_hex(6);
  if (id.ok()) ::_exit(11);  // an id made without randomness
  if (id.error().err != ENOSYS) ::_exit(12);
  if (id.error().message().find("getrandom") == std::string::npos) ::_exit(13);
  ::_exit(0);
}

TEST(UtilRandomId, FailsClosedWhenTheKernelGeneratorFails) {
  EXPECT_EXIT(make_an_id_without_getrandom(), ::testing::ExitedWithCode(0), "");
}

}  // namespace
