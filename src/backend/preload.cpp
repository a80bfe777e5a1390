#include "acp/backend/preload.hpp"

#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <set>

namespace acp::backend {

Result<std::string> find_preload_library(const std::string& exe_dir,
                                         const std::optional<std::string>& override_path) {
  namespace fs = std::filesystem;
  std::vector<std::string> candidates;
  if (override_path && !override_path->empty())
    candidates.push_back(*override_path);
  else
    candidates = {exe_dir + "/../lib/acp/" + kPreloadLibName,
                  exe_dir + "/../preload/" + kPreloadLibName};
  std::string looked;
  for (const auto& c : candidates) {
    struct stat st {};
    if (::stat(c.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      std::error_code ec;
      auto abs = fs::weakly_canonical(fs::absolute(c, ec), ec);
      return ec ? c : abs.string();
    }
    looked += (looked.empty() ? "" : ", ") + c;
  }
  if (override_path && !override_path->empty())
    return make_error(std::string(kPreloadLibEnv) + "=" + *override_path +
                      ": no such library file; point it at libacp_preload.so or unset it");
  return make_error("the preload backend needs " + std::string(kPreloadLibName) +
                    ", which is not installed (looked in " + looked +
                    "): build the acp_preload target, or set " + kPreloadLibEnv +
                    "=/path/to/libacp_preload.so");
}

std::string current_exe_dir() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string p(buf, static_cast<size_t>(n));
  auto slash = p.rfind('/');
  return slash == std::string::npos ? "." : p.substr(0, slash);
}

std::string preload_allow_value(const std::vector<kernel::Endpoint>& allow) {
  std::string out;
  std::set<std::string> seen;
  for (const auto& ep : allow) {
    std::string addr = kernel::address_string(ep.addr);
    std::string item =
        (kernel::is_ipv4(ep) ? addr : "[" + addr + "]") + ":" + std::to_string(ep.port);
    if (!seen.insert(item).second) continue;
    out += (out.empty() ? "" : ",") + item;
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> preload_env(
    const std::string& library, const std::vector<kernel::Endpoint>& allow,
    const std::optional<std::string>& existing_ld_preload) {
  std::string ld = library;
  if (existing_ld_preload && !existing_ld_preload->empty()) ld += ":" + *existing_ld_preload;
  return {{"LD_PRELOAD", ld}, {kPreloadAllowEnv, preload_allow_value(allow)}};
}

}  // namespace acp::backend
