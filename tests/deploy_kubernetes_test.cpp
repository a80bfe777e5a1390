// deploy/kubernetes/: the manifests pass `kubectl apply --dry-run=client --validate=false`
// (kubectl needs API discovery even for a client dry run: a stub answers it on loopback,
// tests/kube_discovery_stub.py), and the objects carry what the node agent relies on: its node
// name from the downward API, the host mounts, the capabilities, probes on the port it serves,
// and RBAC that only reads pods.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace {

using nlohmann::json;

std::string capture(const std::string& cmd, int* status) {
  std::string out;
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) return out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), f)) > 0) out.append(buf.data(), n);
  int st = pclose(f);
  if (status) *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return out;
}

class DeployKubernetesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (capture("command -v kubectl", nullptr).empty())
      GTEST_SKIP() << "kubectl not installed (scripts/install-deps.sh installs kubernetes-client)";
    char t[] = "/tmp/acp-kube-XXXXXX";
    ASSERT_NE(mkdtemp(t), nullptr);
    dir_ = t;
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    stub_ = fork();
    if (stub_ == 0) {
      dup2(fds[1], 1);
      close(fds[0]);
      execlp("python3", "python3", ACP_SOURCE_DIR "/tests/kube_discovery_stub.py", nullptr);
      _exit(127);
    }
    close(fds[1]);
    std::string port;
    char c;
    while (read(fds[0], &c, 1) == 1 && c != '\n') port.push_back(c);
    close(fds[0]);
    ASSERT_FALSE(port.empty()) << "the discovery stub did not start";
    std::ofstream(dir_ + "/kubeconfig")
        << "apiVersion: v1\nkind: Config\nclusters: [{name: stub, cluster: {server: "
           "\"http://127.0.0.1:"
        << port
        << "\"}}]\nusers: [{name: stub, user: {token: dummy}}]\n"
           "contexts: [{name: stub, context: {cluster: stub, user: stub}}]\n"
           "current-context: stub\n";
  }
  void TearDown() override {
    if (stub_ > 0) {
      kill(stub_, SIGTERM);
      waitpid(stub_, nullptr, 0);
    }
    if (!dir_.empty()) (void)std::system(("rm -rf '" + dir_ + "'").c_str());
  }
  std::string kubectl(const std::string& args, int* status) {
    return capture(
        "KUBECONFIG='" + dir_ + "/kubeconfig' HOME='" + dir_ + "' kubectl " + args + " 2>&1",
        status);
  }
  json find(const json& items, const std::string& kind) {
    for (const auto& i : items)
      if (i.value("kind", "") == kind) return i;
    return json();
  }

  std::string dir_;
  pid_t stub_ = -1;
};

TEST_F(DeployKubernetesTest, ManifestsApplyAndCarryWhatTheAgentNeeds) {
  int st = -1;
  const std::string files = "-f " ACP_SOURCE_DIR "/deploy/kubernetes/";
  std::string out = kubectl("apply --dry-run=client --validate=false " + files, &st);
  ASSERT_EQ(st, 0) << out;
  EXPECT_NE(out.find("daemonset.apps/acp-node-agent created (dry run)"), std::string::npos) << out;

  out = kubectl("apply --dry-run=client --validate=false -o json " + files, &st);
  ASSERT_EQ(st, 0) << out;
  json list = json::parse(out, nullptr, false);
  ASSERT_FALSE(list.is_discarded()) << out;
  const json& items = list["items"];

  // RBAC: pods, get/list/watch, nothing else.
  json role = find(items, "ClusterRole");
  ASSERT_FALSE(role.is_null());
  ASSERT_EQ(role["rules"].size(), 1u);
  EXPECT_EQ(role["rules"][0]["resources"], json::array({"pods"}));
  EXPECT_EQ(role["rules"][0]["verbs"], json::array({"get", "list", "watch"}));
  json binding = find(items, "ClusterRoleBinding");
  EXPECT_EQ(binding["subjects"][0]["name"], "acp-node-agent");
  EXPECT_EQ(binding["roleRef"]["name"], "acp-node-agent");

  json ds = find(items, "DaemonSet");
  ASSERT_FALSE(ds.is_null());
  const json& pod = ds["spec"]["template"]["spec"];
  EXPECT_EQ(pod["serviceAccountName"], "acp-node-agent");
  EXPECT_EQ(pod["hostNetwork"], true);  // the proxy is on the node address
  const json& c = pod["containers"][0];

  // NODE_NAME from the downward API (the agent's fieldSelector), HOST_IP for the proxy.
  std::map<std::string, std::string> env;
  for (const auto& e : c["env"]) env[e["name"]] = e["valueFrom"]["fieldRef"]["fieldPath"];
  EXPECT_EQ(env["NODE_NAME"], "spec.nodeName");
  EXPECT_EQ(env["HOST_IP"], "status.hostIP");
  // POD_UID: the agent's own pod, which the node gate must let through first.
  EXPECT_EQ(env["POD_UID"], "metadata.uid");

  // Host mounts: the host's cgroup tree where --cgroup-root says, bpffs, /run/acp, /var/log/acp.
  std::map<std::string, std::string> host_path;  // volume name -> host path
  for (const auto& v : pod["volumes"])
    if (v.contains("hostPath")) host_path[v["name"]] = v["hostPath"]["path"];
  std::map<std::string, std::string> mounted;  // host path -> mount path
  for (const auto& m : c["volumeMounts"])
    if (host_path.count(m["name"])) mounted[host_path[m["name"]]] = m["mountPath"];
  EXPECT_EQ(mounted["/sys/fs/cgroup"], "/host/sys/fs/cgroup");
  EXPECT_EQ(mounted["/sys/fs/bpf"], "/sys/fs/bpf");
  EXPECT_EQ(mounted["/run/acp"], "/run/acp");
  EXPECT_EQ(mounted["/var/log/acp"], "/var/log/acp");
  std::vector<std::string> args = c["args"];
  auto has_arg = [&](const std::string& a) {
    return std::find(args.begin(), args.end(), a) != args.end();
  };
  EXPECT_EQ(args.at(0), "node-agent");
  EXPECT_TRUE(has_arg("--cgroup-root=/host/sys/fs/cgroup"));
  EXPECT_TRUE(has_arg("--bpffs=/sys/fs/bpf"));
  EXPECT_TRUE(has_arg("--proxy-listen=$(HOST_IP):8443"));
  EXPECT_TRUE(has_arg("--metrics-listen=$(HOST_IP):9753"));
  // The policy directory is the ConfigMap's mount.
  bool policies = false;
  for (const auto& v : pod["volumes"])
    if (v.contains("configMap") && v["configMap"]["name"] == "acp-policies")
      for (const auto& m : c["volumeMounts"])
        if (m["name"] == v["name"] && m["mountPath"] == "/etc/acp/policies") policies = true;
  EXPECT_TRUE(policies);
  EXPECT_TRUE(has_arg("--policy-dir=/etc/acp/policies"));

  // Capabilities rather than privileged: exactly the ones docs/node-agent.md explains.
  const json& sc = c["securityContext"];
  EXPECT_NE(sc.value("privileged", false), true);
  EXPECT_EQ(sc["capabilities"]["drop"], json::array({"ALL"}));
  EXPECT_EQ(sc["capabilities"]["add"], json::array({"BPF", "PERFMON", "NET_ADMIN"}));
  EXPECT_NE(pod.value("hostPID", false), true);

  // Probes on the port --metrics-listen serves.
  EXPECT_EQ(c["livenessProbe"]["httpGet"]["path"], "/healthz");
  EXPECT_EQ(c["livenessProbe"]["httpGet"]["port"], 9753);
  EXPECT_EQ(c["readinessProbe"]["httpGet"]["path"], "/readyz");
}

}  // namespace
