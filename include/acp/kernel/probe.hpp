// What this kernel and machine support for the bpf backend, checked for real (loading and
// attaching the actual programs), never inferred from version numbers. The one probe that
// `acp doctor`, `--backend=auto` and the vmtests share, so a test skips for exactly the
// reason the product degrades.
#pragma once

#include <string>
#include <vector>

namespace acp::kernel {

struct Feature {
  std::string name;  // "cgroup2", "attach cgroup programs", ...
  bool ok = false;
  bool required = true;  // false: informational, the bpf backend works without it
  std::string detail;    // what was found: "mounted at /sys/fs/cgroup/unified"
  std::string remedy;    // what to do when !ok
};

// Runs every check (a few milliseconds: it loads, attaches and detaches the programs on a
// scratch cgroup and clones one short-lived child). Leaves nothing behind, even on failure.
// Needs root for the decisive checks; unprivileged callers get them reported as not run.
std::vector<Feature> probe_kernel_features();

// True when every required feature is there. Runs the probe once per process and caches the
// answer; *why gets "<feature>: <detail>" of the first missing one.
bool bpf_backend_supported(std::string* why = nullptr);

}  // namespace acp::kernel
