#include "acp/proxy/audit_log.hpp"
#include "acp/util/json_text.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>

namespace acp::audit {
namespace {

constexpr size_t kMaxLine = 1 << 20;  // a line longer than this is not one of ours
constexpr size_t kMaxGroup = 256;     // entries per group commit (one write, one fdatasync)

std::string dump_canonical(const nlohmann::json& j) {
  // nlohmann objects are std::map: keys come out sorted. Invalid UTF-8 (host names and paths
  // are the agent's to choose) is replaced, never thrown on.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string entry_hash(const nlohmann::json& entry_without_hash, const std::string& prev) {
  return sha256_hex(prev + dump_canonical(entry_without_hash));
}

// Checks one line on its own: JSON object, seq, prev, hash well-formed and the hash right.
// On success stores seq and prev.
std::optional<std::string> check_line(const std::string& line, uint64_t& seq, std::string& prev) {
  auto j = acp::util::parse_json(line);
  if (j.is_discarded() || !j.is_object()) return "not a JSON object";
  auto h = j.find("hash"), p = j.find("prev"), s = j.find("seq");
  if (h == j.end() || !h->is_string()) return "no \"hash\"";
  if (p == j.end() || !p->is_string()) return "no \"prev\"";
  if (s == j.end() || !s->is_number_unsigned()) return "no \"seq\"";
  std::string hash = *h;
  seq = *s;
  prev = *p;
  j.erase("hash");
  if (entry_hash(j, prev) != hash) return "hash does not match the content (line edited)";
  return std::nullopt;
}

Status check_owner_and_mode(const struct stat& st, const std::string& what, bool dir) {
  uid_t me = geteuid();
  if (st.st_uid != me && st.st_uid != 0)
    return make_error(what + " is owned by uid " + std::to_string(st.st_uid) +
                      ", not by root: refusing it (chown root " + what + ")");
  bool sticky = dir && (st.st_mode & S_ISVTX);
  if ((st.st_mode & 022) && !sticky)
    return make_error(what + " is writable by group or others (mode " +
                      [&] {
                        char b[8];
                        std::snprintf(b, sizeof b, "%04o", st.st_mode & 07777);
                        return std::string(b);
                      }() +
                      "): refusing it (chmod go-w " + what + ")");
  return {};
}

class FileLock {
 public:
  explicit FileLock(int fd) : fd_(fd) { ok_ = ::flock(fd_, LOCK_EX) == 0; }
  ~FileLock() {
    if (ok_) ::flock(fd_, LOCK_UN);
  }
  bool ok() const { return ok_; }

 private:
  int fd_;
  bool ok_;
};

}  // namespace

std::string sha256_hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static const char* hex = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned i = 0; i < len; ++i) {
    out.push_back(hex[md[i] >> 4]);
    out.push_back(hex[md[i] & 15]);
  }
  return out;
}

std::string iso8601_now() {
  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  struct tm tm {};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

Result<std::unique_ptr<AuditLog>> AuditLog::open(const std::string& path) {
  namespace fs = std::filesystem;
  fs::path p(path);
  fs::path dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
  struct stat dst {};
  if (::stat(dir.c_str(), &dst) != 0) {
    if (errno != ENOENT) return errno_error("audit log directory " + dir.string());
    std::error_code ec;
    fs::create_directories(dir.parent_path(), ec);
    if (ec) return make_error("create " + dir.parent_path().string(), ec.value());
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
      return errno_error("create audit log directory " + dir.string());
    if (::stat(dir.c_str(), &dst) != 0) return errno_error("audit log directory " + dir.string());
  }
  if (!S_ISDIR(dst.st_mode)) return make_error(dir.string() + " is not a directory");
  if (auto st = check_owner_and_mode(dst, "audit log directory " + dir.string(), true); !st)
    return st.error();

  int fd = ::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return errno_error("open audit log " + path);
  UniqueFd ufd(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno_error("stat audit log " + path);
  if (!S_ISREG(st.st_mode)) return make_error("audit log " + path + " is not a regular file");
  if (auto s = check_owner_and_mode(st, "audit log " + path, false); !s) return s.error();

  std::unique_ptr<AuditLog> log(new AuditLog(path, std::move(ufd)));
  FileLock lock(log->fd_.get());
  if (!lock.ok()) return errno_error("lock audit log " + path);
  if (auto s = log->resume(); !s) return s.error();
  return log;
}

Status AuditLog::resume() {
  struct stat st {};
  if (::fstat(fd_.get(), &st) != 0) return errno_error("stat audit log " + path_);
  off_t size = st.st_size;
  if (size == 0) {
    seq_ = 0;
    prev_ = kGenesisHash;
    size_ = 0;
    return {};
  }
  char last = 0;
  if (::pread(fd_.get(), &last, 1, size - 1) != 1) return errno_error("read audit log " + path_);
  if (last != '\n')
    return make_error("audit log " + path_ + " ends in a partial line: run `acp audit verify " +
                      path_ + "` and move the file away to start a new chain");
  // Scan back for the newline before the last line.
  off_t end = size - 1;  // position of the final '\n'
  off_t start = 0;
  char buf[4096];
  for (off_t pos = end; pos > 0;) {
    off_t chunk = std::min<off_t>(sizeof buf, pos);
    pos -= chunk;
    ssize_t n = ::pread(fd_.get(), buf, chunk, pos);
    if (n != chunk) return errno_error("read audit log " + path_);
    bool found = false;
    for (off_t i = chunk - 1; i >= 0; --i) {
      if (buf[i] == '\n') {
        start = pos + i + 1;
        found = true;
        break;
      }
    }
    if (found) break;
    if (end - pos > static_cast<off_t>(kMaxLine))
      return make_error("audit log " + path_ + ": last line longer than 1 MiB");
  }
  std::string line(static_cast<size_t>(end - start), '\0');
  if (::pread(fd_.get(), line.data(), line.size(), start) != static_cast<ssize_t>(line.size()))
    return errno_error("read audit log " + path_);
  uint64_t seq = 0;
  std::string prev;
  if (auto why = check_line(line, seq, prev))
    return make_error("audit log " + path_ + ": last line does not verify (" + *why +
                      "): run `acp audit verify " + path_ +
                      "` and move the file away to start a new chain");
  seq_ = seq;
  prev_ = sha256_hex(line);
  size_ = size;
  return {};
}

AuditLog::AuditLog(std::string path, UniqueFd fd)
    : path_(std::move(path)), fd_(std::move(fd)), sync_([](int f) { return ::fdatasync(f); }) {
  writer_ = std::thread([this] { run_writer(); });
}

AuditLog::~AuditLog() {
  {
    std::lock_guard<std::mutex> guard(queue_mu_);
    stopping_ = true;
  }
  queue_cv_.notify_one();
  writer_.join();  // the writer commits whatever is still queued first
}

void AuditLog::enqueue(nlohmann::json entry, Done done) {
  if (!entry.is_object()) {
    done(make_error("audit entry is not a JSON object"));
    return;
  }
  {
    std::lock_guard<std::mutex> guard(queue_mu_);
    queue_.push_back({std::move(entry), std::move(done)});
  }
  queue_cv_.notify_one();
}

void AuditLog::run_writer() {
  for (;;) {
    std::deque<Pending> group;
    {
      std::unique_lock<std::mutex> lock(queue_mu_);
      queue_cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and nothing left to write
      // Everything that arrived while the previous group was syncing shares this sync, up to
      // a bound that keeps one write() and its latency small.
      size_t n = std::min(queue_.size(), kMaxGroup);
      group.insert(group.end(), std::make_move_iterator(queue_.begin()),
                   std::make_move_iterator(queue_.begin() + static_cast<std::ptrdiff_t>(n)));
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
    }
    Status st = make_error("audit log " + path_ + ": commit threw");
    try {
      st = commit(group);
    } catch (const std::exception& e) {
      // Out of memory: the group fails closed like a failed write, and the writer goes on.
      st = make_error("audit log " + path_ + ": " + e.what());
    }
    if (!st) failed_.fetch_add(group.size());
    for (auto& p : group) {
      try {
        p.done(st);
      } catch (...) {
        // A waiter's callback must not stop the writer: the other waiters still need theirs.
      }
    }
  }
}

AuditLog::Stats& AuditLog::Stats::operator+=(const Stats& o) {
  records += o.records;
  syncs += o.syncs;
  failed += o.failed;
  sync_seconds += o.sync_seconds;
  return *this;
}

Status AuditLog::append(nlohmann::json entry) {
  // The callback owns the promise: the writer may still be inside set_value() when get()
  // returns here.
  auto on_disk = std::make_shared<std::promise<Status>>();
  auto result = on_disk->get_future();
  enqueue(std::move(entry), [on_disk](Status st) { on_disk->set_value(std::move(st)); });
  return result.get();
}

boost::asio::awaitable<Status> AuditLog::append_async(nlohmann::json entry) {
  // The writer thread completes the entry, then wakes the caller on the caller's own executor
  // by moving a timer's expiry to the past there (whether or not the wait has started yet):
  // the coroutine never runs on the writer thread.
  struct Op {
    explicit Op(const boost::asio::any_io_executor& ex) : done(ex) {
      done.expires_at(boost::asio::steady_timer::time_point::max());
    }
    Status result;
    boost::asio::steady_timer done;
  };
  auto ex = co_await boost::asio::this_coro::executor;
  auto op = std::make_shared<Op>(ex);
  enqueue(std::move(entry), [op, ex](Status st) {
    op->result = std::move(st);
    boost::asio::post(ex,
                      [op] { op->done.expires_at(boost::asio::steady_timer::time_point::min()); });
  });
  boost::system::error_code ec;
  co_await op->done.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
  co_return op->result;
}

void AuditLog::append_detached(nlohmann::json entry, std::function<void(const Error&)> on_error) {
  enqueue(std::move(entry), [cb = std::move(on_error)](Status st) {
    if (!st && cb) cb(st.error());
  });
}

Status AuditLog::commit(std::deque<Pending>& group) {
  std::lock_guard<std::mutex> guard(mu_);
  FileLock lock(fd_.get());
  if (!lock.ok()) return errno_error("lock audit log " + path_);
  struct stat st {};
  if (::fstat(fd_.get(), &st) != 0) return errno_error("stat audit log " + path_);
  if (st.st_size != size_) {
    // Another process (another session) appended since: continue from its last line.
    if (auto s = resume(); !s) return s;
  }
  // Chain the group in queue order; seq_ and prev_ move only once it is all on disk.
  uint64_t seq = seq_;
  std::string prev = prev_;
  std::string out;
  for (auto& p : group) {
    nlohmann::json& entry = p.entry;
    entry.erase("hash");
    entry["timestamp"] = iso8601_now();
    entry["seq"] = ++seq;
    entry["prev"] = prev;
    entry["hash"] = entry_hash(entry, prev);
    std::string line = dump_canonical(entry);
    prev = sha256_hex(line);
    out += line;
    out += '\n';
  }

  const std::string of_group =
      group.size() > 1 ? " (group of " + std::to_string(group.size()) + " entries)" : "";
  auto roll_back = [&](Error e) -> Status {
    e.context += of_group;
    if (::ftruncate(fd_.get(), size_) != 0)
      e.context += " (and truncating back to " + std::to_string(size_) +
                   " bytes failed: " + std::strerror(errno) + ")";
    return e;
  };
  const auto write_start = std::chrono::steady_clock::now();
  ssize_t n = ::write(fd_.get(), out.data(), out.size());
  if (n < 0) return roll_back(errno_error("write audit log " + path_));
  if (static_cast<size_t>(n) != out.size())
    // A short write: the file size limit or the disk ran out within the group.
    return roll_back(make_error("write audit log " + path_ + ": short write (" + std::to_string(n) +
                                    " of " + std::to_string(out.size()) + " bytes)",
                                ENOSPC));
  syncs_.fetch_add(1);
  const int synced = sync_(fd_.get());
  sync_seconds_.observe(std::chrono::steady_clock::now() - write_start);
  if (synced != 0) return roll_back(errno_error("fdatasync audit log " + path_));
  seq_ = seq;
  prev_ = std::move(prev);
  size_ += static_cast<off_t>(out.size());
  records_.fetch_add(group.size());
  return {};
}

Result<VerifyReport> AuditLog::verify(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return errno_error("open audit log " + path);
  VerifyReport r;
  std::string line;
  std::string expected_prev = kGenesisHash;
  uint64_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    auto broken = [&](std::string why) {
      r.first_broken = lineno;
      r.reason = std::move(why);
      return r;
    };
    if (in.eof()) return broken("no newline at the end (a partial write)");
    if (line.empty()) return broken("empty line");
    uint64_t seq = 0;
    std::string prev;
    if (auto why = check_line(line, seq, prev)) return broken(*why);
    if (prev != expected_prev)
      return broken(lineno == 1 ? "prev is not the genesis hash (lines missing before it)"
                                : "prev is not the hash of line " + std::to_string(lineno - 1) +
                                      " (a line was removed, inserted or reordered)");
    if (seq != lineno)
      return broken("seq is " + std::to_string(seq) + ", expected " + std::to_string(lineno));
    expected_prev = sha256_hex(line);
    ++r.lines_ok;
  }
  if (in.bad()) return errno_error("read audit log " + path);
  return r;
}

}  // namespace acp::audit
