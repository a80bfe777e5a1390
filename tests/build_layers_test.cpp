// scripts/check-layers.py, which the build runs before compiling anything (check_layers in
// src/CMakeLists.txt): the tree as it is passes, and an include of a layer that is not below
// the includer's fails with the file, the line and what that layer may include.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "proxy_test_support.hpp"

namespace {

namespace fs = std::filesystem;
using acp::proxy::testing::run_command;

const std::string kCheck = std::string("python3 ") + ACP_SOURCE_DIR + "/scripts/check-layers.py ";

class CheckLayers : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/acp-layers-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const std::string& rel, const std::string& text) {
    fs::create_directories(fs::path(dir_ + "/" + rel).parent_path());
    std::ofstream(dir_ + "/" + rel) << text;
  }
  std::string dir_;
};

TEST(CheckLayersTree, TheProjectKeepsItsLayers) {
  auto r = run_command(kCheck + ACP_SOURCE_DIR + " 2>&1");
  EXPECT_EQ(r.status, 0) << r.out;
}

TEST_F(CheckLayers, AnIncludeFromAboveFailsWithWhereAndWhatIsAllowed) {
  write("src/backend/wall.cpp",
        "#include \"acp/kernel/endpoint.hpp\"\n#include \"acp/util/x.hpp\"\n");
  write("src/session/builder.cpp",
        "#include \"acp/backend/wall.hpp\"\n#include \"acp/proxy/p.hpp\"\n");
  EXPECT_EQ(run_command(kCheck + dir_ + " 2>&1").status, 0) << "includes from below are fine";

  write("src/backend/iptables.cpp", "// a comment\n#include \"acp/session/session_id.hpp\"\n");
  write("proxy/server/conn.cpp", "#include \"acp/kernel/endpoint.hpp\"\n");
  write("include/acp/util/x.hpp", "#pragma once\n#include \"acp/cgroup/mounts.hpp\"\n");
  auto r = run_command(kCheck + dir_ + " 2>&1");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("src/backend/iptables.cpp:2: includes acp/session/, but layer 'backend' "
                       "may include only backend, cgroup, kernel, util"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("proxy/server/conn.cpp:1: includes acp/kernel/"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("include/acp/util/x.hpp:2: includes acp/cgroup/"), std::string::npos)
      << r.out;
}

TEST_F(CheckLayers, OnlyTheCliIncludesCli11) {
  write("src/cli/cmd_run.cpp", "#include <CLI/CLI.hpp>\n");
  EXPECT_EQ(run_command(kCheck + dir_ + " 2>&1").status, 0);
  write("include/acp/session/run_options.hpp", "#pragma once\n#include <CLI/CLI.hpp>\n");
  auto r = run_command(kCheck + dir_ + " 2>&1");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("include/acp/session/run_options.hpp:2: includes <CLI/CLI.hpp>, which "
                       "only layer cli may include"),
            std::string::npos)
      << r.out;
}

TEST_F(CheckLayers, ALayerTheTableDoesNotKnowFails) {
  write("src/newlayer/a.cpp", "int a;\n");
  auto r = run_command(kCheck + dir_ + " 2>&1");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("layer 'newlayer' is not in"), std::string::npos) << r.out;
}

}  // namespace
