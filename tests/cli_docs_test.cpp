// The man pages and shell completions generated from the CLI11 app (acp/cli/cli_docs.hpp):
// everything the app defines is in them, groff renders the pages without a warning, and the
// bash completion (run in a real bash), the zsh one (with zsh's completion builtins stubbed)
// complete commands, options, option values and pending request ids.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "acp/cli/app.hpp"
#include "acp/cli/cli_docs.hpp"
#include "acp/proxy/policy.hpp"
#include "consent_test_support.hpp"
#include "proxy_test_support.hpp"

namespace {

using acp::proxy::testing::run_command;
using acp::testing::TempDir;

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// As the man pages spell names: every '-' is roff's \-.
std::string roff(std::string s) {
  for (size_t i = 0; (i = s.find('-', i)) != std::string::npos; i += 2) s.replace(i, 1, "\\-");
  return s;
}

bool have(const char* tool) {
  return run_command(std::string("command -v ") + tool + " >/dev/null 2>&1").status == 0;
}

// The app as main() builds it, and the files the build generates from it, in a temp dir.
struct Docs {
  int exit_code = 0;
  std::unique_ptr<CLI::App> app = acp::cli::make_app(exit_code, "test");
  TempDir dir;
  Docs() {
    auto st = acp::cli::write_cli_docs(*app, dir.path(), "test");
    if (!st) ADD_FAILURE() << st.error().message();
  }
  std::string man(const std::string& file) const { return read_file(dir / ("man8/" + file)); }
  std::string bash() const { return dir / "completions/acp.bash"; }
  std::string zsh() const { return dir / "completions/_acp"; }
};

// Calls f(path, cmd) for the app and each subcommand below it, path "acp run", "acp ca init".
void each_command(const CLI::App& app, const std::string& path,
                  const std::function<void(const std::string&, const CLI::App&)>& f) {
  f(path, app);
  for (const auto* sub : acp::cli::doc_subcommands(app))
    each_command(*sub, path + " " + sub->get_name(), f);
}

std::string quoted_words(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) out += " '" + w + "'";
  return out;
}

// COMPREPLY of the bash completion for `words` (the last one is completed), one per line.
std::string bash_complete(const std::string& script, const std::vector<std::string>& words,
                          const std::string& env = "") {
  auto r = run_command(env +
                       " bash -c 'source \"$0\"; COMP_WORDS=(\"$@\"); "
                       "COMP_CWORD=$(($# - 1)); _acp; printf \"%s\\n\" \"${COMPREPLY[@]}\"' '" +
                       script + "'" + quoted_words(words) + " 2>&1");
  EXPECT_EQ(r.status, 0) << r.out;
  return r.out;
}

// What the zsh completion offers for `words`, with compadd, _describe, _files and _normal
// stubbed to print what they are given (zsh runs the script's own logic).
std::string zsh_complete(const std::string& script, const std::vector<std::string>& words) {
  auto r = run_command(
      "zsh -f -c 'compadd() { print -r -- \"$@\" }; _describe() { print -rl -- \"${(@P)4}\" }; "
      "_files() { print _files }; _normal() { print _normal $words }; compset() { return 0 }; "
      "script=$1; shift; words=(\"$@\"); CURRENT=$#; source $script' _ '" +
      script + "'" + quoted_words(words) + " 2>&1");
  EXPECT_EQ(r.status, 0) << r.out;
  return r.out;
}

bool has_line(const std::string& out, const std::string& line) {
  return ("\n" + out).find("\n" + line + "\n") != std::string::npos;
}

TEST(CliDocs, EveryCommandAndOptionIsInItsManPage) {
  Docs d;
  const std::string main_page = d.man("acp.8");
  for (const auto* o : acp::cli::doc_options(*d.app))
    for (const auto& n : acp::cli::option_spellings(*o))
      EXPECT_NE(main_page.find("\\fB" + roff(n) + "\\fR"), std::string::npos) << n;
  for (const auto* cmd : acp::cli::doc_subcommands(*d.app)) {
    EXPECT_NE(main_page.find(".BR acp\\-" + roff(cmd->get_name()) + " (8)"), std::string::npos);
    const std::string page = d.man(acp::cli::man_page_file(*cmd));
    ASSERT_FALSE(page.empty()) << cmd->get_name();
    each_command(*cmd, "acp " + cmd->get_name(), [&](const std::string& path, const CLI::App& c) {
      EXPECT_NE(page.find(roff(path)), std::string::npos) << path;
      for (const auto* o : acp::cli::doc_options(c))
        for (const auto& n : acp::cli::option_spellings(*o))
          EXPECT_NE(page.find("\\fB" + roff(n) + "\\fR"), std::string::npos) << path << " " << n;
      for (const auto* p : acp::cli::doc_positionals(c))
        EXPECT_NE(page.find("\\fI" + roff(p->get_name(true)) + "\\fR"), std::string::npos)
            << path << " " << p->get_name(true);
    });
  }
}

TEST(CliDocs, ManPagesListTheValuesOfSetChecks) {
  Docs d;
  const std::string run = d.man("acp-run.8");
  EXPECT_NE(run.find("Values: auto, proxy, transparent, both."), std::string::npos);
  EXPECT_NE(run.find("Values: auto, bpf, iptables, docker, preload, none."), std::string::npos);
  EXPECT_NE(run.find("Default: auto."), std::string::npos);
}

TEST(CliDocs, ManPagesRenderWithoutWarnings) {
  if (!have("groff")) GTEST_SKIP() << "groff not installed (scripts/install-deps.sh: groff-base)";
  Docs d;
  std::vector<std::string> pages = {std::string(ACP_SOURCE_DIR) + "/docs/man/acp-policy.5"};
  for (const auto& e : std::filesystem::directory_iterator(d.dir / "man8"))
    pages.push_back(e.path().string());
  EXPECT_GT(pages.size(), acp::cli::doc_subcommands(*d.app).size() + 1);
  for (const auto& page : pages) {
    auto r = run_command("groff -man -Tutf8 -ww -z '" + page + "' 2>&1");
    EXPECT_EQ(r.status, 0) << page;
    EXPECT_EQ(r.out, "") << page;
  }
}

// Text from the definitions cannot act as roff: a leading dot or quote is no request, a
// backslash no escape, and UTF-8 becomes groff's \[uXXXX] (groff reads bytes).
TEST(CliDocs, ManPageTextIsEscaped) {
  CLI::App app;
  auto* cmd = app.add_subcommand("x", ".TH leading dot\n'quote back\\slash \xc3\xa9 \xe2\x9c\x93");
  bool dry_run = false;
  cmd->add_flag("--dry-run", dry_run, "does -n");
  const std::string page = acp::cli::command_man_page(*cmd, "t");
  EXPECT_NE(page.find("\n\\&.TH leading dot\n\\&'quote back\\eslash \\[u00E9] \\[u2713]\n"),
            std::string::npos)
      << page;
  EXPECT_NE(page.find("\\fB\\-\\-dry\\-run\\fR\ndoes \\-n\n"), std::string::npos) << page;
  if (!have("groff")) return;
  TempDir dir;
  std::ofstream(dir / "x.8") << page;
  auto r = run_command("groff -man -Tutf8 -ww '" + (dir / "x.8") + "' 2>&1");
  EXPECT_NE(r.out.find(".TH leading dot 'quote back\\slash \xc3\xa9 \xe2\x9c\x93"),
            std::string::npos)
      << r.out;
}

// acp-policy(5) is written by hand: it must name every match field the loader accepts, which
// the loader lists when it meets an unknown one.
TEST(CliDocs, PolicyManPageNamesEveryMatchField) {
  auto p = acp::policy::Policy::parse("rules:\n  - match: { zzz: x }\n    action: deny\n", "t");
  ASSERT_FALSE(p.ok());
  const std::string msg = p.error().message();
  auto start = msg.find("(expected ");
  ASSERT_NE(start, std::string::npos) << msg;
  std::string list = msg.substr(start + 10, msg.find(')', start) - start - 10);
  for (const char* sep : {", ", " or "})
    for (size_t i = 0; (i = list.find(sep, i)) != std::string::npos;)
      list.replace(i, std::string(sep).size(), " ");
  const std::string page = read_file(std::string(ACP_SOURCE_DIR) + "/docs/man/acp-policy.5");
  std::istringstream fields(list);
  int n = 0;
  for (std::string f; fields >> f; ++n)
    EXPECT_NE(page.find("\n.B " + f + "\n"), std::string::npos) << f << " (from: " << msg << ")";
  EXPECT_GE(n, 9) << msg;
}

TEST(CliDocs, BashScriptParsesAndCompletesCommandsOptionsAndValues) {
  if (!have("bash")) GTEST_SKIP() << "bash not installed";
  Docs d;
  EXPECT_EQ(run_command("bash -n '" + d.bash() + "' 2>&1").out, "");
  EXPECT_EQ(bash_complete(d.bash(), {"acp", "ru"}), "run\n");
  EXPECT_EQ(bash_complete(d.bash(), {"acp", "run", "--do"}), "--door\n");
  EXPECT_EQ(bash_complete(d.bash(), {"acp", "run", "--door", ""}),
            "auto\nproxy\ntransparent\nboth\n");
  // bash splits --door=tr at the '=' (COMP_WORDBREAKS)
  EXPECT_EQ(bash_complete(d.bash(), {"acp", "run", "--door", "=", "tr"}), "transparent\n");
  EXPECT_EQ(bash_complete(d.bash(), {"acp", "run", "--backend", "=", ""}),
            "auto\nbpf\niptables\ndocker\npreload\nnone\n");
  EXPECT_EQ(bash_complete(d.bash(), {"acp", "policy", "ex"}), "explain\n");
  // an option's value is not a subcommand, and after -- come the agent's words
  EXPECT_EQ(bash_complete(d.bash(), {"acp", "run", "--policy", "p.yml", "--door", "b"}), "both\n");
  EXPECT_EQ(bash_complete(d.bash(), {"acp", "run", "--", "ru"}), "\n");
}

TEST(CliDocs, BashCompletionOffersEveryCommandAndOption) {
  if (!have("bash")) GTEST_SKIP() << "bash not installed";
  Docs d;
  each_command(*d.app, "acp", [&](const std::string& path, const CLI::App& c) {
    std::vector<std::string> words;
    std::istringstream in(path);
    for (std::string w; in >> w;) words.push_back(w);
    words.push_back("-");
    const std::string options = bash_complete(d.bash(), words);
    for (const auto* o : acp::cli::doc_options(c))
      for (const auto& n : acp::cli::option_spellings(*o))
        EXPECT_TRUE(has_line(options, n)) << path << " " << n << ":\n" << options;
    words.back() = "";
    const std::string subs = bash_complete(d.bash(), words);
    for (const auto* s : acp::cli::doc_subcommands(c))
      EXPECT_TRUE(has_line(subs, s->get_name())) << path << " " << s->get_name();
  });
}

TEST(CliDocs, BashCompletesPendingRequestIds) {
  if (!have("bash")) GTEST_SKIP() << "bash not installed";
  Docs d;
  TempDir dir;
  acp::testing::GateSession s(dir, "cafe00000002", "run/control.sock");
  acp::Action a;
  a.host = "api.example";
  a.port = 80;
  a.method = "GET";
  a.path = "/";
  auto outcome = s.ask(a, "{kind: http}");
  auto pending = s.wait_pending(1);
  ASSERT_FALSE(pending.is_null());
  const std::string id = pending["pending"][0]["id"];
  const std::string env = "ACP_RUN_DIR='" + (dir / "run") + "'";
  for (const char* cmd : {"approve", "deny", "pending"})
    EXPECT_EQ(bash_complete(d.bash(), {ACP_BINARY, cmd, ""}, env), id + "\n") << cmd;
  EXPECT_EQ(bash_complete(d.bash(), {ACP_BINARY, "approve", id.substr(0, 3)}, env), id + "\n");
  EXPECT_EQ(run_command(env + " '" + ACP_BINARY + "' deny " + id).status, 0);
  EXPECT_FALSE(outcome.get().approved);
}

// zsh is not in the CI dependencies: with it, the script is parsed and run with the
// completion builtins stubbed; without, only the tables are checked as text.
TEST(CliDocs, ZshCompletionOffersEveryCommandAndOption) {
  Docs d;
  const std::string script = read_file(d.zsh());
  EXPECT_EQ(script.rfind("#compdef acp\n", 0), 0u);
  each_command(*d.app, "acp", [&](const std::string& path, const CLI::App& c) {
    for (const auto* o : acp::cli::doc_options(c))
      for (const auto& n : acp::cli::option_spellings(*o))
        EXPECT_NE(script.find("'" + path + "|" + n + "'"), std::string::npos) << path << " " << n;
    for (const auto* s : acp::cli::doc_subcommands(c))
      EXPECT_NE(script.find("'" + path + " " + s->get_name() + "'"), std::string::npos);
  });
  if (!have("zsh")) GTEST_SKIP() << "zsh not installed: the script was checked as text only";
  EXPECT_EQ(run_command("zsh -n '" + d.zsh() + "' 2>&1").out, "");
  EXPECT_TRUE(has_line(zsh_complete(d.zsh(), {"acp", "ru"}),
                       "run:" + acp::cli::summary(*d.app->get_subcommand("run"))));
  EXPECT_TRUE(
      has_line(zsh_complete(d.zsh(), {"acp", "run", "--do"}),
               "--door:" + acp::cli::summary(*d.app->get_subcommand("run")->get_option("--door"))));
  EXPECT_EQ(zsh_complete(d.zsh(), {"acp", "run", "--door", ""}),
            "-- auto proxy transparent both\n");
  EXPECT_EQ(zsh_complete(d.zsh(), {"acp", "run", "--backend=n"}),
            "-- auto bpf iptables docker preload none\n");
  EXPECT_EQ(zsh_complete(d.zsh(), {"acp", "run", "--", "ls", "-l"}), "_normal ls -l\n");
}

}  // namespace
