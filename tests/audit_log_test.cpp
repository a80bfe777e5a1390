#include "acp/proxy/audit_log.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <regex>

#include "consent_test_support.hpp"

namespace {

using acp::audit::AuditLog;
using acp::testing::read_lines;
using acp::testing::TempDir;
using acp::testing::write_lines;
using nlohmann::json;

json decision(int i) {
  return {{"kind", "request"},
          {"action",
           {{"kind", "http"},
            {"host", "h" + std::to_string(i) + ".example"},
            {"port", 443},
            {"method", "CONNECT"},
            {"path", ""}}},
          {"verdict", i % 2 ? "deny" : "allow"},
          {"decided_by", "policy"}};
}

void write_entries(const std::string& path, int n) {
  auto log = AuditLog::open(path);
  ASSERT_TRUE(log.ok()) << log.error().message();
  for (int i = 0; i < n; ++i) ASSERT_TRUE((*log)->append(decision(i)).ok());
}

TEST(AuditLog, ChainOfAppendedLinesVerifies) {
  TempDir d;
  std::string path = d / "log/audit.jsonl";
  write_entries(path, 5);
  auto r = AuditLog::verify(path);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_TRUE(r->ok()) << r->reason;
  EXPECT_EQ(r->lines_ok, 5u);
  auto lines = read_lines(path);
  ASSERT_EQ(lines.size(), 5u);
  auto first = json::parse(lines[0]);
  EXPECT_EQ(first["seq"], 1);
  EXPECT_EQ(first["prev"], acp::audit::kGenesisHash);
  EXPECT_TRUE(std::regex_match(first["timestamp"].get<std::string>(),
                               std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")));
  EXPECT_EQ(json::parse(lines[1])["prev"], acp::audit::sha256_hex(lines[0]));
  EXPECT_EQ(first["action"]["host"], "h0.example");
  EXPECT_EQ(first["verdict"], "allow");
  // The directory is made 0700 and the file 0600.
  struct stat st {};
  ASSERT_EQ(::stat((d / "log").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(AuditLog, ReopeningContinuesTheChain) {
  TempDir d;
  std::string path = d / "audit.jsonl";
  write_entries(path, 3);
  write_entries(path, 2);
  auto r = AuditLog::verify(path);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->ok()) << r->reason;
  EXPECT_EQ(r->lines_ok, 5u);
  EXPECT_EQ(json::parse(read_lines(path)[4])["seq"], 5);
}

TEST(AuditLog, TwoWritersOnOneFileKeepOneChain) {
  TempDir d;
  std::string path = d / "audit.jsonl";
  auto a = AuditLog::open(path), b = AuditLog::open(path);
  ASSERT_TRUE(a.ok() && b.ok());
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE((*a)->append(decision(i)).ok());
    ASSERT_TRUE((*b)->append(decision(i)).ok());
  }
  auto r = AuditLog::verify(path);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->ok()) << "line " << r->first_broken.value_or(0) << ": " << r->reason;
  EXPECT_EQ(r->lines_ok, 8u);
}

TEST(AuditLog, AnEditedLineBreaksTheChainAtThatLine) {
  TempDir d;
  std::string path = d / "audit.jsonl";
  write_entries(path, 5);
  auto lines = read_lines(path);
  auto pos = lines[2].find("\"allow\"");
  ASSERT_NE(pos, std::string::npos);
  lines[2].replace(pos, 7, "\"deny\"");
  write_lines(path, lines);
  auto r = AuditLog::verify(path);
  ASSERT_TRUE(r.ok());
  ASSERT_FALSE(r->ok());
  EXPECT_EQ(*r->first_broken, 3u);
  EXPECT_EQ(r->lines_ok, 2u);
  EXPECT_NE(r->reason.find("hash"), std::string::npos) << r->reason;
}

// A JSON parser that stops at a NUL would verify the line's first object and never see what
// was hidden after it: the bytes on disk must be what the hash covers.
TEST(AuditLog, BytesHiddenAfterANulBreakTheChainAtThatLine) {
  TempDir d;
  std::string path = d / "audit.jsonl";
  write_entries(path, 4);
  auto lines = read_lines(path);
  lines[1] += std::string("\0", 1) + R"({"verdict":"allow","note":"not in any hash"})";
  write_lines(path, lines);
  auto r = AuditLog::verify(path);
  ASSERT_TRUE(r.ok());
  ASSERT_FALSE(r->ok());
  EXPECT_EQ(*r->first_broken, 2u) << r->reason;
  EXPECT_EQ(r->lines_ok, 1u);
}

TEST(AuditLog, AnEditWithARecomputedHashBreaksTheNextLine) {
  TempDir d;
  std::string path = d / "audit.jsonl";
  write_entries(path, 4);
  auto lines = read_lines(path);
  auto j = json::parse(lines[1]);
  j["verdict"] = "allow";
  j.erase("hash");
  j["hash"] = acp::audit::sha256_hex(j["prev"].get<std::string>() + j.dump());
  lines[1] = j.dump();
  write_lines(path, lines);
  auto r = AuditLog::verify(path);
  ASSERT_TRUE(r.ok());
  ASSERT_FALSE(r->ok());
  EXPECT_EQ(*r->first_broken, 3u) << r->reason;
}

TEST(AuditLog, ADeletedLineIsFoundWhereItWasMissing) {
  TempDir d;
  std::string path = d / "audit.jsonl";
  write_entries(path, 5);
  auto lines = read_lines(path);
  lines.erase(lines.begin() + 2);
  write_lines(path, lines);
  auto r = AuditLog::verify(path);
  ASSERT_TRUE(r.ok());
  ASSERT_FALSE(r->ok());
  EXPECT_EQ(*r->first_broken, 3u);
  EXPECT_NE(r->reason.find("removed"), std::string::npos) << r->reason;

  // The first line deleted: line 1 no longer starts the chain.
  lines = read_lines(path);
  lines.erase(lines.begin());
  write_lines(path, lines);
  r = AuditLog::verify(path);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->first_broken.value_or(0), 1u);
}

TEST(AuditLog, ReorderedLinesBreakAtTheFirstMovedLine) {
  TempDir d;
  std::string path = d / "audit.jsonl";
  write_entries(path, 5);
  auto lines = read_lines(path);
  std::swap(lines[1], lines[3]);
  write_lines(path, lines);
  auto r = AuditLog::verify(path);
  ASSERT_TRUE(r.ok());
  ASSERT_FALSE(r->ok());
  EXPECT_EQ(*r->first_broken, 2u);
}

TEST(AuditLog, OpenRefusesATamperedLastLineAndAFileOthersCanWrite) {
  TempDir d;
  std::string path = d / "audit.jsonl";
  write_entries(path, 2);
  auto lines = read_lines(path);
  lines[1][lines[1].size() - 3] ^= 1;  // flip a hex digit of the hash
  write_lines(path, lines);
  ::chmod(path.c_str(), 0600);
  auto log = AuditLog::open(path);
  ASSERT_FALSE(log.ok());
  EXPECT_NE(log.error().message().find("acp audit verify"), std::string::npos);

  std::string other = d / "other.jsonl";
  write_entries(other, 1);
  ASSERT_EQ(::chmod(other.c_str(), 0666), 0);
  log = AuditLog::open(other);
  ASSERT_FALSE(log.ok());
  EXPECT_NE(log.error().message().find("writable by group or others"), std::string::npos)
      << log.error().message();
}

TEST(AuditLog, AFullDiskFailsTheAppendAndLeavesNoHalfLine) {
  TempDir d;
  std::string path = d / "audit.jsonl";
  write_entries(path, 3);
  struct stat before {};
  ASSERT_EQ(::stat(path.c_str(), &before), 0);

  // A forked child gets a file size limit a few bytes past the end: the next line is cut
  // short by the kernel (EFBIG / short write), exactly like a disk that fills mid-line.
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    auto log = AuditLog::open(path);
    if (!log.ok()) ::_exit(10);
    rlimit rl{static_cast<rlim_t>(before.st_size + 40), static_cast<rlim_t>(before.st_size + 40)};
    if (::setrlimit(RLIMIT_FSIZE, &rl) != 0) ::_exit(11);
    json big = decision(7);
    big["reason"] = std::string(500, 'x');
    auto st = (*log)->append(big);
    if (st.ok()) ::_exit(12);
    // Then a later append still fails the same way: nothing got half-written in between.
    if ((*log)->append(big).ok()) ::_exit(13);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "child killed by signal " << WTERMSIG(status);
  ASSERT_EQ(WEXITSTATUS(status), 0);

  struct stat after {};
  ASSERT_EQ(::stat(path.c_str(), &after), 0);
  EXPECT_EQ(after.st_size, before.st_size);
  auto r = AuditLog::verify(path);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->ok()) << r->reason;
  EXPECT_EQ(r->lines_ok, 3u);
  // And the log goes on where it was.
  write_entries(path, 1);
  r = AuditLog::verify(path);
  EXPECT_TRUE(r->ok());
  EXPECT_EQ(r->lines_ok, 4u);
}

TEST(AuditLog, VerifyReportsAMissingFile) {
  TempDir d;
  auto r = AuditLog::verify(d / "nope.jsonl");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().err, ENOENT);
}

TEST(AuditLog, AgentChosenInvalidUtf8IsRecordedNotThrown) {
  TempDir d;
  std::string path = d / "audit.jsonl";
  auto log = AuditLog::open(path);
  ASSERT_TRUE(log.ok());
  json e = decision(0);
  e["action"]["path"] = std::string("/\xff\xfe\x80");
  ASSERT_TRUE((*log)->append(e).ok());
  auto r = AuditLog::verify(path);
  EXPECT_TRUE(r->ok()) << r->reason;
}

}  // namespace
