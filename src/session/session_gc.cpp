#include "acp/session/session_gc.hpp"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <set>

#include "acp/backend/command.hpp"
#include "acp/backend/docker_wall.hpp"
#include "acp/backend/iptables_wall.hpp"
#include "acp/cgroup/cgroup.hpp"
#include "acp/cgroup/mounts.hpp"
#include "acp/kernel/pinned_session.hpp"
#include "acp/session/session_record.hpp"
#include "acp/util/session_id.hpp"

namespace acp {
namespace {

std::set<std::string> list_ids(const std::string& dir, std::string_view suffix) {
  std::set<std::string> ids;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return ids;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (!suffix.empty()) {
      if (name.size() <= suffix.size() ||
          name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
        continue;
      name.resize(name.size() - suffix.size());
    }
    if (valid_session_id(name)) ids.insert(name);
  }
  ::closedir(d);
  return ids;
}

}  // namespace

std::vector<std::string> known_session_ids(SessionScan scan) {
  auto ids = list_ids(kBpfPinRoot, "");
  for (auto& id : list_ids(kSessionRecordDir, ".json")) ids.insert(id);
  if (scan == SessionScan::kRecordsAndPins) return {ids.begin(), ids.end()};
  // iptables sessions have no pins: their chains name them (ACP-<id>); docker sessions have
  // firewall chains too (ACPD-<id>). One listing per family finds both.
  static_assert(backend::kSessionChainPrefix.substr(0, 3) == "ACP" &&
                backend::kDockerChainPrefix.substr(0, 3) == "ACP");
  if (::geteuid() == 0 && backend::find_tool("iptables"))
    if (auto chains = backend::list_iptables_chains("ACP"))
      for (const auto& c : *chains) {
        if (auto id = backend::session_id_of_chain(c))
          ids.insert(*id);
        else if (auto did = backend::session_id_of_docker_chain(c))
          ids.insert(*did);
      }
  // docker sessions: labelled containers and networks on the daemon this shell's docker CLI
  // talks to.
  if (::geteuid() == 0)
    if (auto docker = backend::find_docker())
      if (auto found = backend::list_docker_sessions(*docker))
        for (const auto& id : *found) ids.insert(id);
  return {ids.begin(), ids.end()};
}

std::string cgroup_path_of(const std::string& id) {
  if (auto rec = read_session_record(kSessionRecordDir, id); rec && !rec->cgroup.empty())
    return rec->cgroup;
  auto root = cgroup2_mount_point();
  return root ? session_cgroup_path(*root, id) : std::string();
}

Status teardown_session(const std::string& id, const std::string& cgroup_path) {
  if (!valid_session_id(id)) return make_error("invalid session id \"" + id + "\"");
  if (!cgroup_path.empty()) {
    auto cg = Cgroup::open(cgroup_path);
    if (cg) {
      // Nothing the agent left behind may outlive the wall.
      if (auto st = cg->kill_all(std::chrono::seconds(10)); !st)
        return make_error("session " + id + ": could not empty " + cgroup_path + ": " +
                          st.error().message());
      if (auto st = cg->remove(); !st) return st;
    } else if (cg.error().err != ENOENT) {
      return cg.error();
    }
  }
  if (auto st = kernel::detach_and_unpin(std::string(kBpfPinRoot) + "/" + id); !st) return st;
  // The iptables wall, when the session had one (its record says so; without a record, its
  // chains may still be there).
  auto rec = read_session_record(kSessionRecordDir, id);
  if ((!rec || rec->backend == "iptables") && backend::find_tool("iptables"))
    if (auto st = backend::remove_iptables_wall(backend::session_chain_name(id)); !st) return st;
  // The docker wall: the container first (everything of the agent dies with it), then its
  // network and firewall.
  if (!rec || rec->backend == "docker") {
    if (auto docker = backend::find_docker()) {
      if (rec && !rec->docker_host.empty()) docker->host = rec->docker_host;
      if (auto st = backend::remove_docker_objects(*docker, id); !st && rec) return st;
    }
    if (backend::find_tool("iptables"))
      if (auto st = backend::remove_docker_firewall(backend::docker_chain_name(id)); !st) return st;
  }
  // The last session out leaves no empty acp/ cgroup behind (fails harmlessly while another
  // session still has its own in there; Cgroup::create copes with the race).
  if (!cgroup_path.empty()) ::rmdir(cgroup_path.substr(0, cgroup_path.rfind('/')).c_str());
  return remove_session_record(kSessionRecordDir, id);
}

GcReport collect_orphaned_sessions(bool kill_orphans, SessionScan scan) {
  GcReport report;
  const auto known = known_session_ids(scan);
  // Temporary record files of writes that died before their rename, for sessions that left
  // nothing else. A live acp renames its file within microseconds: an hour-old one is stale.
  {
    std::set<std::string> known_set(known.begin(), known.end());
    for (const auto& [id, tmp] : list_record_temp_files(kSessionRecordDir)) {
      if (known_set.count(id)) continue;  // teardown_session below removes it with the record
      struct stat st {};
      if (::stat(tmp.c_str(), &st) != 0 || ::time(nullptr) - st.st_mtime < 3600) continue;
      if (::unlink(tmp.c_str()) == 0) report.removed.push_back(id + " (stale " + tmp + ")");
    }
  }
  for (const auto& id : known) {
    auto rec = read_session_record(kSessionRecordDir, id);
    if (rec && session_owner_alive(*rec)) continue;  // a live session: not ours to touch
    std::string cg_path = cgroup_path_of(id);
    if (!kill_orphans && rec && rec->backend == "docker") {
      auto docker = backend::find_docker();
      if (docker && !rec->docker_host.empty()) docker->host = rec->docker_host;
      if (docker && backend::docker_container_running(*docker, id)) {
        report.kept.push_back(id + ": orphaned, container " + backend::docker_object_name(id) +
                              " still running behind its firewall (acp gc --kill removes it)");
        continue;
      }
    }
    if (!kill_orphans && !cg_path.empty()) {
      auto cg = Cgroup::open(cg_path);
      if (cg) {
        auto pop = cg->populated();
        if (!pop || *pop) {
          report.kept.push_back(id + ": orphaned, processes still confined in " + cg_path +
                                " (acp gc --kill removes them)");
          continue;
        }
      }
    }
    if (auto st = teardown_session(id, cg_path); !st)
      report.errors.push_back(id + ": " + st.error().message());
    else
      report.removed.push_back(id);
  }
  return report;
}

}  // namespace acp
