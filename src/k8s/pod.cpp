// Parsing of core/v1 Pod objects, PodLists and watch events.
#include "acp/k8s/pod.hpp"
#include "acp/util/json_text.hpp"

#include <nlohmann/json.hpp>

namespace acp::k8s {
namespace {

using nlohmann::json;

std::string str_at(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::map<std::string, std::string> string_map(const json& meta, const char* key) {
  std::map<std::string, std::string> out;
  auto it = meta.find(key);
  if (it == meta.end() || !it->is_object()) return out;
  for (const auto& [k, v] : it->items())
    if (v.is_string()) out[k] = v.get<std::string>();
  return out;
}

}  // namespace

bool Pod::wants_confinement() const {
  auto it = labels.find(kConfineLabel);
  if (it == labels.end() || it->second != "true") return false;
  return phase != "Succeeded" && phase != "Failed";
}

std::optional<std::string> Pod::policy_name() const {
  auto it = annotations.find(kPolicyAnnotation);
  if (it == annotations.end() || it->second.empty()) return std::nullopt;
  return it->second;
}

bool valid_pod_uid(std::string_view uid) {
  if (uid.empty() || uid.size() > 64) return false;
  for (char c : uid)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || c == '-')) return false;
  return true;
}

Result<Pod> parse_pod(const json& obj) {
  if (!obj.is_object()) return make_error("pod: not a JSON object");
  auto meta = obj.find("metadata");
  if (meta == obj.end() || !meta->is_object()) return make_error("pod: no metadata");
  Pod p;
  p.uid = str_at(*meta, "uid");
  p.ns = str_at(*meta, "namespace");
  p.name = str_at(*meta, "name");
  p.resource_version = str_at(*meta, "resourceVersion");
  p.labels = string_map(*meta, "labels");
  p.annotations = string_map(*meta, "annotations");
  if (auto spec = obj.find("spec"); spec != obj.end() && spec->is_object()) {
    p.node = str_at(*spec, "nodeName");
    auto hn = spec->find("hostNetwork");
    p.host_network = hn != spec->end() && hn->is_boolean() && hn->get<bool>();
  }
  if (auto status = obj.find("status"); status != obj.end() && status->is_object()) {
    p.qos_class = str_at(*status, "qosClass");
    p.phase = str_at(*status, "phase");
    if (auto ips = status->find("podIPs"); ips != status->end() && ips->is_array())
      for (const auto& ip : *ips)
        if (ip.is_object() && !str_at(ip, "ip").empty()) p.ips.push_back(str_at(ip, "ip"));
    if (p.ips.empty() && !str_at(*status, "podIP").empty())
      p.ips.push_back(str_at(*status, "podIP"));
  }
  if (!valid_pod_uid(p.uid)) return make_error("pod " + p.key() + ": bad uid \"" + p.uid + "\"");
  // A static pod (a manifest the kubelet read from disk) is known to the API as a mirror pod
  // with a uid of the API server's; its cgroup is named by the kubelet's own uid for it, the
  // manifest's hash, which the mirror pod carries in this annotation. Anyone who may create a
  // pod may write it: it is a claim, which the agent weighs (node_agent.cpp), never the uid.
  if (auto m = p.annotations.find(kMirrorAnnotation);
      m != p.annotations.end() && valid_pod_uid(m->second) && m->second != p.uid)
    p.mirror_uid = m->second;
  return p;
}

Result<PodList> parse_pod_list(std::string_view body) {
  json j = acp::util::parse_json(body);
  if (j.is_discarded() || !j.is_object()) return make_error("pod list: not a JSON object");
  PodList out;
  if (auto meta = j.find("metadata"); meta != j.end() && meta->is_object())
    out.resource_version = str_at(*meta, "resourceVersion");
  if (out.resource_version.empty()) return make_error("pod list: no metadata.resourceVersion");
  auto items = j.find("items");
  if (items != j.end() && items->is_array()) {
    for (const auto& item : *items) {
      auto p = parse_pod(item);
      if (!p) return p.error();
      out.pods.push_back(std::move(*p));
    }
  }
  return out;
}

Result<WatchEvent> parse_watch_event(std::string_view line) {
  json j = acp::util::parse_json(line);
  if (j.is_discarded() || !j.is_object()) return make_error("watch event: not a JSON object");
  const std::string type = str_at(j, "type");
  auto obj = j.find("object");
  if (obj == j.end() || !obj->is_object()) return make_error("watch event " + type + ": no object");
  WatchEvent ev;
  if (type == "ERROR") {
    ev.type = WatchEventType::Error;
    auto code = obj->find("code");
    ev.code = code != obj->end() && code->is_number_integer() ? code->get<int>() : 0;
    ev.message = str_at(*obj, "message");
    return ev;
  }
  if (auto meta = obj->find("metadata"); meta != obj->end() && meta->is_object())
    ev.resource_version = str_at(*meta, "resourceVersion");
  if (type == "BOOKMARK") {
    ev.type = WatchEventType::Bookmark;
    return ev;
  }
  if (type == "ADDED")
    ev.type = WatchEventType::Added;
  else if (type == "MODIFIED")
    ev.type = WatchEventType::Modified;
  else if (type == "DELETED")
    ev.type = WatchEventType::Deleted;
  else
    return make_error("watch event: unknown type \"" + type + "\"");
  auto p = parse_pod(*obj);
  if (!p) return p.error();
  ev.pod = std::move(*p);
  return ev;
}

}  // namespace acp::k8s
