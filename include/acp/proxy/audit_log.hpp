// The audit log: one JSON line per decision (and per kernel event), SHA-256 hash-chained, each
// line on disk (fdatasync) before append() returns, so a verdict never acts before its record.
// Group commit: one writer thread takes every entry queued while its previous sync was in
// flight, chains them in queue order, writes them with one write() and one fdatasync(), and
// only then completes each waiter; when that write or sync fails, every waiter of the group
// gets the error and the file is truncated back to before the group.
//
// Line format (keys sorted, no whitespace; see docs/consent.md):
//   {"action":{...},"decided_by":"policy","hash":"<hex>","prev":"<hex>","seq":7,
//    "timestamp":"2024-05-01T12:34:56.789Z","verdict":"allow",...}
// prev = SHA-256 of the previous line's bytes (64 zeros for the first line);
// hash = SHA-256 of prev + the canonical JSON of the entry without "hash".
#pragma once

#include <sys/types.h>

#include <utility>  // before awaitable.hpp (Boost 1.74)

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>

#include "acp/util/histogram.hpp"
#include "acp/util/result.hpp"
#include "acp/util/unique_fd.hpp"

namespace acp::audit {

inline constexpr const char* kDefaultAuditPath = "/var/log/acp/audit.jsonl";
inline constexpr const char* kGenesisHash =
    "0000000000000000000000000000000000000000000000000000000000000000";

struct VerifyReport {
  uint64_t lines_ok = 0;                 // lines that verified, before the first broken one
  std::optional<uint64_t> first_broken;  // 1-based line number of the first broken line
  std::string reason;                    // why that line is broken
  bool ok() const { return !first_broken; }
};

class AuditLog {
 public:
  // Opens (creating when missing) the log. A missing directory is created 0700; a new file is
  // 0600. Refuses a file or directory that others (group/other, or another owner) can write,
  // and anything but a regular file. An existing file's last line is verified and the chain
  // continues from it; a broken last line is an error (run `acp audit verify`).
  static Result<std::unique_ptr<AuditLog>> open(const std::string& path = kDefaultAuditPath);

  // Adds "timestamp" (ISO-8601 UTC, ms), "seq", "prev" and "hash" to `entry` (an object) and
  // returns once its line is on disk (written, then fdatasync()ed, together with every other
  // entry queued meanwhile). On any failure (ENOSPC, EIO, EFBIG with SIGXFSZ ignored, a short
  // write, a failed sync) the file is truncated back to where it was before the group, so it
  // never holds half a line, and the error is returned: the caller must fail closed.
  // Safe against other processes appending to the same file (flock; the chain is re-read
  // from the file's last line when someone else wrote since). Blocks the calling thread;
  // never call it from a completion callback (they run on the writer thread).
  Status append(nlohmann::json entry);

  // append() without blocking the thread: the calling coroutine resumes (on its own
  // executor) once the line is on disk, and its io_context goes on serving every other
  // connection and tunnel meanwhile instead of waiting for fdatasync.
  boost::asio::awaitable<Status> append_async(nlohmann::json entry);
  // append() without waiting (kernel events); `on_error`, if given, is called on the writer
  // thread when the append fails.
  void append_detached(nlohmann::json entry, std::function<void(const Error&)> on_error = nullptr);

  // Lines written and fdatasync() calls made by this AuditLog since it was opened: with group
  // commit, syncs <= records; entries whose group failed (the caller failed closed); how long
  // each group's write() and fdatasync() took. Safe from any thread.
  struct Stats {
    uint64_t records = 0;
    uint64_t syncs = 0;
    uint64_t failed = 0;
    util::HistogramSnapshot sync_seconds;
    Stats& operator+=(const Stats& o);
  };
  Stats stats() const {
    return {records_.load(), syncs_.load(), failed_.load(), sync_seconds_.snapshot()};
  }

  // Tests only: replaces fdatasync(fd) (returns 0, or -1 with errno set) to count, hold or
  // fail a sync. Set it before the first append.
  void set_sync_for_testing(std::function<int(int fd)> sync) { sync_ = std::move(sync); }

  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Checks the whole chain of a file: every line parses, seq counts up from 1, prev is the
  // SHA-256 of the line before it, hash matches the content. Error only if the file cannot
  // be read; a broken chain is a report with first_broken set.
  static Result<VerifyReport> verify(const std::string& path = kDefaultAuditPath);

  const std::string& path() const { return path_; }
  uint64_t last_seq() const {
    std::lock_guard<std::mutex> guard(mu_);
    return seq_;
  }

 private:
  using Done = std::function<void(Status)>;
  struct Pending {
    nlohmann::json entry;
    Done done;  // called on the writer thread once the entry's group is on disk, or failed
  };

  AuditLog(std::string path, UniqueFd fd);
  Status resume();  // reads the file's last line and continues the chain from it
  void enqueue(nlohmann::json entry, Done done);
  void run_writer();
  Status commit(std::deque<Pending>& group);  // chains, writes and syncs one group

  std::string path_;
  UniqueFd fd_;
  uint64_t seq_ = 0;
  std::string prev_ = kGenesisHash;  // SHA-256 of the last line
  off_t size_ = 0;                   // file size after our last append (or resume)
  mutable std::mutex mu_;            // the chain state above, held by the writer while it commits
  std::function<int(int)> sync_;     // fdatasync unless a test replaced it
  std::atomic<uint64_t> records_{0};
  std::atomic<uint64_t> syncs_{0};
  std::atomic<uint64_t> failed_{0};
  util::Histogram sync_seconds_;

  std::mutex queue_mu_;  // guards queue_ and stopping_
  std::condition_variable queue_cv_;
  std::deque<Pending> queue_;  // FIFO: entries reach the chain in the order queued
  bool stopping_ = false;
  std::thread writer_;  // last member: started once everything above exists
};

// Hex SHA-256 (OpenSSL EVP).
std::string sha256_hex(const std::string& data);
// "2024-05-01T12:34:56.789Z", like JavaScript's Date.toISOString() (upstream's timestamps).
std::string iso8601_now();

}  // namespace acp::audit
