// acp ca init|show|rotate [--dir=DIR]: the per-install CA that `acp run --inspect-tls` mints
// leaf certificates from (docs/tls-inspection.md). `acp run --inspect-tls` also creates it on
// first use; these commands let the admin create it ahead, look at it, or replace it.
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "acp/cli/commands.hpp"
#include "acp/proxy/tls_inspector.hpp"

namespace acp::cli {
namespace {

void print(const proxy::CaFiles& f) {
  std::printf(
      "certificate:  %s\nkey:          %s (0600, root only)\nagent bundle: %s\n"
      "subject:      %s\nsha256:       %s\n",
      f.cert.c_str(), f.key.c_str(), f.bundle.c_str(), f.subject.c_str(), f.fingerprint.c_str());
}

}  // namespace

void register_ca(CLI::App& app, int& exit_code) {
  auto* ca = app.add_subcommand("ca", "The local CA of TLS inspection (acp run --inspect-tls)");
  ca->require_subcommand(1);
  auto dir = std::make_shared<std::string>(proxy::kDefaultCaDir);
  auto add = [&](const char* name, const char* help, bool writes,
                 Result<proxy::CaFiles> (*fn)(const std::string&)) {
    auto* sub = ca->add_subcommand(name, help);
    sub->add_option("--dir", *dir, "Where the CA lives")->default_str(proxy::kDefaultCaDir);
    sub->callback([dir, writes, fn, name, &exit_code] {
      if (writes && geteuid() != 0 && *dir == proxy::kDefaultCaDir) {
        std::fprintf(stderr, "acp ca %s: needs root to write %s\n", name, dir->c_str());
        exit_code = 1;
        return;
      }
      auto r = fn(*dir);
      if (!r) {
        std::fprintf(stderr, "acp ca %s: %s\n", name, r.error().message().c_str());
        exit_code = 1;
        return;
      }
      print(*r);
      exit_code = 0;
    });
  };
  add("init", "Create the CA when it does not exist yet (and refresh the agent bundle)", true,
      [](const std::string& d) { return proxy::ensure_ca(d); });
  add("show", "Print the CA's files and fingerprint", false,
      [](const std::string& d) { return proxy::load_ca_info(d); });
  add("rotate", "Replace the CA with a new one (running sessions keep the old one)", true,
      [](const std::string& d) { return proxy::rotate_ca(d); });
}

}  // namespace acp::cli
