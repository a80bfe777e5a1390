// acp policy check FILE | acp policy explain FILE --host=H [--method=M] [--port=P] [--path=P]
// [--kind=K]: load a policy as `acp run` would, and show which rule decides an action and why.
#include <cstdio>
#include <memory>
#include <string>

#include "acp/cli/commands.hpp"
#include "acp/proxy/policy.hpp"
#include "acp/proxy/request_target.hpp"

namespace acp::cli {
namespace {

struct ExplainArgs {
  std::string file;
  std::string kind = "http";
  std::string host;
  std::string method;
  std::string path;
  int port = 0;
};

int run_check(const std::string& file) {
  auto p = policy::Policy::load_file(file);
  if (!p) {
    std::fprintf(stderr, "%s\n", p.error().message().c_str());
    return 1;
  }
  std::printf("%s: OK, %zu rules, default %s\n", file.c_str(), p->rule_count(),
              to_string(p->default_verdict()));
  for (const auto& w : p->shadowed_rules()) std::printf("warning: %s\n", w.c_str());
  for (const auto& w : p->path_warnings()) std::printf("warning: %s\n", w.c_str());
  return 0;
}

int run_explain(const ExplainArgs& args) {
  auto p = policy::Policy::load_file(args.file);
  if (!p) {
    std::fprintf(stderr, "%s\n", p.error().message().c_str());
    return 1;
  }
  Action a;
  a.kind = args.kind;
  a.host = args.host;
  // The canonical form the proxy would judge (docs/policy.md, "Canonical form").
  if (a.kind == "http") {
    auto host = proxy::canonical_host(args.host);
    if (!host) {
      std::fprintf(stderr, "--host: %s; the proxy refuses such a request\n",
                   host.error().message().c_str());
      return 1;
    }
    a.host = *host;
  }
  std::string path = args.path;
  if (!path.empty()) {
    auto canon = proxy::canonical_path(path);
    if (!canon) {
      std::fprintf(stderr, "--path: %s; the proxy refuses such a request with a 400\n",
                   canon.error().message().c_str());
      return 1;
    }
    path = *canon;
  }
  // Without --path the request is an HTTPS tunnel (CONNECT to 443); with one, a plain GET.
  a.method = !args.method.empty() ? args.method : path.empty() ? "CONNECT" : "GET";
  a.port = static_cast<uint16_t>(args.port ? args.port : (a.method == "CONNECT" ? 443 : 80));
  a.path = path;
  const PolicyDecision d = p->decide(a);
  std::printf("policy:  %s (%zu rules, default %s)\n", p->source().c_str(), p->rule_count(),
              to_string(p->default_verdict()));
  std::printf("action:  kind=%s host=%s port=%u method=%s path=%s\n", a.kind.c_str(),
              policy::normalize_host(a.host).c_str(), a.port, a.method.c_str(),
              a.path.empty() ? "(none)" : a.path.c_str());
  if (d.rule_index < 0) {
    std::printf("verdict: %s\nreason:  no rule matched; the policy default applies\n",
                to_string(d.verdict));
  } else {
    std::printf("verdict: %s\nreason:  rule %d (line %d) is the first that matches\n",
                to_string(d.verdict), d.rule_index + 1, d.rule_line);
    std::printf("rule:    %s\n", d.rule_text.c_str());
  }
  if (d.verdict == Verdict::Ask)
    std::printf("timeout: %lld s to answer, then deny\n",
                static_cast<long long>(d.timeout.count()));
  std::printf("host named literally: %s\n", d.host_named ? "yes" : "no");
  return 0;
}

}  // namespace

void register_policy(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("policy", "Check a policy file, or explain its decision");
  cmd->require_subcommand(1);

  auto* check = cmd->add_subcommand("check", "Load FILE as acp run would; report errors");
  auto check_file = std::make_shared<std::string>();
  check->add_option("FILE", *check_file, "Policy file (YAML)")->required();
  check->callback([check_file, &exit_code] { exit_code = run_check(*check_file); });

  auto* explain =
      cmd->add_subcommand("explain", "Show which rule of FILE decides an action, and why");
  auto args = std::make_shared<ExplainArgs>();
  explain->add_option("FILE", args->file, "Policy file (YAML)")->required();
  explain->add_option("--host", args->host, "Destination host name or address")->required();
  explain->add_option("--method", args->method,
                      "HTTP method (default CONNECT, or GET when --path is given)");
  explain->add_option("--port", args->port, "Destination port (default 443 for CONNECT, else 80)")
      ->check(CLI::Range(1, 65535));
  explain->add_option("--path", args->path, "Request path of a plain HTTP request");
  explain->add_option("--kind", args->kind, "Action kind: http, shell or mcp (default http)");
  explain->callback([args, &exit_code] { exit_code = run_explain(*args); });
}

}  // namespace acp::cli
