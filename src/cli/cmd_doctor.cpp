// acp doctor [--json]: what this kernel and machine support for the bpf backend, and why.
// Exit 0 when the bpf backend is usable, 1 otherwise.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "acp/backend/docker_wall.hpp"
#include "acp/backend/iptables_wall.hpp"
#include "acp/cli/commands.hpp"
#include "acp/kernel/probe.hpp"

namespace acp::cli {
namespace {

int run_doctor(bool json) {
  auto features = kernel::probe_kernel_features();
  bool usable = true;
  std::string why;
  for (const auto& f : features) {
    if (f.required && !f.ok && usable) {
      usable = false;
      why = f.name + ": " + f.detail;
    }
  }

  // The fallback backend, checked the same way acp run checks it (informational: the exit
  // status stays the bpf backend's).
  std::string ipt_why;
  const bool ipt = backend::iptables_backend_supported(&ipt_why);
  std::string docker_why;
  const bool docker = backend::docker_backend_supported(&docker_why);

  if (json) {
    nlohmann::json j;
    j["features"] = nlohmann::json::array();
    for (const auto& f : features) {
      nlohmann::json jf = {
          {"name", f.name}, {"ok", f.ok}, {"required", f.required}, {"detail", f.detail}};
      if (!f.ok) jf["remedy"] = f.remedy;
      j["features"].push_back(std::move(jf));
    }
    j["bpf_backend"] = {{"available", usable}};
    if (!usable) j["bpf_backend"]["why"] = why;
    j["iptables_backend"] = {{"available", ipt}};
    if (!ipt) j["iptables_backend"]["why"] = ipt_why;
    j["docker_backend"] = {{"available", docker}};
    if (!docker) j["docker_backend"]["why"] = docker_why;
    std::printf("%s\n", j.dump(2).c_str());
    return usable ? 0 : 1;
  }

  size_t width = 0;
  for (const auto& f : features) width = std::max(width, f.name.size());
  for (const auto& f : features) {
    const char* mark = f.ok ? "\u2714" : (f.required ? "\u2718" : "-");
    std::printf("%s %-*s  %s\n", mark, static_cast<int>(width), f.name.c_str(), f.detail.c_str());
    if (!f.ok && !f.remedy.empty())
      std::printf("  %-*s  -> %s\n", static_cast<int>(width), "", f.remedy.c_str());
  }
  if (usable) {
    std::printf("bpf backend: available\n");
  } else {
    std::printf("bpf backend: unavailable (%s)\n", why.c_str());
  }
  if (ipt)
    std::printf("iptables backend: available (xt_cgroup rule installed and removed)\n");
  else
    std::printf("iptables backend: unavailable (%s)\n", ipt_why.c_str());
  if (docker)
    std::printf("docker backend: available (dockerd reachable; acp contain)\n");
  else
    std::printf("docker backend: unavailable (%s)\n", docker_why.c_str());
  std::printf("acp run --backend=auto would use: %s\n",
              usable   ? "bpf"
              : ipt    ? "iptables"
              : docker ? "docker"
                       : "nothing (refuses; see --backend=preload|none)");
  return usable ? 0 : 1;
}

}  // namespace

void register_doctor(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand(
      "doctor", "Check what this kernel and machine support for the bpf backend, and why");
  auto json = std::make_shared<bool>(false);
  cmd->add_flag("--json", *json, std::string("Print the findings as JSON"));
  cmd->callback([&exit_code, json] { exit_code = run_doctor(*json); });
}

}  // namespace acp::cli
