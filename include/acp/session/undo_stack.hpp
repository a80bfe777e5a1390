// How a session under construction is taken apart when a step fails: each step that built
// something pushes its undo; unwind() runs them newest first. An undo that fails stops the
// unwinding, so what lies under it stays (a wall under processes that could not be killed):
// fail-closed, for `acp gc --kill`. A session that was built completely dismisses its stack
// (what must outlive acp stays: pins, chains, cgroup, record) and is taken down later by
// teardown_session(), the same code `acp gc` runs.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "acp/util/result.hpp"

namespace acp {

class UndoStack {
 public:
  using Undo = std::function<Status()>;

  UndoStack() = default;
  UndoStack(const UndoStack&) = delete;
  UndoStack& operator=(const UndoStack&) = delete;
  // Unwinds what is left (a step returned early without unwind()); errors are lost there, so
  // builders call unwind() themselves.
  ~UndoStack() { (void)unwind(); }

  // `step` names what is undone, for the error ("remove the session cgroup").
  void push(std::string step, Undo undo) { undos_.push_back({std::move(step), std::move(undo)}); }

  // Runs the undos newest first. Stops at the first that fails and returns its error, with
  // the steps left standing; the stack is empty afterwards either way.
  Status unwind() {
    while (!undos_.empty()) {
      Entry e = std::move(undos_.back());
      undos_.pop_back();
      if (auto st = e.undo(); !st) {
        std::string left;
        for (auto it = undos_.rbegin(); it != undos_.rend(); ++it)
          left += (left.empty() ? "" : ", ") + it->step;
        undos_.clear();
        return make_error(e.step + ": " + st.error().message() +
                              (left.empty() ? "" : " (left standing: " + left + ")"),
                          st.error().err);
      }
    }
    return {};
  }

  // The session is complete: nothing is undone here.
  void dismiss() { undos_.clear(); }

  size_t size() const { return undos_.size(); }

 private:
  struct Entry {
    std::string step;
    Undo undo;
  };
  std::vector<Entry> undos_;
};

}  // namespace acp
