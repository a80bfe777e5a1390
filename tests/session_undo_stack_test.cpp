// The session builder's undo stack: newest first, stops at a failed undo (what lies under it
// stays up: fail-closed), and a dismissed stack undoes nothing.
#include "acp/session/undo_stack.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

TEST(UndoStack, UnwindsNewestFirst) {
  std::vector<std::string> done;
  acp::UndoStack undo;
  for (const char* step : {"record", "cgroup", "wall", "pins", "proxy"})
    undo.push(step, [&done, step] {
      done.push_back(step);
      return acp::Status{};
    });
  ASSERT_TRUE(undo.unwind().ok());
  EXPECT_EQ(done, (std::vector<std::string>{"proxy", "pins", "wall", "cgroup", "record"}));
  EXPECT_EQ(undo.size(), 0u);
}

TEST(UndoStack, AFailedUndoLeavesWhatLiesUnderItStanding) {
  std::vector<std::string> done;
  acp::UndoStack undo;
  auto ok = [&done](const char* step) {
    return [&done, step] {
      done.push_back(step);
      return acp::Status{};
    };
  };
  undo.push("remove the record", ok("record"));
  undo.push("take the wall down", ok("wall"));
  undo.push("empty the cgroup", [] { return acp::Status(acp::make_error("pid 42 survives")); });
  undo.push("stop the proxy", ok("proxy"));
  auto st = undo.unwind();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(done, (std::vector<std::string>{"proxy"}));  // the wall stays over pid 42
  const std::string msg = st.error().message();
  EXPECT_NE(msg.find("empty the cgroup: pid 42 survives"), std::string::npos) << msg;
  EXPECT_NE(msg.find("left standing: take the wall down, remove the record"), std::string::npos)
      << msg;
  // Nothing is retried by the destructor: the session is left to `acp gc --kill`.
  EXPECT_EQ(undo.size(), 0u);
}

TEST(UndoStack, DismissedStackUndoesNothingAndTheDestructorUnwindsTheRest) {
  int undone = 0;
  {
    acp::UndoStack undo;
    undo.push("a", [&undone] {
      ++undone;
      return acp::Status{};
    });
    undo.dismiss();
  }
  EXPECT_EQ(undone, 0);
  {
    acp::UndoStack undo;
    undo.push("a", [&undone] {
      ++undone;
      return acp::Status{};
    });
  }
  EXPECT_EQ(undone, 1);
}

}  // namespace
