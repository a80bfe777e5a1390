// acp audit verify [FILE]: check the audit log's hash chain and name the first broken line.
#include <cstdio>
#include <memory>
#include <string>

#include "acp/cli/commands.hpp"
#include "acp/proxy/audit_log.hpp"

namespace acp::cli {

void register_audit(CLI::App& app, int& exit_code) {
  auto* audit = app.add_subcommand("audit", "Work with the audit log");
  audit->require_subcommand(1);
  auto* verify = audit->add_subcommand(
      "verify",
      "Check the hash chain: exit 0 if intact, 1 at the first broken line, 2 if the "
      "file cannot be read");
  auto file = std::make_shared<std::string>(audit::kDefaultAuditPath);
  verify->add_option("FILE", *file, "Audit log (default /var/log/acp/audit.jsonl)");
  verify->callback([file, &exit_code] {
    auto r = audit::AuditLog::verify(*file);
    if (!r) {
      std::fprintf(stderr, "acp audit verify: %s\n", r.error().message().c_str());
      exit_code = 2;
      return;
    }
    if (r->ok()) {
      std::printf("%s: %llu lines, hash chain intact\n", file->c_str(),
                  static_cast<unsigned long long>(r->lines_ok));
      exit_code = 0;
      return;
    }
    std::printf("%s: line %llu is broken: %s (%llu lines before it verify)\n", file->c_str(),
                static_cast<unsigned long long>(*r->first_broken), r->reason.c_str(),
                static_cast<unsigned long long>(r->lines_ok));
    exit_code = 1;
  });
}

}  // namespace acp::cli
