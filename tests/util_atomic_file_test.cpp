// write_file_atomic: the new content with its mode, or on a failure the old content and no
// temporary file left beside it.
#include "acp/util/atomic_file.hpp"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <csignal>
#include <filesystem>

#include "consent_test_support.hpp"

namespace {

using acp::testing::TempDir;
using acp::util::IfExists;
using acp::util::write_file_atomic;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Every name in `dir` (the temporary files a failed write must not leave).
std::vector<std::string> names_in(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

mode_t mode_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

TEST(UtilAtomicFile, WritesAndReplacesWithTheGivenModeDespiteTheUmask) {
  TempDir d;
  const std::string p = d / "f";
  mode_t old_umask = ::umask(077);
  ASSERT_TRUE(write_file_atomic(p, "one\n", 0644).ok());
  ::umask(old_umask);
  EXPECT_EQ(slurp(p), "one\n");
  EXPECT_EQ(mode_of(p), 0644u);
  ASSERT_TRUE(write_file_atomic(p, "two\n", 0600).ok());
  EXPECT_EQ(slurp(p), "two\n");
  EXPECT_EQ(mode_of(p), 0600u);
  EXPECT_EQ(names_in(d.path()), std::vector<std::string>{"f"});
}

TEST(UtilAtomicFile, KeepRefusesAnExistingFileAndLeavesItAsItIs) {
  TempDir d;
  const std::string p = d / "token";
  ASSERT_TRUE(write_file_atomic(p, "first\n", 0600, IfExists::kKeep).ok());
  auto again = write_file_atomic(p, "second\n", 0600, IfExists::kKeep);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().err, EEXIST);
  EXPECT_NE(again.error().message().find(p + " already exists"), std::string::npos);
  EXPECT_EQ(slurp(p), "first\n");
  EXPECT_EQ(names_in(d.path()), std::vector<std::string>{"token"});
}

TEST(UtilAtomicFile, ASymlinkAtThePathIsReplacedNotFollowed) {
  TempDir d;
  ASSERT_TRUE(write_file_atomic(d / "target", "kept\n", 0644).ok());
  ASSERT_EQ(::symlink((d / "target").c_str(), (d / "link").c_str()), 0);
  ASSERT_TRUE(write_file_atomic(d / "link", "new\n", 0644).ok());
  EXPECT_EQ(slurp(d / "target"), "kept\n");
  EXPECT_EQ(slurp(d / "link"), "new\n");
  struct stat st {};
  ASSERT_EQ(::lstat((d / "link").c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
}

TEST(UtilAtomicFile, AMissingDirectoryIsNamedInTheError) {
  TempDir d;
  auto st = write_file_atomic(d / "no/such/f", "x", 0644);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().err, ENOENT);
  EXPECT_NE(st.error().message().find("in " + d / "no/such"), std::string::npos)
      << st.error().message();
}

TEST(UtilAtomicFile, AFailedRenameLeavesTheOldEntryAndNoTemporaryFile) {
  TempDir d;
  ASSERT_EQ(::mkdir((d / "busy").c_str(), 0755), 0);  // rename(2) cannot replace a directory
  ASSERT_TRUE(write_file_atomic(d / "busy/inside", "old\n", 0644).ok());
  auto st = write_file_atomic(d / "busy", "new\n", 0644);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message().find("rename"), std::string::npos) << st.error().message();
  EXPECT_EQ(slurp(d / "busy/inside"), "old\n");
  EXPECT_EQ(names_in(d.path()), std::vector<std::string>{"busy"});
}

// In a child (the limit is per process): with the file size limited to 16 bytes, a larger
// write fails with EFBIG and says which file; exits 0 when it does.
[[noreturn]] void write_past_the_file_size_limit(const std::string& path) {
  std::signal(SIGXFSZ, SIG_IGN);
  const rlimit lim{16, 16};
  if (::setrlimit(RLIMIT_FSIZE, &lim) != 0) ::_exit(10);
  auto st = write_file_atomic(path, std::string(4096, 'x'), 0644);
  if (st.ok()) ::_exit(11);
  if (st.error().err != EFBIG) ::_exit(12);
  if (st.error().message().find("write " + path + ".tmp.") == std::string::npos) ::_exit(13);
  ::_exit(0);
}

// A write that fails half way (the file size limit stands in for a full disk, for root too):
// the old content stays, the temporary file goes.
TEST(UtilAtomicFile, AFailedWriteLeavesTheOldContentAndNoTemporaryFile) {
  TempDir d;
  const std::string p = d / "record.json";
  ASSERT_TRUE(write_file_atomic(p, "old\n", 0644).ok());
  EXPECT_EXIT(write_past_the_file_size_limit(p), ::testing::ExitedWithCode(0), "");
  EXPECT_EQ(slurp(p), "old\n");
  EXPECT_EQ(names_in(d.path()), std::vector<std::string>{"record.json"});
}

TEST(UtilAtomicFile, TemporaryFilesStartWithTheDocumentedPrefix) {
  EXPECT_EQ(acp::util::atomic_write_temp_prefix("/run/acp/sessions/x.json"),
            "/run/acp/sessions/x.json.tmp.");
}

TEST(UtilAtomicFile, CreateDirectoriesMakesTheMissingOnesWithTheMode) {
  TempDir d;
  mode_t old_umask = ::umask(077);
  auto st = acp::util::create_directories(d / "a/b/c", 0755);
  ::umask(old_umask);
  ASSERT_TRUE(st.ok()) << st.error().message();
  EXPECT_EQ(mode_of(d / "a"), 0755u);
  EXPECT_EQ(mode_of(d / "a/b/c"), 0755u);
  ASSERT_EQ(::chmod((d / "a").c_str(), 0700), 0);
  ASSERT_TRUE(acp::util::create_directories(d / "a/b", 0755).ok());
  EXPECT_EQ(mode_of(d / "a"), 0700u);  // an existing directory is left as it is
  ASSERT_TRUE(write_file_atomic(d / "file", "x", 0644).ok());
  auto blocked = acp::util::create_directories(d / "file/sub", 0755);
  ASSERT_FALSE(blocked.ok());
  EXPECT_NE(blocked.error().message().find(d / "file"), std::string::npos);
}

}  // namespace
