// Local IPC: the AF_UNIX key the connect_unix/sendmsg_unix programs build (bpf/acp_decide.h,
// compiled for the host), the --allow-unix names that must produce the same key, and how a
// refused unix connect reads in events. No kernel needed.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstddef>
#include <cstring>
#include <string>

#include "acp/kernel/event_reader.hpp"
#include "acp/kernel/session_maps.hpp"
#include "acp_decide.h"

namespace {

using acp::kernel::parse_unix_name;
using acp::kernel::unix_name_string;

// What the hook sees for connect(fd, &sun, len): sun_path with stale bytes beyond len.
acp_unix_path key_of(const std::string& path_bytes, size_t addrlen) {
  uint8_t raw[ACP_UNIX_PATH_MAX];
  std::memset(raw, 'Z', sizeof(raw));  // garbage beyond the name must not count
  std::memcpy(raw, path_bytes.data(), std::min(path_bytes.size(), sizeof(raw)));
  acp_unix_path k;
  std::memset(&k, 0xaa, sizeof(k));
  acp_unix_key(&k, raw, static_cast<__u32>(addrlen));
  return k;
}

bool same(const acp_unix_path& a, const acp_unix_path& b) {
  return std::memcmp(&a, &b, sizeof(a)) == 0;
}

constexpr size_t kFam = offsetof(sockaddr_un, sun_path);  // 2

TEST(KernelUnix, AFilesystemPathIsKeyedUpToItsNulWhateverTheLength) {
  auto want = parse_unix_name("/run/docker.sock");
  ASSERT_TRUE(want) << want.error().message();
  const std::string p = "/run/docker.sock";
  // As SUN_LEN gives it, with the NUL, and the whole struct: one key.
  EXPECT_TRUE(same(key_of(p, kFam + p.size()), *want));
  EXPECT_TRUE(same(key_of(p + '\0', kFam + p.size() + 1), *want));
  EXPECT_TRUE(same(key_of(p + std::string(20, '\0'), sizeof(sockaddr_un)), *want));
  EXPECT_EQ(want->len, p.size());
}

TEST(KernelUnix, BytesBeyondAddrlenDoNotCount) {
  // addrlen cuts the name short: the kernel looks up "/run/dock", and so does the key.
  auto k = key_of("/run/docker.sock", kFam + 9);
  EXPECT_EQ(k.len, 9u);
  EXPECT_TRUE(same(k, *parse_unix_name("/run/dock")));
  EXPECT_FALSE(same(k, *parse_unix_name("/run/docker.sock")));
}

TEST(KernelUnix, AnAbstractNameIsExactlyAddrlenBytesNulsIncluded) {
  const std::string name = std::string("\0dbus-abc", 9);
  auto k = key_of(name, kFam + name.size());
  EXPECT_EQ(k.len, 9u);
  EXPECT_TRUE(same(k, *parse_unix_name("@dbus-abc")));
  // One more byte of addrlen (a trailing NUL) is a different abstract name to the kernel.
  auto longer = key_of(name + '\0', kFam + name.size() + 1);
  EXPECT_EQ(longer.len, 10u);
  EXPECT_FALSE(same(longer, k));
  EXPECT_TRUE(same(longer, *parse_unix_name("@dbus-abc\\0")));
}

TEST(KernelUnix, InteriorNulsAndHighBytesAreKeptWhereTheKernelKeepsThem) {
  // The key is computed without branches on the bytes (the verifier's cost): every byte value
  // counts as itself, and only a filesystem name ends at a NUL.
  const std::string abstract = std::string("\0a\0\xff\x80", 5);
  auto k = key_of(abstract, kFam + abstract.size());
  EXPECT_EQ(k.len, 5u);
  EXPECT_EQ(std::memcmp(k.path, abstract.data(), 5), 0);
  for (size_t i = 5; i < ACP_UNIX_PATH_MAX; ++i) ASSERT_EQ(k.path[i], 0) << i;
  const std::string fs = std::string("/t\xff\x80\x01\0/after", 12);
  auto f = key_of(fs, kFam + fs.size());
  EXPECT_EQ(f.len, 5u);
  EXPECT_EQ(std::memcmp(f.path, "/t\xff\x80\x01", 5), 0);
  for (size_t i = 5; i < ACP_UNIX_PATH_MAX; ++i) ASSERT_EQ(f.path[i], 0) << i;
}

TEST(KernelUnix, NoNameGivesAnEmptyKeyThatNothingMatches) {
  acp_unix_path k;
  uint8_t raw[ACP_UNIX_PATH_MAX] = {};
  EXPECT_EQ(acp_unix_key(&k, raw, 2), 0);
  EXPECT_EQ(k.len, 0u);
  EXPECT_EQ(acp_unix_key(&k, raw, 0), 0);
  EXPECT_EQ(k.len, 0u);
}

TEST(KernelUnix, AnOverlongAddrlenIsCappedAtSunPath) {
  std::string p(ACP_UNIX_PATH_MAX, 'a');
  p[0] = '/';
  auto k = key_of(p, 4096);
  EXPECT_EQ(k.len, ACP_UNIX_PATH_MAX);
}

TEST(KernelUnix, ParseRefusesWhatCouldNeverMatchOrIsAmbiguous) {
  EXPECT_FALSE(parse_unix_name(""));
  EXPECT_FALSE(parse_unix_name("docker.sock"));  // relative: the hook sees it as given
  EXPECT_FALSE(parse_unix_name("@"));
  EXPECT_FALSE(parse_unix_name("/" + std::string(ACP_UNIX_PATH_MAX, 'x')));
  EXPECT_FALSE(parse_unix_name(std::string("/a\0b", 4)));
  EXPECT_TRUE(parse_unix_name("/" + std::string(ACP_UNIX_PATH_MAX - 1, 'x')));
}

TEST(KernelUnix, NamesPrintAsTheyAreWritten) {
  for (const char* n : {"/run/user/1000/bus", "@/tmp/.X11-unix/X0", "@a\\0b"})
    EXPECT_EQ(unix_name_string(*parse_unix_name(n)), n);
}

TEST(KernelUnix, ARefusedUnixConnectNamesThePathPrefix) {
  acp_event e{};
  e.pid = 7;
  e.uid = 65534;
  std::strcpy(e.comm, "python3");
  e.hook = ACP_HOOK_CONNECT_UNIX;
  e.verdict = ACP_VERDICT_DENY;
  e.family = AF_UNIX;
  e.sock_type = SOCK_STREAM;
  const std::string path = "/var/run/docker.sock";
  std::memcpy(e.addr, path.data(), sizeof(e.addr));
  e.port = static_cast<uint16_t>(path.size());
  EXPECT_EQ(acp::kernel::describe_event(e),
            "denied connect_unix pid 7 (python3) uid 65534 -> unix:/var/run/docker....");
  auto j = acp::kernel::event_to_json(e);
  EXPECT_EQ(j["hook"], "connect_unix");
  EXPECT_EQ(j["family"], "AF_UNIX");
  EXPECT_EQ(j["path_len"], path.size());

  e.hook = ACP_HOOK_SENDMSG_UNIX;
  e.sock_type = SOCK_DGRAM;
  std::memset(e.addr, 0, sizeof(e.addr));
  std::memcpy(e.addr, "\0log", 4);
  e.port = 4;
  EXPECT_EQ(acp::kernel::describe_event(e),
            "denied sendmsg_unix pid 7 (python3) uid 65534 -> unix:@log");
}

}  // namespace
