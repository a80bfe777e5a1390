// The agent's seccomp filter: the socket families the cgroup BPF hooks never see, and
// typing into the operator's terminal.
//
// cgroup/sock_create runs only for AF_INET and AF_INET6 sockets, so an AF_VSOCK, AF_PACKET,
// AF_BLUETOOTH, AF_XDP (...) socket would be a way off the host the wall does not judge.
// The agent may create AF_UNIX, AF_INET, AF_INET6 and AF_NETLINK sockets only; socket() with
// any other family fails with EAFNOSUPPORT. io_uring_setup fails with EPERM: io_uring can
// create sockets without the socket() system call this filter sees (the BPF hooks still judge
// its inet connects, but not other families). On x86_64, x32 system calls fail with ENOSYS so
// the filter cannot be sidestepped through the other ABI.
//
// It also refuses ioctl TIOCSTI and TIOCLINUX with EPERM: the agent shares the operator's
// terminal (its controlling tty), and TIOCSTI would type commands into the operator's shell,
// which runs outside the wall, or answer the prompt consent channel itself (as bubblewrap and
// flatpak refuse it).
#pragma once

#include <linux/filter.h>

#include <vector>

namespace acp::launch {

// The classic-BPF program, built in the parent; the child installs it with
// prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER) after no-new-privileges, just before execve.
std::vector<sock_filter> agent_socket_filter();

}  // namespace acp::launch
