// acp_cli_docs DIR: writes the man pages (DIR/man8) and shell completions (DIR/completions) of
// `acp`, walking the same CLI::App that main() parses with (make_app), so they cannot drift
// from `--help`. A build-time tool rather than a hidden `acp` subcommand: the installed acp
// then carries no generator, the generated files depend only on the build, and the tree
// builds them without running the privileged binary (src/CMakeLists.txt runs it).
#include <cstdio>

#include "acp/cli/app.hpp"
#include "acp/cli/cli_docs.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: acp_cli_docs DIR\n");
    return 2;
  }
  int exit_code = 0;
  auto app = acp::cli::make_app(exit_code, ACP_VERSION);
  if (auto st = acp::cli::write_cli_docs(*app, argv[1], ACP_VERSION); !st) {
    std::fprintf(stderr, "acp_cli_docs: %s\n", st.error().message().c_str());
    return 1;
  }
  return 0;
}
