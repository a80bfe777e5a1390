// Pod, PodList and watch event parsing (the API server's JSON).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "acp/k8s/pod.hpp"

namespace acp::k8s {
namespace {

const char* kPod = R"({"kind":"Pod","apiVersion":"v1",
  "metadata":{"name":"agent-0","namespace":"ml","uid":"0f6a1c3e-7b1d-4c39-9d1e-3a5e2b7c9f10",
    "resourceVersion":"4711","labels":{"acp.dev/confine":"true","app":"agent"},
    "annotations":{"acp.dev/policy":"llm-apis.yml"}},
  "spec":{"nodeName":"node-a","containers":[{"name":"main"}]},
  "status":{"phase":"Running","qosClass":"Burstable","podIP":"10.244.1.7",
    "podIPs":[{"ip":"10.244.1.7"},{"ip":"fd00:10:244:1::7"}]}})";

TEST(K8sPodTest, ParsesWhatTheAgentUses) {
  auto p = parse_pod(nlohmann::json::parse(kPod));
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(p->uid, "0f6a1c3e-7b1d-4c39-9d1e-3a5e2b7c9f10");
  EXPECT_EQ(p->key(), "ml/agent-0");
  EXPECT_EQ(p->node, "node-a");
  EXPECT_EQ(p->qos_class, "Burstable");
  EXPECT_EQ(p->ips, (std::vector<std::string>{"10.244.1.7", "fd00:10:244:1::7"}));
  EXPECT_EQ(p->resource_version, "4711");
  EXPECT_TRUE(p->wants_confinement());
  EXPECT_EQ(p->policy_name(), "llm-apis.yml");
  EXPECT_FALSE(p->host_network);
}

TEST(K8sPodTest, ConfinementNeedsTheExactLabelAndALivePod) {
  auto j = nlohmann::json::parse(kPod);
  j["metadata"]["labels"]["acp.dev/confine"] = "yes";
  EXPECT_FALSE(parse_pod(j)->wants_confinement());
  j["metadata"]["labels"].erase("acp.dev/confine");
  EXPECT_FALSE(parse_pod(j)->wants_confinement());
  j["metadata"]["labels"]["acp.dev/confine"] = "true";
  j["status"]["phase"] = "Succeeded";
  EXPECT_FALSE(parse_pod(j)->wants_confinement());
  j["status"]["phase"] = "Pending";
  EXPECT_TRUE(parse_pod(j)->wants_confinement());
}

TEST(K8sPodTest, OnlyPodIPWhenNoPodIPs) {
  auto j = nlohmann::json::parse(kPod);
  j["status"].erase("podIPs");
  EXPECT_EQ(parse_pod(j)->ips, std::vector<std::string>{"10.244.1.7"});
  j["status"].erase("podIP");
  EXPECT_TRUE(parse_pod(j)->ips.empty());
}

TEST(K8sPodTest, RefusesAUidThatCouldEscapeAPath) {
  auto j = nlohmann::json::parse(kPod);
  j["metadata"]["uid"] = "../../etc";
  EXPECT_FALSE(parse_pod(j));
  j["metadata"]["uid"] = "";
  EXPECT_FALSE(parse_pod(j));
}

// A static pod's mirror: the API's uid is not the one its cgroup is named by; the kubelet's
// (the manifest hash in kubernetes.io/config.mirror) is. It is kept as a claim beside the uid,
// never in its place; one that is not a valid uid is ignored (the pod still parses: one odd
// pod must not stop the agent from listing the node).
TEST(K8sPodTest, StaticPodMirrorUidIsAClaimBesideTheUid) {
  auto j = nlohmann::json::parse(kPod);
  j["metadata"]["annotations"]["kubernetes.io/config.mirror"] = "6b4b1d0e8f3b2a1c9d8e7f6a5b4c3d2e";
  auto p = parse_pod(j);
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(p->uid, "0f6a1c3e-7b1d-4c39-9d1e-3a5e2b7c9f10");
  EXPECT_EQ(p->mirror_uid, "6b4b1d0e8f3b2a1c9d8e7f6a5b4c3d2e");
  j["metadata"]["annotations"]["kubernetes.io/config.mirror"] = "../x";
  p = parse_pod(j);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->mirror_uid, "");
}

TEST(K8sPodTest, ParsesAListWithItsResourceVersion) {
  std::string body =
      std::string(R"({"kind":"PodList","metadata":{"resourceVersion":"900"},"items":[)") + kPod +
      "]}";
  auto l = parse_pod_list(body);
  ASSERT_TRUE(l) << l.error().message();
  EXPECT_EQ(l->resource_version, "900");
  ASSERT_EQ(l->pods.size(), 1u);
  EXPECT_EQ(l->pods[0].name, "agent-0");
  EXPECT_FALSE(parse_pod_list(R"({"kind":"PodList","items":[]})"));  // no version: cannot watch
  EXPECT_FALSE(parse_pod_list("not json"));
}

TEST(K8sPodTest, ParsesEveryWatchEventType) {
  auto added = parse_watch_event(std::string(R"({"type":"ADDED","object":)") + kPod + "}");
  ASSERT_TRUE(added);
  EXPECT_EQ(added->type, WatchEventType::Added);
  EXPECT_EQ(added->resource_version, "4711");
  EXPECT_EQ(added->pod.name, "agent-0");
  EXPECT_EQ(parse_watch_event(std::string(R"({"type":"MODIFIED","object":)") + kPod + "}")->type,
            WatchEventType::Modified);
  EXPECT_EQ(parse_watch_event(std::string(R"({"type":"DELETED","object":)") + kPod + "}")->type,
            WatchEventType::Deleted);
  auto bm = parse_watch_event(
      R"({"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"12345"}}})");
  ASSERT_TRUE(bm);
  EXPECT_EQ(bm->type, WatchEventType::Bookmark);
  EXPECT_EQ(bm->resource_version, "12345");
  auto gone = parse_watch_event(
      R"j({"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 1 (5)","reason":"Expired","code":410}})j");
  ASSERT_TRUE(gone);
  EXPECT_EQ(gone->type, WatchEventType::Error);
  EXPECT_EQ(gone->code, 410);
  EXPECT_FALSE(parse_watch_event(R"({"type":"SURPRISE","object":{}})"));
  EXPECT_FALSE(parse_watch_event("{"));
}

}  // namespace
}  // namespace acp::k8s
