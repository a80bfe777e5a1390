#include "acp/kernel/session_maps.hpp"

#include "acp_decide.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <tuple>

namespace acp::kernel {

uint64_t Counters::total_allowed() const {
  uint64_t t = 0;
  for (const auto& fam : allowed)
    for (uint64_t v : fam) t += v;
  return t;
}

uint64_t Counters::total_denied() const {
  uint64_t t = 0;
  for (const auto& fam : denied)
    for (uint64_t v : fam) t += v;
  return t;
}

Counters& Counters::operator+=(const Counters& o) {
  for (int fam = 0; fam < ACP_FAM_MAX; fam++) {
    for (int pro = 0; pro < ACP_PRO_MAX; pro++) {
      allowed[fam][pro] += o.allowed[fam][pro];
      denied[fam][pro] += o.denied[fam][pro];
    }
  }
  return *this;
}

const char* counter_family_name(int fam) {
  static constexpr const char* kFam[ACP_FAM_MAX] = {"inet", "inet6", "other", "unix"};
  return fam >= 0 && fam < ACP_FAM_MAX ? kFam[fam] : "other";
}

const char* counter_proto_name(int proto) {
  static constexpr const char* kPro[ACP_PRO_MAX] = {"tcp", "udp", "other"};
  return proto >= 0 && proto < ACP_PRO_MAX ? kPro[proto] : "other";
}

nlohmann::json counters_to_json(const Counters& c) {
  nlohmann::json j;
  for (int fam = 0; fam < ACP_FAM_MAX; fam++) {
    const char* f = counter_family_name(fam);
    for (int pro = 0; pro < ACP_PRO_MAX; pro++) {
      j["allowed"][f][counter_proto_name(pro)] = c.allowed[fam][pro];
      j["denied"][f][counter_proto_name(pro)] = c.denied[fam][pro];
    }
  }
  j["total_allowed"] = c.total_allowed();
  j["total_denied"] = c.total_denied();
  return j;
}

Result<std::vector<Endpoint>> read_allow_entries(int fd) {
  std::vector<Endpoint> out;
  acp_endpoint key{}, next{};
  const void* prev = nullptr;
  // Bounded: the map holds at most ACP_MAX_ALLOW entries; the extra round covers a
  // concurrent rewrite restarting the walk.
  for (int i = 0; i <= 2 * ACP_MAX_ALLOW; i++) {
    if (bpf_map_get_next_key(fd, prev, &next) != 0) {
      if (errno == ENOENT) break;
      return errno_error("read allow_map keys");
    }
    out.push_back(from_abi(next));
    key = next;
    prev = &key;
  }
  std::sort(out.begin(), out.end(), [](const Endpoint& a, const Endpoint& b) {
    return std::tie(a.addr, a.port, a.proto) < std::tie(b.addr, b.port, b.proto);
  });
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Status add_allow_entry(int fd, const Endpoint& ep) {
  acp_endpoint key = to_abi(ep);
  acp_allow_value val{};
  if (bpf_map_update_elem(fd, &key, &val, BPF_ANY) != 0) {
    int err = errno;
    std::string ctx = "add " + to_string(ep) + " to allow_map";
    if (err == E2BIG) ctx += " (at most " + std::to_string(ACP_MAX_ALLOW) + " endpoints)";
    return make_error(std::move(ctx), err);
  }
  return {};
}

Status remove_allow_entry(int fd, const Endpoint& ep) {
  acp_endpoint key = to_abi(ep);
  if (bpf_map_delete_elem(fd, &key) != 0 && errno != ENOENT)
    return errno_error("remove " + to_string(ep) + " from allow_map");
  return {};
}

Result<acp_unix_path> parse_unix_name(const std::string& name) {
  acp_unix_path p{};
  std::string bytes;
  if (!name.empty() && name[0] == '@') {
    bytes.push_back('\0');
    for (size_t i = 1; i < name.size(); i++) {
      if (name[i] == '\\' && i + 1 < name.size() && name[i + 1] == '0') {
        bytes.push_back('\0');
        i++;
      } else {
        bytes.push_back(name[i]);
      }
    }
    if (bytes.size() < 2)
      return make_error("unix name \"" + name + "\": empty abstract name", EINVAL);
  } else {
    if (name.empty() || name[0] != '/')
      return make_error("unix name \"" + name +
                            "\": give an absolute path or @abstract (the wall matches the name "
                            "exactly as connect() gives it; a relative one would never match)",
                        EINVAL);
    if (name.find('\0') != std::string::npos)
      return make_error("unix path with a NUL byte", EINVAL);
    bytes = name;
  }
  if (bytes.size() > ACP_UNIX_PATH_MAX)
    return make_error("unix name \"" + name + "\": longer than sun_path (" +
                          std::to_string(ACP_UNIX_PATH_MAX) + " bytes)",
                      ENAMETOOLONG);
  std::memcpy(p.path, bytes.data(), bytes.size());
  p.len = static_cast<uint32_t>(bytes.size());
  return p;
}

std::string unix_name_string(const acp_unix_path& p) {
  size_t len = std::min<size_t>(p.len, ACP_UNIX_PATH_MAX);
  std::string out;
  size_t i = 0;
  if (len > 0 && p.path[0] == 0) {
    out = "@";
    i = 1;
  }
  for (; i < len; i++) {
    auto c = static_cast<unsigned char>(p.path[i]);
    if (c == 0) {
      out += "\\0";
    } else if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

Result<std::vector<std::string>> read_unix_allow_entries(int fd) {
  std::vector<std::string> out;
  acp_unix_path key{}, next{};
  const void* prev = nullptr;
  for (int i = 0; i <= 2 * ACP_MAX_UNIX_ALLOW; i++) {
    if (bpf_map_get_next_key(fd, prev, &next) != 0) {
      if (errno == ENOENT) break;
      return errno_error("read unix_allow keys");
    }
    acp_allow_value v{};
    if (bpf_map_lookup_elem(fd, &next, &v) == 0 && (v.flags & ACP_UNIX_QUIET_DENY) == 0)
      out.push_back(unix_name_string(next));
    key = next;
    prev = &key;
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Status add_unix_allow_entry(int fd, const std::string& name) {
  auto key = parse_unix_name(name);
  if (!key) return key.error();
  acp_allow_value val{};
  if (bpf_map_update_elem(fd, &*key, &val, BPF_ANY) != 0) {
    int err = errno;
    std::string ctx = "add unix name " + name + " to unix_allow";
    if (err == E2BIG) ctx += " (at most " + std::to_string(ACP_MAX_UNIX_ALLOW) + " names)";
    return make_error(std::move(ctx), err);
  }
  return {};
}

Result<uint64_t> read_percpu_sum(int fd, uint32_t idx) {
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return make_error("count possible CPUs", -ncpu);
  // Per-CPU values come back as one 8-byte-aligned slot per possible CPU.
  std::vector<uint64_t> per_cpu(static_cast<size_t>(ncpu));
  if (bpf_map_lookup_elem(fd, &idx, per_cpu.data()) != 0)
    return errno_error("read per-CPU counter slot " + std::to_string(idx));
  uint64_t sum = 0;
  for (uint64_t v : per_cpu) sum += v;
  return sum;
}

Result<Counters> read_counters(int fd) {
  Counters c;
  for (uint32_t fam = 0; fam < ACP_FAM_MAX; fam++) {
    for (uint32_t pro = 0; pro < ACP_PRO_MAX; pro++) {
      for (uint32_t denied = 0; denied < 2; denied++) {
        auto sum = read_percpu_sum(fd, acp_counter_index(fam, pro, denied));
        if (!sum) return sum.error();
        (denied ? c.denied : c.allowed)[fam][pro] = *sum;
      }
    }
  }
  return c;
}

Result<std::vector<acp_event>> read_recent_events(int fd) {
  std::vector<acp_event> out;
  for (uint32_t slot = 0; slot < ACP_RECENT_SLOTS; slot++) {
    acp_event e{};
    if (bpf_map_lookup_elem(fd, &slot, &e) != 0)
      return errno_error("read recent events slot " + std::to_string(slot));
    if (e.ts_ns != 0) out.push_back(e);
  }
  std::sort(out.begin(), out.end(),
            [](const acp_event& a, const acp_event& b) { return a.ts_ns < b.ts_ns; });
  return out;
}

Result<uint64_t> read_lost_events(int fd) {
  uint32_t zero = 0;
  uint64_t v = 0;
  if (bpf_map_lookup_elem(fd, &zero, &v) != 0) return errno_error("read lost_events");
  return v;
}

Result<acp_config> read_config(int fd) {
  uint32_t zero = 0;
  acp_config cfg{};
  if (bpf_map_lookup_elem(fd, &zero, &cfg) != 0) return errno_error("read config_map");
  return cfg;
}

Result<Endpoint> original_destination(int door_origin_fd, const Endpoint& peer) {
  if (peer.proto != ACP_PROTO_TCP)
    return make_error("original destination of peer " + to_string(peer) +
                          ": only TCP connections are led through the door",
                      EINVAL);
  acp_endpoint key = to_abi(peer);
  acp_door_origin o{};
  if (bpf_map_lookup_elem(door_origin_fd, &key, &o) != 0)
    return errno_error("original destination of peer " + to_string(peer) +
                       " (door_origin holds none: not led in by this session's wall, or closed)");
  return from_abi(o.dst);
}

Status write_config(int fd, const acp_config& cfg) {
  uint32_t zero = 0;
  if (bpf_map_update_elem(fd, &zero, &cfg, BPF_ANY) != 0) return errno_error("write config_map");
  return {};
}

Status write_mode(int fd, uint32_t mode) {
  if (mode != ACP_MODE_ENFORCE && mode != ACP_MODE_AUDIT)
    return make_error("set mode " + std::to_string(mode) + ": not enforce (0) or audit (1)",
                      EINVAL);
  auto cfg = read_config(fd);
  if (!cfg) return cfg.error();
  cfg->mode = mode;
  return write_config(fd, *cfg);
}

}  // namespace acp::kernel
