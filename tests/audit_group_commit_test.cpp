// Group commit in the audit log: entries queued while a sync is in flight share the next one,
// in queue order, with the chain intact; a failed sync refuses every waiter of its group; and a
// writer killed mid-stream loses no decision it acknowledged.
#include <utility>  // before awaitable.hpp (Boost 1.74)

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "acp/proxy/audit_log.hpp"
#include "consent_test_support.hpp"

namespace {

using acp::audit::AuditLog;
using acp::testing::read_lines;
using acp::testing::TempDir;
using nlohmann::json;

json decision(int id) {
  return {{"kind", "request"},
          {"action", {{"kind", "http"}, {"host", "127.0.0.1"}, {"port", 443}}},
          {"request_id", std::to_string(id)},
          {"verdict", "allow"},
          {"decided_by", "policy"}};
}

int id_of(const std::string& line) {
  return std::stoi(json::parse(line)["request_id"].get<std::string>());
}

// A sync that the test holds: the n-th call (1-based) waits until release() and then returns
// what `fail_errno` says (0: success). Every other call is a real fdatasync.
class HeldSync {
 public:
  HeldSync(int hold_call, int fail_errno) : hold_call_(hold_call), fail_errno_(fail_errno) {}
  std::function<int(int)> hook() {
    return [this](int fd) {
      if (++calls_ != hold_call_) return ::fdatasync(fd);
      entered_.set_value();
      released_.get_future().wait();
      if (fail_errno_ == 0) return ::fdatasync(fd);
      errno = fail_errno_;
      return -1;
    };
  }
  void wait_until_held() { entered_.get_future().wait(); }
  void release() { released_.set_value(); }

 private:
  int hold_call_;
  int fail_errno_;
  int calls_ = 0;  // only the writer thread calls the hook
  std::promise<void> entered_;
  std::promise<void> released_;
};

// Spawns one append_async per id on `io` and runs the coroutines until each has queued its
// entry and waits for it: after this, every entry is in the log's queue.
void queue_async(boost::asio::io_context& io, AuditLog& log, int first, int count,
                 std::vector<std::optional<acp::Status>>& results) {
  results.resize(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    boost::asio::co_spawn(
        io,
        [&log, &results, first, i]() -> boost::asio::awaitable<void> {
          results[static_cast<size_t>(i)] = co_await log.append_async(decision(first + i));
        },
        boost::asio::detached);
  }
  io.poll();
  io.restart();
}

TEST(AuditGroupCommit, DecisionsQueuedDuringASyncShareTheNextInQueueOrder) {
  TempDir d;
  std::string path = d / "audit.jsonl";
  auto log = AuditLog::open(path);
  ASSERT_TRUE(log.ok()) << log.error().message();
  HeldSync held(1, 0);
  (*log)->set_sync_for_testing(held.hook());

  // Decision 0 is being synced (held) while decisions 1..40 arrive.
  std::atomic<bool> first_acknowledged{false};
  std::thread first([&] {
    EXPECT_TRUE((*log)->append(decision(0)).ok());
    first_acknowledged = true;
  });
  held.wait_until_held();
  boost::asio::io_context io;
  std::vector<std::optional<acp::Status>> results;
  constexpr int kQueued = 40;
  queue_async(io, **log, 1, kQueued, results);
  EXPECT_FALSE(first_acknowledged) << "append() returned while its sync was still running";
  for (auto& r : results) EXPECT_FALSE(r.has_value()) << "acknowledged before its sync";
  held.release();
  first.join();
  io.run();

  for (auto& r : results) {
    ASSERT_TRUE(r.has_value());
    EXPECT_TRUE(r->ok()) << r->error().message();
  }
  // Two syncs for 41 records: the one held, and one shared by all 40 that waited for it.
  EXPECT_EQ((*log)->stats().records, 41u);
  EXPECT_EQ((*log)->stats().syncs, 2u);
  auto lines = read_lines(path);
  ASSERT_EQ(lines.size(), 41u);
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(id_of(lines[i]), static_cast<int>(i)) << "line " << i + 1 << " out of order";
    EXPECT_EQ(json::parse(lines[i])["seq"], i + 1);
  }
  auto r = AuditLog::verify(path);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->ok()) << "line " << r->first_broken.value_or(0) << ": " << r->reason;
  EXPECT_EQ(r->lines_ok, 41u);
}

TEST(AuditGroupCommit, ConcurrentWritersKeepEachOnesOrderAndOneChain) {
  TempDir d;
  std::string path = d / "audit.jsonl";
  auto log = AuditLog::open(path);
  ASSERT_TRUE(log.ok()) << log.error().message();
  constexpr int kThreads = 8, kEach = 50;
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t)
    writers.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) ASSERT_TRUE((*log)->append(decision(t * 1000 + i)).ok());
      (*log)->append_detached(decision(t * 1000 + kEach));
    });
  for (auto& w : writers) w.join();
  log->reset();  // the writer commits the detached entries before it stops

  auto lines = read_lines(path);
  ASSERT_EQ(lines.size(), static_cast<size_t>(kThreads * (kEach + 1)));
  std::vector<int> next(kThreads, 0);
  for (const auto& line : lines) {
    int id = id_of(line);
    EXPECT_EQ(id % 1000, next[static_cast<size_t>(id / 1000)]++) << "thread " << id / 1000;
  }
  auto r = AuditLog::verify(path);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->ok()) << "line " << r->first_broken.value_or(0) << ": " << r->reason;
}

TEST(AuditGroupCommit, AFailedSyncRefusesEveryWaiterOfItsGroupAndKeepsNothingOfIt) {
  TempDir d;
  std::string path = d / "audit.jsonl";
  auto log = AuditLog::open(path);
  ASSERT_TRUE(log.ok()) << log.error().message();
  ASSERT_TRUE((*log)->append(decision(0)).ok());
  struct stat before {};
  ASSERT_EQ(::stat(path.c_str(), &before), 0);

  // Sync 2 (decision 1) is held; decisions 2..21 queue behind it and share sync 3, which
  // fails with EIO.
  int syncs = 0;
  std::promise<void> entered, released;
  (*log)->set_sync_for_testing([&](int fd) {
    ++syncs;
    if (syncs == 1) {
      entered.set_value();
      released.get_future().wait();
      return ::fdatasync(fd);
    }
    if (syncs == 2) {
      errno = EIO;
      return -1;
    }
    return ::fdatasync(fd);
  });
  std::thread held([&] { EXPECT_TRUE((*log)->append(decision(1)).ok()); });
  entered.get_future().wait();
  struct stat with_held {};
  ASSERT_EQ(::stat(path.c_str(), &with_held), 0);
  boost::asio::io_context io;
  std::vector<std::optional<acp::Status>> results;
  queue_async(io, **log, 2, 20, results);
  released.set_value();
  held.join();
  io.run();

  for (auto& r : results) {
    ASSERT_TRUE(r.has_value());
    ASSERT_FALSE(r->ok()) << "a waiter of the failed sync was acknowledged";
    EXPECT_EQ(r->error().err, EIO);
    EXPECT_NE(r->error().message().find("fdatasync audit log " + path), std::string::npos)
        << r->error().message();
  }
  // The failed group is truncated away: the file is as the held sync left it.
  struct stat after {};
  ASSERT_EQ(::stat(path.c_str(), &after), 0);
  EXPECT_EQ(after.st_size, with_held.st_size);
  EXPECT_GT(after.st_size, before.st_size);
  auto lines = read_lines(path);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(id_of(lines[1]), 1);

  // The chain goes on from the last acknowledged line.
  ASSERT_TRUE((*log)->append(decision(99)).ok());
  auto r = AuditLog::verify(path);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->ok()) << "line " << r->first_broken.value_or(0) << ": " << r->reason;
  EXPECT_EQ(r->lines_ok, 3u);
  EXPECT_EQ(json::parse(read_lines(path)[2])["seq"], 3);
}

// The child appends decisions from 4 threads and writes each acknowledged id to the pipe
// (4 bytes: atomic on a pipe). It never returns.
[[noreturn]] void append_and_acknowledge(const std::string& path, int ack_fd) {
  auto log = AuditLog::open(path);
  if (!log.ok()) ::_exit(10);
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t)
    writers.emplace_back([&, t] {
      for (int i = 0; i < 100000; ++i) {
        int id = t * 100000 + i;
        if (!(*log)->append(decision(id)).ok()) ::_exit(11);
        if (::write(ack_fd, &id, sizeof id) != sizeof id) ::_exit(12);
      }
    });
  for (auto& w : writers) w.join();
  ::_exit(0);
}

TEST(AuditGroupCommit, EveryAcknowledgedDecisionSurvivesASigkillMidStream) {
  TempDir d;
  std::string path = d / "audit.jsonl";
  int ack[2];
  ASSERT_EQ(::pipe2(ack, O_CLOEXEC), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(ack[0]);
    append_and_acknowledge(path, ack[1]);
  }
  ::close(ack[1]);

  std::set<int> acknowledged;
  auto read_acks = [&](int timeout_ms) {
    pollfd p{ack[0], POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return false;
    int ids[256];
    ssize_t n = ::read(ack[0], ids, sizeof ids);
    if (n <= 0) return false;
    acknowledged.insert(ids, ids + n / static_cast<ssize_t>(sizeof(int)));
    return true;
  };
  // Kill it once it is well into the stream (bounded: 30 s without an ack ends the wait).
  while (acknowledged.size() < 400 && read_acks(30000)) {
  }
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  while (read_acks(0)) {  // acks written before the kill
  }
  ::close(ack[0]);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the writer ended on its own, status " << status;
  ASSERT_GE(acknowledged.size(), 400u);

  // Every complete line verifies; only an unacknowledged line cut by the kill may follow.
  auto lines = read_lines(path);
  auto r = AuditLog::verify(path);
  ASSERT_TRUE(r.ok()) << r.error().message();
  if (!r->ok()) {
    EXPECT_EQ(*r->first_broken, lines.size()) << r->reason;
    EXPECT_NE(r->reason.find("no newline"), std::string::npos) << r->reason;
    lines.pop_back();
  }
  EXPECT_EQ(r->lines_ok, lines.size());
  std::set<int> logged;
  for (const auto& line : lines) logged.insert(id_of(line));
  for (int id : acknowledged) EXPECT_TRUE(logged.count(id)) << "acknowledged " << id << " lost";
}

}  // namespace
