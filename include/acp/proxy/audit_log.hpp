// The audit log: one JSON line per decision (and per kernel event), SHA-256 hash-chained, each
// line on disk (fdatasync) before append() returns, so a verdict never acts before its record.
//
// Line format (keys sorted, no whitespace; see docs/consent.md):
//   {"action":{...},"decided_by":"policy","hash":"<hex>","prev":"<hex>","seq":7,
//    "timestamp":"2024-05-01T12:34:56.789Z","verdict":"allow",...}
// prev = SHA-256 of the previous line's bytes (64 zeros for the first line);
// hash = SHA-256 of prev + the canonical JSON of the entry without "hash".
#pragma once

#include <sys/types.h>

#include <utility>  // before awaitable.hpp (Boost 1.74)

#include <boost/asio/awaitable.hpp>
#include <boost/asio/thread_pool.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

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
  // writes it as one line with a single write(), then fdatasync()s. On any failure (ENOSPC,
  // EIO, EFBIG with SIGXFSZ ignored, a short write) the file is truncated back to where it
  // was, so it never holds half a line, and the error is returned: the caller must fail closed.
  // Safe against other processes appending to the same file (flock; the chain is re-read
  // from the file's last line when someone else wrote since).
  Status append(nlohmann::json entry);

  // append() on the log's own writer thread: the calling coroutine resumes (on its own
  // executor) once the line is on disk, and its io_context goes on serving every other
  // connection and tunnel meanwhile instead of waiting for fdatasync.
  boost::asio::awaitable<Status> append_async(nlohmann::json entry);
  // append() on the writer thread without waiting (kernel events); `on_error`, if given, is
  // called on the writer thread when the append fails.
  void append_detached(nlohmann::json entry, std::function<void(const Error&)> on_error = nullptr);

  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Checks the whole chain of a file: every line parses, seq counts up from 1, prev is the
  // SHA-256 of the line before it, hash matches the content. Error only if the file cannot
  // be read; a broken chain is a report with first_broken set.
  static Result<VerifyReport> verify(const std::string& path = kDefaultAuditPath);

  const std::string& path() const { return path_; }
  uint64_t last_seq() const { return seq_; }

 private:
  AuditLog(std::string path, UniqueFd fd) : path_(std::move(path)), fd_(std::move(fd)) {}
  Status resume();  // reads the file's last line and continues the chain from it

  std::string path_;
  UniqueFd fd_;
  uint64_t seq_ = 0;
  std::string prev_ = kGenesisHash;  // SHA-256 of the last line
  off_t size_ = 0;                   // file size after our last append (or resume)
  std::mutex mu_;                    // one append at a time: the writer thread and direct callers
  boost::asio::thread_pool writer_{1};  // FIFO: entries reach the file in the order queued
};

// Hex SHA-256 (OpenSSL EVP).
std::string sha256_hex(const std::string& data);
// "2024-05-01T12:34:56.789Z", like JavaScript's Date.toISOString() (upstream's timestamps).
std::string iso8601_now();

}  // namespace acp::audit
