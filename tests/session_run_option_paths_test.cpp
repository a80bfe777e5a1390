// Every `acp run` option, enumerated from its CLI11 definition (add_run_options) so that a new
// one cannot be forgotten, reaches each path that runs a session or is refused there by name:
//   standalone  plan_run_session (the session builder's plan) + acp run's agent step
//   daemon      register_request -> plan_registered_session (the daemon's plan) + acp run's
//               agent step; or, where the daemon cannot hold the session, standalone
//   docker      contain_options_for_run (the `acp contain` session)
// For each option and path: the path's effect with the option differs from its effect
// without it, or the path refuses it with an error that names it. Dropping an option (as the
// daemon once dropped --allow-unix) makes the two effects equal and fails here.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "acp/cli/command_options.hpp"
#include "acp/daemon/daemon.hpp"
#include "acp/session/agent_session.hpp"
#include "acp/session/docker_session.hpp"
#include "acp/session/run_options.hpp"

namespace {

struct Example {
  std::vector<std::string> args;  // the option, with a value other than its default
  std::vector<std::string> base;  // what it needs beside it (in both runs)
};

// One example per option. A new option without one fails OptionPaths.EveryOptionHasAnExample.
const std::map<std::string, Example>& examples() {
  static const std::map<std::string, Example> k = {
      {"--backend", {{"--backend=iptables"}, {}}},
      {"--isolation", {{"--isolation=preload"}, {}}},
      {"--proxy-port", {{"--proxy-port=9001"}, {}}},
      {"--allow", {{"--allow=127.0.0.1:5432"}, {}}},
      {"--allow-unix", {{"--allow-unix=/run/example.sock"}, {}}},
      {"--user", {{"--user=nobody"}, {}}},
      {"--allow-root", {{"--allow-root"}, {"--user=0"}}},
      {"--audit-only", {{"--audit-only"}, {}}},
      {"--policy", {{"--policy=/etc/acp/example.yml"}, {}}},
      {"--config", {{"--config=/etc/acp/example-config.yml"}, {}}},
      {"--audit-log", {{"--audit-log=/var/log/acp/example.jsonl"}, {}}},
      {"--max-tasks", {{"--max-tasks=77"}, {}}},
      {"--inspect-tls", {{"--inspect-tls"}, {}}},
      {"--inspect-tls-exclude", {{"--inspect-tls-exclude=*.pinned.example"}, {"--inspect-tls"}}},
      {"--inspect-tls-upstream-ca", {{"--inspect-tls-upstream-ca=/tmp/ca.pem"}, {"--inspect-tls"}}},
      {"--inspect-tls-ca-dir", {{"--inspect-tls-ca-dir=/tmp/acp-ca"}, {"--inspect-tls"}}},
      {"--daemon", {{"--daemon=required"}, {}}},
      {"--no-daemon", {{"--no-daemon"}, {}}},
      {"--daemon-socket", {{"--daemon-socket=/tmp/example-daemon.sock"}, {}}},
      {"--json-events", {{"--json-events"}, {}}},
      {"--door", {{"--door=transparent"}, {}}},  // auto (the default) is both on bpf
  };
  return k;
}

// The long names of every option of `acp run` but --help and the command.
std::vector<std::string> run_option_names() {
  CLI::App app;
  auto* run = app.add_subcommand("run");
  acp::RunOptions o;
  acp::add_run_options(run, o);
  std::vector<std::string> names;
  for (const CLI::Option* opt : run->get_options()) {
    if (opt == run->get_help_ptr() || !opt->nonpositional()) continue;
    names.push_back("--" + opt->get_lnames().front());
  }
  return names;
}

acp::RunOptions parse(std::vector<std::string> args) {
  CLI::App app;
  auto* run = app.add_subcommand("run");
  acp::RunOptions o;
  acp::add_run_options(run, o);
  args.insert(args.begin(), "run");
  args.insert(args.end(), {"--", "agent", "--flag"});
  std::reverse(args.begin(), args.end());  // CLI11 parses a reversed vector
  app.parse(args);
  return o;
}

nlohmann::json plan_json(const acp::SessionPlan& p) {
  nlohmann::json allow = nlohmann::json::array();
  for (const auto& ep : p.extra_allow) allow.push_back(acp::kernel::to_string(ep));
  const auto& r = p.record;
  const auto& x = p.proxy;
  return {{"kind", acp::backend::kind_name(p.kind)},
          {"root", p.root},
          {"audit_only", p.audit_only},
          {"allow", allow},
          {"allow_unix", p.allow_unix},
          {"door", static_cast<int>(p.door)},
          {"record",
           {{"uid", r.uid},
            {"user", r.user},
            {"command", r.command},
            {"policy", r.policy},
            {"config", r.config},
            {"audit_log", r.audit_log},
            {"owner", r.owner}}},
          {"proxy",
           {{"port", x.port},
            {"explicit", x.port_is_explicit},
            {"policy", x.policy_path.value_or("")},
            {"audit", x.audit_path},
            {"config", x.config_path},
            {"control", x.control_path},
            {"grants", x.grants_path},
            {"inspect_tls", x.inspect_tls},
            {"exclude", x.inspect_tls_exclude},
            {"upstream_ca", x.upstream_ca},
            {"ca_dir", x.ca_dir}}}};
}

nlohmann::json route_json(const acp::daemon::DaemonRoute& r) {
  return {{"ask", r.ask}, {"required", r.required}, {"socket", r.socket}, {"why_not", r.why_not}};
}

// What acp run applies itself on both paths: the agent's user (resolve_target_user), its task
// limit (prepare_agent) and how kernel events are printed.
nlohmann::json runner_json(const acp::RunOptions& o, acp::launch::TargetUser* user_out) {
  auto user = acp::launch::resolve_target_user(o.user, {{"SUDO_UID", "1000"}, {"SUDO_GID", "1000"}},
                                               o.allow_root);
  nlohmann::json j{{"max_tasks", o.max_tasks}, {"json_events", o.json_events}};
  if (!user) {
    j["user_error"] = user.error().message();
    return j;
  }
  *user_out = *user;
  j["user"] = {{"uid", user->uid}, {"name", user->name}};
  return j;
}

struct Effect {
  std::string refused;  // the error, when the path refuses
  nlohmann::json what;
};

Effect standalone(const acp::RunOptions& o) {
  if (auto st = acp::validate_run_options(o); !st) return {st.error().message(), {}};
  auto route = acp::daemon::daemon_route(o, /*root=*/true);
  if (!route.refusal.empty()) return {route.refusal, {}};
  acp::launch::TargetUser user;
  nlohmann::json what{{"backend", acp::requested_backend(o)},
                      {"route", route_json(route)},
                      {"runner", runner_json(o, &user)}};
  auto kind = acp::backend::parse_kind(acp::requested_backend(o));
  if (kind == acp::backend::Kind::kDocker) return {"", what};  // the docker path, below
  auto plan = acp::plan_run_session(o, kind.value_or(acp::backend::Kind::kBpf), user, true, "");
  if (!plan) return {plan.error().message(), {}};
  what["plan"] = plan_json(*plan);
  return {"", what};
}

Effect via_daemon(const acp::RunOptions& o) {
  auto route = acp::daemon::daemon_route(o, /*root=*/true);
  if (!route.refusal.empty()) return {route.refusal, {}};
  // The daemon cannot hold it: acp run runs standalone, which must honour the option.
  if (!route.ask) return {"", {{"standalone", standalone(o).what}}};
  if (auto st = acp::validate_run_options(o); !st) return {st.error().message(), {}};
  acp::launch::TargetUser user;
  nlohmann::json what{{"route", route_json(route)}, {"runner", runner_json(o, &user)}};
  auto plan = acp::daemon::plan_registered_session(acp::daemon::register_request(o, user), 4242);
  if (!plan) return {plan.error().message(), {}};
  what["plan"] = plan_json(*plan);
  return {"", what};
}

Effect docker(acp::RunOptions o) {
  if (o.backend == "auto" && !o.isolation) o.backend = "docker";
  if (acp::requested_backend(o) != "docker")  // the option chose another path
    return {"", {{"backend", acp::requested_backend(o)}}};
  auto route = acp::daemon::daemon_route(o, /*root=*/true);
  if (!route.refusal.empty()) return {route.refusal, {}};
  auto c = acp::contain_options_for_run(o);
  if (!c) return {c.error().message(), {}};
  return {"",
          {{"backend", "docker"},
           {"route", route_json(route)},
           {"contain",
            {{"port", c->proxy_port.value_or(0)},
             {"policy", c->policy.value_or("")},
             {"audit_log", c->audit_log},
             {"config", c->config},
             {"command", c->command}}}}};
}

// The flag as a word of the message: "--allow" in "--allow, --user" but not in "--allow-root".
bool names(const std::string& message, const std::string& flag) {
  return std::regex_search(message, std::regex(flag + "(?![a-z-])"));
}

void expect_honoured_or_refused(const char* path, Effect (*effect)(const acp::RunOptions&),
                                const std::string& flag) {
  const Example& ex = examples().at(flag);
  std::vector<std::string> with = ex.base;
  with.insert(with.end(), ex.args.begin(), ex.args.end());
  const Effect without_it = effect(parse(ex.base));
  const Effect with_it = effect(parse(with));
  SCOPED_TRACE(std::string(path) + " " + flag);
  if (!with_it.refused.empty()) {
    // Refused by name; or the path refuses what the option needs (--inspect-tls) already.
    EXPECT_TRUE(names(with_it.refused, flag) || without_it.refused == with_it.refused)
        << "the refusal does not name " << flag << ": " << with_it.refused;
    return;
  }
  EXPECT_TRUE(without_it.refused.empty()) << without_it.refused;
  EXPECT_NE(with_it.what, without_it.what)
      << flag << " is dropped on the " << path << " path: " << with_it.what.dump();
}

Effect standalone_ref(const acp::RunOptions& o) {
  return standalone(o);
}
Effect docker_ref(const acp::RunOptions& o) {
  return docker(o);
}

TEST(OptionPaths, EveryOptionHasAnExample) {
  const auto names = run_option_names();
  ASSERT_GE(names.size(), 15u);  // the enumeration itself works
  for (const auto& flag : names)
    EXPECT_TRUE(examples().count(flag)) << "acp run " << flag
                                        << " has no example here: add one, and make every path "
                                           "honour it or refuse it by name";
}

TEST(OptionPaths, StandaloneHonoursEveryOption) {
  for (const auto& flag : run_option_names())
    if (examples().count(flag)) expect_honoured_or_refused("standalone", standalone_ref, flag);
}

TEST(OptionPaths, TheDaemonHonoursOrRefusesEveryOption) {
  for (const auto& flag : run_option_names())
    if (examples().count(flag)) expect_honoured_or_refused("daemon", via_daemon, flag);
}

TEST(OptionPaths, TheDockerBackendHonoursOrRefusesEveryOption) {
  for (const auto& flag : run_option_names())
    if (examples().count(flag)) expect_honoured_or_refused("docker", docker_ref, flag);
}

// The drop this test was written for: the daemon's plan carries --allow-unix to the wall.
TEST(OptionPaths, AllowUnixReachesTheDaemonsWall) {
  auto o = parse({"--allow-unix=/run/a.sock", "--allow-unix=@abstract"});
  acp::launch::TargetUser user;
  user.uid = 1000;
  user.name = "agent";
  auto plan = acp::daemon::plan_registered_session(acp::daemon::register_request(o, user), 1);
  ASSERT_TRUE(plan.ok()) << plan.error().message();
  EXPECT_EQ(plan->allow_unix, (std::vector<std::string>{"/run/a.sock", "@abstract"}));
  auto bad = acp::daemon::plan_registered_session(
      {{"command", {"x"}}, {"allow_unix", {"relative.sock"}}}, 1);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message().find("--allow-unix=relative.sock"), std::string::npos)
      << bad.error().message();
}

}  // namespace
