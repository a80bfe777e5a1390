#include "acp/launch/socket_filter.hpp"

#include <linux/audit.h>
#include <linux/seccomp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include <cerrno>
#include <cstddef>

namespace acp::launch {
namespace {

#if defined(__x86_64__)
constexpr __u32 kArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr __u32 kArch = AUDIT_ARCH_AARCH64;
#else
#error "agent_socket_filter: add this architecture's AUDIT_ARCH"
#endif

constexpr __u32 kAllowedFamilies[] = {AF_UNIX, AF_INET, AF_INET6, AF_NETLINK};

sock_filter stmt(__u16 code, __u32 k) {
  return BPF_STMT(code, k);
}
sock_filter jump(__u16 code, __u32 k, __u8 jt, __u8 jf) {
  return BPF_JUMP(code, k, jt, jf);
}

}  // namespace

std::vector<sock_filter> agent_socket_filter() {
  const __u32 ret_allow = SECCOMP_RET_ALLOW;
  const __u32 ret_no_family = SECCOMP_RET_ERRNO | (EAFNOSUPPORT & SECCOMP_RET_DATA);
  const __u32 ret_eperm = SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA);
  std::vector<sock_filter> f;
  // A foreign architecture (32-bit compat calls have other numbers): refuse outright.
  f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)));
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, kArch, 1, 0));
  f.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)));
  f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)));
#if defined(__x86_64__)
  // x32 system calls carry bit 30.
  f.push_back(jump(BPF_JMP | BPF_JGE | BPF_K, 0x40000000U, 0, 1));
  f.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)));
#endif
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, SYS_io_uring_setup, 0, 1));
  f.push_back(stmt(BPF_RET | BPF_K, ret_eperm));
  // ioctl(fd, TIOCSTI or TIOCLINUX, ...): typing into the operator's terminal. The kernel
  // takes the request as an unsigned int, so only the low 32 bits of args[1] are compared
  // (high bits set by the caller cannot sidestep the check).
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, SYS_ioctl, 0, 5));
  f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args[1])));
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, TIOCSTI, 2, 0));
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, TIOCLINUX, 1, 0));
  f.push_back(stmt(BPF_RET | BPF_K, ret_allow));
  f.push_back(stmt(BPF_RET | BPF_K, ret_eperm));
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, SYS_socket, 1, 0));
  f.push_back(stmt(BPF_RET | BPF_K, ret_allow));
  // socket(domain, ...): the low 32 bits of args[0] (little endian).
  f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args[0])));
  const auto n = static_cast<__u8>(std::size(kAllowedFamilies));
  for (__u8 i = 0; i < n; ++i)
    f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, kAllowedFamilies[i], static_cast<__u8>(n - i),
                     0));  // to the allow below
  f.push_back(stmt(BPF_RET | BPF_K, ret_no_family));
  f.push_back(stmt(BPF_RET | BPF_K, ret_allow));
  return f;
}

}  // namespace acp::launch
