#include "support/run_fixture.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "acp/kernel/probe.hpp"

#ifndef ACP_BINARY
#error "ACP_BINARY must be defined by the build"
#endif

namespace acp::vmtest {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Proc Proc::start(const std::vector<std::string>& argv, const std::string& log_file) {
  Proc p;
  int fds[2];
  if (log_file.empty()) {
    if (pipe2(fds, O_CLOEXEC) != 0) return p;
  } else {
    fds[0] = -1;
    fds[1] = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fds[1] < 0) return p;
    p.log_file = log_file;
  }
  p.pid = fork();
  if (p.pid == 0) {
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    setpgid(0, 0);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(fds[1]);
  p.out_fd = fds[0];
  return p;
}

int Proc::reap() {
  int st = 0;
  waitpid(pid, &st, 0);
  if (out_fd >= 0) close(out_fd);
  if (!log_file.empty()) out = slurp(log_file);
  status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return status;
}

int Proc::finish() {
  if (out_fd >= 0) {
    out += read_all(out_fd);
    close(out_fd);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  if (!log_file.empty()) out = slurp(log_file);
  status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return status;
}

Proc run(const std::vector<std::string>& argv) {
  Proc p = Proc::start(argv);
  p.finish();
  return p;
}

uint16_t free_port() {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  close(s);
  return ntohs(a.sin_port);
}

bool port_answers(uint16_t port, const std::string& addr) {
  bool v6 = addr.find(':') != std::string::npos;
  int s = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  bool ok = false;
  if (v6) {
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    inet_pton(AF_INET6, addr.c_str(), &a.sin6_addr);
    a.sin6_port = htons(port);
    ok = connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  } else {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    inet_pton(AF_INET, addr.c_str(), &a.sin_addr);
    a.sin_port = htons(port);
    ok = connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  close(s);
  return ok;
}

bool ipv6_loopback_available() {
  int s = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return false;
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  bool ok = bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(s);
  return ok;
}

// python3's http.server (threaded, HTTP/1.0) with a listen backlog of 1024 instead of its 5:
// an agent that loops requests (RunProxy.ReloadsUnderLoadDropNothing) overflowed the accept
// queue when the machine was loaded, and the kernel then drops the handshake's last ACK
// (tcp_abort_on_overflow=0): the proxy's upstream connection hangs, and the test failed on the
// origin, not on ACP.
static std::vector<std::string> origin_command(const std::string& addr, uint16_t port,
                                               const std::string& dir) {
  static const char* kOrigin =
      "import functools, http.server as h, socket, sys\n"
      "class S(h.ThreadingHTTPServer):\n"
      "    request_queue_size = 1024\n"
      "    address_family = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET\n"
      "S((sys.argv[1], int(sys.argv[2])),\n"
      "  functools.partial(h.SimpleHTTPRequestHandler, directory=sys.argv[3])).serve_forever()\n";
  return {"python3", "-c", kOrigin, addr, std::to_string(port), dir};
}

void RunFixture::SetUp() {
  if (geteuid() != 0) GTEST_SKIP() << "needs root: acp run loads BPF programs";
  std::string why;
  if (!acp::kernel::bpf_backend_supported(&why)) GTEST_SKIP() << "no cgroup BPF here: " << why;
  char tmpl[] = "/tmp/acp-run-test.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  dir_ = tmpl;
  chmod(dir_.c_str(), 0755);
  fs::create_directories(dir_ + "/www");
  std::ofstream(dir_ + "/www/index.html") << "origin says hello\n";
  // Every `acp run` here gets this config unless a test passes its own: without one, acp would
  // read /etc/acp/config.yml or its defaults, which enable the web page and create
  // /etc/acp/web.token on the machine.
  std::ofstream(config()) << "channels:\n  web:\n    enabled: false\n";
  chmod(config().c_str(), 0644);
  origin_port_ = free_port();
  origin_ =
      Proc::start(origin_command("127.0.0.1", origin_port_, dir_ + "/www"), dir_ + "/origin.out");
  for (int i = 0; i < 100 && !port_answers(origin_port_); ++i) std::this_thread::sleep_for(50ms);
  ASSERT_TRUE(port_answers(origin_port_)) << "the test origin did not start";
  proxy_port_ = free_port();
}

void RunFixture::TearDown() {
  if (origin_.pid > 0) {
    kill(origin_.pid, SIGTERM);
    origin_.finish();
  }
  for (auto& o : extra_origins_) {
    if (o.pid <= 0) continue;
    kill(o.pid, SIGTERM);
    o.finish();
  }
  extra_origins_.clear();
  // A test that failed half-way may leave an orphaned session of its own: end it.
  if (!dir_.empty() && run({ACP_BINARY, "status", "--json"}).out.find(dir_) != std::string::npos)
    run({ACP_BINARY, "gc", "--kill"});
  if (!dir_.empty() && !getenv("ACP_KEEP")) fs::remove_all(dir_);
}

bool RunFixture::start_origin(uint16_t port, const std::string& addr) {
  auto argv = origin_wrapper_;
  for (auto& a : origin_command(addr, port, dir_ + "/www")) argv.push_back(std::move(a));
  extra_origins_.push_back(Proc::start(argv, dir_ + "/origin-" + std::to_string(port) + ".out"));
  for (int i = 0; i < 100 && !port_answers(port, addr); ++i) std::this_thread::sleep_for(50ms);
  return port_answers(port, addr);
}

bool RunFixture::start_tls_origin(uint16_t port, const std::string& addr) {
  if (!fs::exists(cert_path())) {
    auto r = run({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                  "-keyout", dir_ + "/key.pem", "-out", cert_path(), "-subj", "/CN=127.0.0.1",
                  "-addext", "subjectAltName=IP:127.0.0.1,IP:::1"});
    if (r.status != 0) {
      ADD_FAILURE() << "openssl req failed: " << r.out;
      return false;
    }
    chmod(cert_path().c_str(), 0644);
  }
  static const char* kServer =
      "import functools, http.server, socket, ssl, sys\n"
      "addr, port, root, cert, key = sys.argv[1:]\n"
      "class S(http.server.ThreadingHTTPServer):\n"
      "    address_family = socket.AF_INET6 if ':' in addr else socket.AF_INET\n"
      "h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)\n"
      "s = S((addr, int(port)), h)\n"
      "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
      "ctx.load_cert_chain(cert, key)\n"
      "s.socket = ctx.wrap_socket(s.socket, server_side=True)\n"
      "s.serve_forever()\n";
  auto argv = origin_wrapper_;
  for (const auto& a : {std::string("python3"), std::string("-c"), std::string(kServer), addr,
                        std::to_string(port), dir_ + "/www", cert_path(), dir_ + "/key.pem"})
    argv.push_back(a);
  extra_origins_.push_back(Proc::start(argv, dir_ + "/origin-" + std::to_string(port) + ".out"));
  for (int i = 0; i < 100 && !port_answers(port, addr); ++i) std::this_thread::sleep_for(50ms);
  return port_answers(port, addr);
}

std::string RunFixture::write_policy(const std::string& name, const std::string& yaml) {
  std::string path = dir_ + "/" + name;
  std::ofstream(path) << yaml;
  chmod(path.c_str(), 0644);
  return path;
}

std::string RunFixture::policy_for_origin(const std::string& action) {
  return write_policy("policy.yml",
                      "default: deny\nrules:\n  - match: { kind: http, host: "
                      "\"127.0.0.1\", port: " +
                          std::to_string(origin_port_) + " }\n    action: " + action +
                          "\n    timeout: 20\n");
}

std::vector<std::string> RunFixture::acp_run(const std::string& policy,
                                             std::vector<std::string> cmd,
                                             std::vector<std::string> extra) {
  std::vector<std::string> argv = {
      ACP_BINARY,           "run",
      "--user=nobody",      "--proxy-port=" + std::to_string(proxy_port_),
      "--policy=" + policy, "--audit-log=" + audit()};
  bool own_config = false, own_door = false;
  for (const auto& e : extra) {
    own_config = own_config || e.rfind("--config", 0) == 0;
    own_door = own_door || e.rfind("--door", 0) == 0;
  }
  if (!own_config) argv.push_back("--config=" + config());
  if (!own_door) argv.push_back("--door=proxy");
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back("--");
  argv.insert(argv.end(), cmd.begin(), cmd.end());
  return argv;
}

std::string RunFixture::origin_url() const {
  return "http://127.0.0.1:" + std::to_string(origin_port_) + "/";
}

nlohmann::json RunFixture::pending() {
  auto p = run({ACP_BINARY, "pending", "--json"});
  try {
    return nlohmann::json::parse(p.out);
  } catch (...) {
    return nlohmann::json::array();
  }
}

std::string RunFixture::wait_for_pending_id() {
  for (int i = 0; i < 200; ++i) {
    auto j = pending();
    if (j.is_array() && !j.empty()) return j[0].at("id").get<std::string>();
    std::this_thread::sleep_for(50ms);
  }
  return "";
}

std::vector<nlohmann::json> RunFixture::audit_entries() {
  std::vector<nlohmann::json> out;
  std::istringstream in(slurp(audit()));
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded()) out.push_back(std::move(j));
  }
  return out;
}

std::vector<nlohmann::json> RunFixture::transparent_requests(const std::string& host,
                                                             uint16_t port) {
  std::vector<nlohmann::json> out;
  for (auto& e : audit_entries())
    if (e.value("kind", "") == "request" && e["action"].value("via", "") == "transparent" &&
        e["action"].value("host", "") == host && e["action"].value("port", 0) == port)
      out.push_back(e);
  return out;
}

std::vector<std::string> with_own_etc_files(const std::string& hosts,
                                            const std::vector<std::string>& cmd,
                                            const std::string& resolv_conf) {
  std::vector<std::string> out = {"unshare", "-m", "--propagation", "private", "sh", "-c"};
  if (resolv_conf.empty()) {
    out.insert(out.end(), {"mount --bind \"$0\" /etc/hosts && exec \"$@\"", hosts});
  } else {
    out.insert(out.end(), {"mount --bind \"$0\" /etc/hosts && mount --bind \"$1\" "
                           "/etc/resolv.conf && shift && exec \"$@\"",
                           hosts, resolv_conf});
  }
  out.insert(out.end(), cmd.begin(), cmd.end());
  return out;
}

bool wait_until(const std::function<bool()>& pred, std::chrono::seconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return pred();
}

size_t count_lines(const std::string& text, const std::string& needle) {
  std::istringstream in(text);
  size_t n = 0;
  for (std::string line; std::getline(in, line);)
    if (line.find(needle) != std::string::npos) ++n;
  return n;
}

}  // namespace acp::vmtest
