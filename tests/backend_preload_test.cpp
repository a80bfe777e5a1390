// The preload backend's wiring: where the library is found, and what the agent's environment
// says it may reach.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "acp/backend/preload.hpp"
#include "acp/launch/agent_env.hpp"

namespace {

namespace fs = std::filesystem;

class PreloadLookup : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/acp-preload-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    fs::create_directories(root_ + "/sbin");
    fs::create_directories(root_ + "/lib/acp");
    fs::create_directories(root_ + "/preload");
  }
  void TearDown() override { fs::remove_all(root_); }
  void touch(const std::string& rel) { std::ofstream(root_ + "/" + rel) << "x"; }
  std::string root_;
};

TEST_F(PreloadLookup, InstalledLibraryNextToTheBinaryWins) {
  touch("lib/acp/libacp_preload.so");
  touch("preload/libacp_preload.so");
  auto lib = acp::backend::find_preload_library(root_ + "/sbin", std::nullopt);
  ASSERT_TRUE(lib.ok()) << lib.error().message();
  EXPECT_EQ(*lib, root_ + "/lib/acp/libacp_preload.so");
}

TEST_F(PreloadLookup, BuildTreeLibraryIsFoundToo) {
  touch("preload/libacp_preload.so");
  auto lib = acp::backend::find_preload_library(root_ + "/sbin", std::nullopt);
  ASSERT_TRUE(lib.ok()) << lib.error().message();
  EXPECT_EQ(*lib, root_ + "/preload/libacp_preload.so");
}

TEST_F(PreloadLookup, EnvironmentOverrideIsTakenAndMustExist) {
  touch("lib/acp/libacp_preload.so");
  touch("custom.so");
  auto lib = acp::backend::find_preload_library(root_ + "/sbin", root_ + "/custom.so");
  ASSERT_TRUE(lib.ok());
  EXPECT_EQ(*lib, root_ + "/custom.so");
  auto missing = acp::backend::find_preload_library(root_ + "/sbin", root_ + "/nope.so");
  ASSERT_FALSE(missing.ok()) << "an override that names nothing is not silently ignored";
  EXPECT_NE(missing.error().message().find("ACP_PRELOAD_LIB=" + root_ + "/nope.so"),
            std::string::npos);
}

TEST_F(PreloadLookup, MissingLibraryIsAClearError) {
  auto lib = acp::backend::find_preload_library(root_ + "/sbin", std::nullopt);
  ASSERT_FALSE(lib.ok());
  const std::string m = lib.error().message();
  EXPECT_NE(m.find("libacp_preload.so"), std::string::npos) << m;
  EXPECT_NE(m.find(root_ + "/sbin/../lib/acp/libacp_preload.so"), std::string::npos) << m;
  EXPECT_NE(m.find("ACP_PRELOAD_LIB"), std::string::npos) << m;
}

TEST(PreloadEnv, AllowListIsAddrPortWithBracketedIpv6) {
  std::vector<acp::kernel::Endpoint> allow;
  for (const char* s : {"127.0.0.1:8443", "[::1]:8443", "127.0.0.1:53/udp", "127.0.0.1:53/tcp"})
    allow.push_back(*acp::kernel::parse_endpoint(s));
  EXPECT_EQ(acp::backend::preload_allow_value(allow), "127.0.0.1:8443,[::1]:8443,127.0.0.1:53");
}

TEST(PreloadEnv, TheAgentGetsTheLibraryAheadOfItsOwnPreload) {
  std::vector<acp::kernel::Endpoint> allow{*acp::kernel::parse_endpoint("127.0.0.1:8443")};
  acp::launch::AgentEnvSettings s;
  s.proxy_url = "http://127.0.0.1:8443";
  s.session_id = "0123456789ab";
  s.extra = acp::backend::preload_env("/usr/lib/acp/libacp_preload.so", allow,
                                      std::string("/opt/mine.so"));
  auto env = acp::launch::build_agent_env({"PATH=/bin", "LD_PRELOAD=/opt/mine.so"}, s);
  EXPECT_EQ(acp::launch::env_lookup(env, "LD_PRELOAD"),
            "/usr/lib/acp/libacp_preload.so:/opt/mine.so");
  EXPECT_EQ(acp::launch::env_lookup(env, "ACP_PRELOAD_ALLOW"), "127.0.0.1:8443");
}

}  // namespace
