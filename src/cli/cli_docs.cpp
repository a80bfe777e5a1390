// What the man pages and completions show of the CLI11 app, and writing them out. The roff is
// in man_page.cpp, the completion scripts in completion.cpp.
#include "acp/cli/cli_docs.hpp"

#include <filesystem>

#include "acp/util/atomic_file.hpp"

namespace acp::cli {

std::vector<const CLI::App*> doc_subcommands(const CLI::App& app) {
  // Option groups are unnamed subcommands; a subcommand without a group is hidden.
  return app.get_subcommands(
      [](const CLI::App* s) { return !s->get_name().empty() && !s->get_group().empty(); });
}

std::vector<const CLI::Option*> doc_options(const CLI::App& app) {
  return app.get_options(
      [](const CLI::Option* o) { return o->nonpositional() && !o->get_group().empty(); });
}

std::vector<const CLI::Option*> doc_positionals(const CLI::App& app) {
  return app.get_options(
      [](const CLI::Option* o) { return !o->nonpositional() && o->get_positional(); });
}

std::vector<std::string> option_spellings(const CLI::Option& o) {
  std::vector<std::string> out;
  for (const auto& s : o.get_snames()) out.push_back("-" + s);
  for (const auto& l : o.get_lnames()) out.push_back("--" + l);
  return out;
}

std::string option_names(const CLI::Option& o) {
  std::string out;
  for (const auto& n : option_spellings(o)) out += (out.empty() ? "" : ", ") + n;
  return out;
}

bool takes_value(const CLI::Option& o) {
  return o.get_items_expected_max() > 0;
}

std::vector<std::string> enum_values(const CLI::Option& o) {
  // CLI11 appends each validator's description to the type name: ":{a,b,c}" for a set.
  const std::string type = o.get_type_name();
  auto open = type.find(":{");
  auto close = type.find('}', open == std::string::npos ? 0 : open);
  if (open == std::string::npos || close == std::string::npos) return {};
  std::vector<std::string> out;
  std::string item;
  for (char c : type.substr(open + 2, close - open - 2)) {
    if (c != ',') {
      item += c;
      continue;
    }
    out.push_back(item);
    item.clear();
  }
  out.push_back(item);
  return out;
}

std::string value_type(const CLI::Option& o) {
  const std::string type = o.get_type_name();
  return type.substr(0, type.find(':'));
}

namespace {
// CLI11 descriptions are wrapped with '\n' for --help: the lines are joined first.
std::string first_sentence(std::string s) {
  for (auto& c : s)
    if (c == '\n') c = ' ';
  auto end = s.find(". ");
  return end == std::string::npos ? s : s.substr(0, end + 1);
}
}  // namespace

std::string summary(const CLI::App& app) {
  return first_sentence(app.get_description());
}
std::string summary(const CLI::Option& o) {
  return first_sentence(o.get_description());
}

std::string man_page_file(const CLI::App& cmd) {
  return "acp-" + cmd.get_name() + ".8";
}

Status write_cli_docs(const CLI::App& app, const std::string& dir, std::string_view version) {
  const std::string man8 = dir + "/man8", completions = dir + "/completions";
  std::error_code ec;
  std::filesystem::remove_all(man8, ec);
  for (const auto& d : {man8, completions})
    if (auto st = util::create_directories(d, 0755); !st) return st;
  std::vector<std::pair<std::string, std::string>> files = {
      {man8 + "/acp.8", main_man_page(app, version)},
      {completions + "/acp.bash", bash_completion(app)},
      {completions + "/_acp", zsh_completion(app)}};
  for (const auto* cmd : doc_subcommands(app))
    files.emplace_back(man8 + "/" + man_page_file(*cmd), command_man_page(*cmd, version));
  for (const auto& f : files)
    if (auto st = util::write_file_atomic(f.first, f.second, 0644); !st) return st;
  return {};
}

}  // namespace acp::cli
