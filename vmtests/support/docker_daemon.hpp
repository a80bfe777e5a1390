// A private dockerd for the docker backend's vmtests: its own --data-root, --exec-root (and so
// its own containerd), pidfile and unix socket under a mkdtemp dir (/tmp/acp-vmt-docker.*), no
// default bridge and no iptables rules of its own (so the tests see only ACP's firewall, and
// nothing of docker's is left on the host). The agent image is built locally from host
// binaries by scripts/build-agent-image.sh (no registry is reachable). Stop() ends the daemon,
// unmounts whatever it left under the dir, and removes the dir.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "acp/util/result.hpp"

namespace acp::vmtest {

class DockerDaemon {
 public:
  // Starts dockerd and waits (bounded) until it answers; an error says why it could not.
  static Result<std::unique_ptr<DockerDaemon>> start();
  ~DockerDaemon();
  DockerDaemon(const DockerDaemon&) = delete;
  DockerDaemon& operator=(const DockerDaemon&) = delete;

  // unix:///tmp/acp-vmt-docker.X/docker.sock: for DOCKER_HOST and `docker -H`.
  const std::string& host() const { return host_; }
  const std::string& dir() const { return dir_; }
  // `docker -H host args...`: status and merged output.
  struct Out {
    int status = -1;
    std::string out;
  };
  Out docker(const std::vector<std::string>& args) const;
  // Builds `tag` with scripts/build-agent-image.sh, adding `extra` programs.
  Status build_image(const std::string& tag, const std::vector<std::string>& extra) const;
  // Stops the daemon and removes everything (also done by the destructor).
  void stop();

 private:
  DockerDaemon() = default;
  std::string dir_, host_;
  pid_t pid_ = -1;
};

}  // namespace acp::vmtest
