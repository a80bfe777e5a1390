#include "acp/session/session_record.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "acp/util/atomic_file.hpp"
#include "acp/util/json_text.hpp"
#include "acp/util/session_id.hpp"

namespace acp {

nlohmann::json to_json(const SessionRecord& r) {
  nlohmann::json j{{"id", r.id},
                   {"acp_pid", r.acp_pid},
                   {"acp_start_time", r.acp_start_time},
                   {"agent_pid", r.agent_pid},
                   {"uid", r.uid},
                   {"user", r.user},
                   {"command", r.command},
                   {"backend", r.backend},
                   {"mode", r.mode},
                   {"cgroup", r.cgroup},
                   {"pin_dir", r.pin_dir},
                   {"proxy", r.proxy},
                   {"policy", r.policy},
                   {"control", r.control},
                   {"audit_log", r.audit_log},
                   {"channels", r.channels},
                   {"started_at", r.started_at},
                   {"task_limit", r.task_limit},
                   {"owner", r.owner},
                   {"runner_pid", r.runner_pid},
                   {"config", r.config},
                   {"door", r.door}};
  if (!r.container.empty()) {
    j["container"] = r.container;
    j["image"] = r.image;
    j["subnet"] = r.subnet;
    j["docker_host"] = r.docker_host;
  }
  return j;
}

Result<SessionRecord> session_record_from_json(const nlohmann::json& j) {
  SessionRecord r;
  try {
    r.id = j.at("id").get<std::string>();
    r.acp_pid = j.at("acp_pid").get<pid_t>();
    r.acp_start_time = j.value("acp_start_time", uint64_t{0});
    r.agent_pid = j.value("agent_pid", pid_t{0});
    r.uid = j.value("uid", uid_t{0});
    r.user = j.value("user", std::string());
    r.command = j.value("command", std::vector<std::string>{});
    r.backend = j.value("backend", std::string("bpf"));
    r.mode = j.value("mode", std::string("enforce"));
    r.cgroup = j.value("cgroup", std::string());
    r.pin_dir = j.value("pin_dir", std::string());
    r.proxy = j.value("proxy", std::vector<std::string>{});
    r.policy = j.value("policy", std::string());
    r.control = j.value("control", std::string());
    r.audit_log = j.value("audit_log", std::string());
    r.channels = j.value("channels", std::vector<std::string>{});
    r.started_at = j.value("started_at", int64_t{0});
    r.task_limit = j.value("task_limit", std::string());
    r.door = j.value("door", std::string("proxy"));
    r.owner = j.value("owner", std::string("run"));
    r.runner_pid = j.value("runner_pid", pid_t{0});
    r.config = j.value("config", std::string());
    r.container = j.value("container", std::string());
    r.image = j.value("image", std::string());
    r.subnet = j.value("subnet", std::string());
    r.docker_host = j.value("docker_host", std::string());
  } catch (const nlohmann::json::exception& e) {
    return make_error(std::string("malformed session record: ") + e.what());
  }
  if (!valid_session_id(r.id))
    return make_error("session record has an invalid id \"" + r.id + "\"");
  return r;
}

Status write_session_record(const std::string& dir, const SessionRecord& r) {
  if (!valid_session_id(r.id)) return make_error("invalid session id \"" + r.id + "\"");
  // /run/acp and /run/acp/sessions: root-owned, readable so `acp status` works for operators.
  if (auto st = util::create_directories(dir, 0755); !st) return st;
  return util::write_file_atomic(dir + "/" + r.id + ".json", to_json(r).dump(2) + "\n", 0644);
}

Result<SessionRecord> read_session_record(const std::string& dir, const std::string& id) {
  if (!valid_session_id(id)) return make_error("invalid session id \"" + id + "\"");
  std::string path = dir + "/" + id + ".json";
  std::ifstream in(path);
  if (!in) return errno_error("read " + path);
  std::ostringstream text;
  text << in.rdbuf();
  auto j = util::parse_json(text.str());
  if (j.is_discarded()) return make_error(path + ": not valid JSON");
  return session_record_from_json(j);
}

Status remove_session_record(const std::string& dir, const std::string& id) {
  if (!valid_session_id(id)) return make_error("invalid session id \"" + id + "\"");
  std::string path = dir + "/" + id + ".json";
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return errno_error("remove " + path);
  for (const auto& t : list_record_temp_files(dir)) {
    if (t.id != id) continue;
    if (::unlink(t.path.c_str()) != 0 && errno != ENOENT) return errno_error("remove " + t.path);
  }
  return {};
}

std::vector<RecordTempFile> list_record_temp_files(const std::string& dir) {
  std::vector<RecordTempFile> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    const auto json = name.find('.');
    if (json == std::string::npos) continue;
    const std::string id = name.substr(0, json);
    if (!valid_session_id(id) || name.rfind(util::atomic_write_temp_prefix(id + ".json"), 0) != 0)
      continue;
    out.push_back({id, dir + "/" + name});
  }
  ::closedir(d);
  return out;
}

uint64_t process_start_time(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!in || !std::getline(in, stat)) return 0;
  // comm may hold spaces and parentheses: fields resume after the last ')'.
  auto close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  // Field 3 (state) is the first after ')'; starttime is field 22.
  for (int i = 3; i < 22; ++i) {
    if (!(rest >> field)) return 0;
    // A killed acp that its parent has not reaped yet is a zombie: dead, its proxy gone.
    if (i == 3 && (field == "Z" || field == "X")) return 0;
  }
  uint64_t start = 0;
  rest >> start;
  return start;
}

bool session_owner_alive(const SessionRecord& r) {
  if (r.acp_pid <= 0) return false;
  uint64_t now = process_start_time(r.acp_pid);
  return now != 0 && (r.acp_start_time == 0 || now == r.acp_start_time);
}

}  // namespace acp
