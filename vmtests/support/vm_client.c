/*
 * The escape probe: a small client that makes one network attempt and reports what the kernel
 * said, so a vmtest can run the very same attempt inside the wall and outside it (the control).
 *
 *   acp_vm_client [--fork=N] [--daemon=FILE] [--escape=PROCS] [--via=A,P] OP ADDR PORT
 *
 * OP is one of
 *   tcp            socket(SOCK_STREAM) + connect()
 *   mptcp          socket(SOCK_STREAM, IPPROTO_MPTCP) + connect()
 *   tcp-fastopen   socket(SOCK_STREAM) + sendto(MSG_FASTOPEN): connect and data in one call
 *   udp-connect    socket(SOCK_DGRAM) + connect() + send()
 *   udp-sendto     unconnected sendto()
 *   udp-sendmsg    unconnected sendmsg() with msg_name
 *   udp-sendmmsg   unconnected sendmmsg() of two datagrams
 *   raw            socket(SOCK_RAW, IPPROTO_ICMP or ICMPV6) only
 *   ping           ICMP "ping" socket (SOCK_DGRAM, IPPROTO_ICMP/ICMPV6) + an echo request
 *   packet         socket(AF_PACKET, SOCK_RAW) only (ADDR and PORT ignored)
 *   uring-connect  connect() submitted through io_uring (needs liburing at build time)
 *   tcp-serve      inbound: bind ADDR:PORT, listen, accept one connection, send() to it
 * ADDR with a ':' is IPv6 (including ::ffff:a.b.c.d), else IPv4.
 *
 * Output, one "key=value" per line on stdout:
 *   pid=<pid>                                    who made the attempt
 *   cgroup=<the 0:: line of /proc/self/cgroup>   where the attempt ran
 *   escape=OK|<ERRNO>                            --escape: writing the own pid to PROCS
 *   reply=OK|<ERRNO>                             ping: whether an echo reply came back
 *   result=OK|<ERRNO>|UNSUPPORTED                e.g. result=EPERM
 * Exit status: 0 when the attempt succeeded, 1 when it failed, 2 on a usage error, 3 when the
 * op is not built in (UNSUPPORTED).
 *
 * --fork=N     the attempt is made by a descendant N forks down (2: a grandchild); each level
 *              waits for its child and passes its exit status up.
 * --daemon=F   double fork with setsid in between; the daemon waits (bounded) until the
 *              process that started it has exited, then makes the attempt and writes its
 *              output lines to F. The starting process prints daemon=<pid>.
 * --escape=P   first write "0" (the own pid) to the cgroup.procs file P, then the attempt.
 * --via=A,P    udp-sendto: connect() the socket to A:P first (prints via=OK|ERRNO), then
 *              sendto() ADDR:PORT: a connected socket must not send elsewhere either.
 * --mkcg=DIR   first make the cgroup DIR (and its missing parents, as the kubelet and the
 *              runtime make a pod's and a container's), move into it, and start attempting at
 *              once: no other process had a chance to act on DIR before the first attempt.
 *              Prints mkcg=OK|ERRNO.
 * --repeat-ms=N  make the attempt again and again, each with a new socket, for N ms (from the
 *              mkdir of --mkcg when given), then print attempts=, ok=, eperm=, other= and
 *              first_ok_us= (microseconds to the first success; -1: none) before result= (the
 *              last attempt's).
 * --stop-on-ok with --repeat-ms: stop at the first attempt that succeeds.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef ACP_HAVE_LIBURING
#include <liburing.h>
#endif

#define UNSUPPORTED (-1000)

static FILE* out;
static const char* via_addr; /* --via: a UDP socket connects here before its sendto() */
static int via_port;

static const char* errname(int err) {
  if (err == 0) return "OK";
  if (err == UNSUPPORTED) return "UNSUPPORTED";
  const char* n = strerrorname_np(err);
  return n ? n : "E?";
}

static int make_addr(const char* addr, int port, struct sockaddr_storage* ss, socklen_t* len) {
  memset(ss, 0, sizeof(*ss));
  if (strchr(addr, ':')) {
    struct sockaddr_in6* s = (struct sockaddr_in6*)ss;
    s->sin6_family = AF_INET6;
    s->sin6_port = htons((unsigned short)port);
    if (inet_pton(AF_INET6, addr, &s->sin6_addr) != 1) return -1;
    *len = sizeof(*s);
    return AF_INET6;
  }
  struct sockaddr_in* s = (struct sockaddr_in*)ss;
  s->sin_family = AF_INET;
  s->sin_port = htons((unsigned short)port);
  if (inet_pton(AF_INET, addr, &s->sin_addr) != 1) return -1;
  *len = sizeof(*s);
  return AF_INET;
}

/* Each returns 0 on success or the errno of the failing call. */
static int attempt(const char* op, const char* addr, int port) {
  struct sockaddr_storage ss;
  socklen_t len = 0;
  int family = make_addr(addr, port, &ss, &len);
  if (family < 0 && strcmp(op, "packet") != 0) return EINVAL;
  struct sockaddr* sa = (struct sockaddr*)&ss;
  char data[] = "acp-probe";
  int fd = -1, rc = 0;

  if (strcmp(op, "packet") == 0) {
    fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    rc = fd < 0 ? errno : 0;
  } else if (strcmp(op, "raw") == 0) {
    fd = socket(family, SOCK_RAW, family == AF_INET ? IPPROTO_ICMP : IPPROTO_ICMPV6);
    rc = fd < 0 ? errno : 0;
  } else if (strcmp(op, "ping") == 0) {
    fd = socket(family, SOCK_DGRAM, family == AF_INET ? IPPROTO_ICMP : IPPROTO_ICMPV6);
    if (fd < 0) return errno;
    unsigned char pkt[16] = {0};
    pkt[0] = family == AF_INET ? ICMP_ECHO : ICMP6_ECHO_REQUEST; /* the kernel fills the id */
    rc = sendto(fd, pkt, sizeof(pkt), 0, sa, len) < 0 ? errno : 0;
    if (rc == 0) {
      /* A packet filter may drop the echo while sendto() still reports success (ICMPv6 ping
       * sockets do not pass netfilter's verdict up): say whether a reply came (2 s bound). */
      struct timeval tv = {2, 0};
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      unsigned char buf[64];
      fprintf(out, "reply=%s\n", recv(fd, buf, sizeof(buf), 0) > 0 ? "OK" : errname(errno));
    }
  } else if (strcmp(op, "tcp") == 0) {
    fd = socket(family, SOCK_STREAM, 0);
    if (fd < 0) return errno;
    rc = connect(fd, sa, len) != 0 ? errno : 0;
  } else if (strcmp(op, "mptcp") == 0) {
    fd = socket(family, SOCK_STREAM, 262 /* IPPROTO_MPTCP */);
    if (fd < 0) return errno;
    rc = connect(fd, sa, len) != 0 ? errno : 0;
  } else if (strcmp(op, "tcp-fastopen") == 0) {
    fd = socket(family, SOCK_STREAM, 0);
    if (fd < 0) return errno;
    rc = sendto(fd, data, sizeof(data), MSG_FASTOPEN, sa, len) < 0 ? errno : 0;
  } else if (strcmp(op, "udp-connect") == 0) {
    fd = socket(family, SOCK_DGRAM, 0);
    if (fd < 0) return errno;
    rc = connect(fd, sa, len) != 0 ? errno : 0;
    if (rc == 0) rc = send(fd, data, sizeof(data), 0) < 0 ? errno : 0;
  } else if (strcmp(op, "udp-sendto") == 0) {
    fd = socket(family, SOCK_DGRAM, 0);
    if (fd < 0) return errno;
    if (via_addr) {
      struct sockaddr_storage vs;
      socklen_t vlen = 0;
      if (make_addr(via_addr, via_port, &vs, &vlen) != family) return EINVAL;
      int err = connect(fd, (struct sockaddr*)&vs, vlen) != 0 ? errno : 0;
      fprintf(out, "via=%s\n", errname(err));
      if (err) return err;
    }
    rc = sendto(fd, data, sizeof(data), 0, sa, len) < 0 ? errno : 0;
  } else if (strcmp(op, "udp-sendmsg") == 0) {
    fd = socket(family, SOCK_DGRAM, 0);
    if (fd < 0) return errno;
    struct iovec iov = {data, sizeof(data)};
    struct msghdr m = {.msg_name = sa, .msg_namelen = len, .msg_iov = &iov, .msg_iovlen = 1};
    rc = sendmsg(fd, &m, 0) < 0 ? errno : 0;
  } else if (strcmp(op, "udp-sendmmsg") == 0) {
    fd = socket(family, SOCK_DGRAM, 0);
    if (fd < 0) return errno;
    struct iovec iov = {data, sizeof(data)};
    struct mmsghdr mm[2];
    memset(mm, 0, sizeof(mm));
    for (int i = 0; i < 2; i++) {
      mm[i].msg_hdr.msg_name = sa;
      mm[i].msg_hdr.msg_namelen = len;
      mm[i].msg_hdr.msg_iov = &iov;
      mm[i].msg_hdr.msg_iovlen = 1;
    }
    int n = sendmmsg(fd, mm, 2, 0);
    rc = n < 0 ? errno : (n == 2 ? 0 : EAGAIN);
  } else if (strcmp(op, "tcp-serve") == 0) {
    /* Inbound: listen on ADDR:PORT, accept one connection and write to it. */
    int lfd = socket(family, SOCK_STREAM, 0);
    if (lfd < 0) return errno;
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lfd, sa, len) != 0 || listen(lfd, 1) != 0) {
      rc = errno;
      close(lfd);
      return rc;
    }
    fd = accept(lfd, NULL, NULL);
    rc = fd < 0 ? errno : (send(fd, data, sizeof(data), MSG_NOSIGNAL) < 0 ? errno : 0);
    close(lfd);
  } else if (strcmp(op, "uring-connect") == 0) {
#ifdef ACP_HAVE_LIBURING
    struct io_uring ring;
    int r = io_uring_queue_init(4, &ring, 0);
    if (r < 0) return -r;
    fd = socket(family, SOCK_STREAM, 0);
    if (fd < 0) {
      rc = errno;
    } else {
      struct io_uring_sqe* sqe = io_uring_get_sqe(&ring);
      io_uring_prep_connect(sqe, fd, sa, len);
      struct io_uring_cqe* cqe = NULL;
      r = io_uring_submit(&ring);
      if (r < 0)
        rc = -r;
      else if ((r = io_uring_wait_cqe(&ring, &cqe)) < 0)
        rc = -r;
      else {
        rc = cqe->res < 0 ? -cqe->res : 0;
        io_uring_cqe_seen(&ring, cqe);
      }
    }
    io_uring_queue_exit(&ring);
#else
    return UNSUPPORTED;
#endif
  } else {
    return EINVAL;
  }
  if (fd >= 0) close(fd);
  return rc;
}

static void print_cgroup(void) {
  FILE* f = fopen("/proc/self/cgroup", "r");
  char line[4096];
  if (!f) return;
  while (fgets(line, sizeof(line), f))
    if (strncmp(line, "0::", 3) == 0) {
      fprintf(out, "cgroup=%s", line + 3);
      break;
    }
  fclose(f);
}

static struct timespec t0; /* --mkcg's mkdir, else the start of the attempts */
static long repeat_ms;
static int stop_on_ok;

static long us_since_t0(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (now.tv_sec - t0.tv_sec) * 1000000L + (now.tv_nsec - t0.tv_nsec) / 1000L;
}

/* --mkcg: mkdir -p DIR, then write the own pid into DIR/cgroup.procs. */
static int make_and_enter_cgroup(const char* dir) {
  char path[4096];
  snprintf(path, sizeof(path), "%s", dir);
  for (char* p = path + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(path, 0755) != 0 && errno != EEXIST) return errno;
    *p = '/';
  }
  if (mkdir(path, 0755) != 0 && errno != EEXIST) return errno;
  char procs[4200];
  snprintf(procs, sizeof(procs), "%s/cgroup.procs", dir);
  int fd = open(procs, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  int err = write(fd, "0", 1) == 1 ? 0 : errno;
  close(fd);
  return err;
}

static int attempt_repeatedly(const char* op, const char* addr, int port) {
  long attempts = 0, ok = 0, eperm = 0, other = 0, first_ok = -1;
  int err = 0;
  do {
    err = attempt(op, addr, port);
    attempts++;
    if (err == 0) {
      ok++;
      if (first_ok < 0) first_ok = us_since_t0();
    } else if (err == EPERM) {
      eperm++;
    } else {
      other++;
    }
  } while (!(stop_on_ok && ok > 0) && us_since_t0() < repeat_ms * 1000L);
  fprintf(out, "attempts=%ld\nok=%ld\neperm=%ld\nother=%ld\nfirst_ok_us=%ld\n", attempts, ok,
          eperm, other, first_ok);
  return err;
}

static int report(const char* op, const char* addr, int port) {
  fprintf(out, "pid=%d\n", (int)getpid());
  print_cgroup();
  int err = repeat_ms > 0 ? attempt_repeatedly(op, addr, port) : attempt(op, addr, port);
  fprintf(out, "result=%s\n", errname(err));
  fflush(out);
  return err == 0 ? 0 : err == UNSUPPORTED ? 3 : 1;
}

static int wait_child(pid_t pid) {
  int st = 0;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) return 1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

int main(int argc, char** argv) {
  int depth = 0;
  const char *daemon_file = NULL, *escape = NULL, *mkcg = NULL;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int i = 1;
  out = stdout;
  for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
    if (strncmp(argv[i], "--fork=", 7) == 0)
      depth = atoi(argv[i] + 7);
    else if (strncmp(argv[i], "--daemon=", 9) == 0)
      daemon_file = argv[i] + 9;
    else if (strncmp(argv[i], "--escape=", 9) == 0)
      escape = argv[i] + 9;
    else if (strncmp(argv[i], "--mkcg=", 7) == 0)
      mkcg = argv[i] + 7;
    else if (strncmp(argv[i], "--repeat-ms=", 12) == 0)
      repeat_ms = atol(argv[i] + 12);
    else if (strcmp(argv[i], "--stop-on-ok") == 0)
      stop_on_ok = 1;
    else if (strncmp(argv[i], "--via=", 6) == 0) {
      char* comma = strrchr(argv[i], ',');
      if (!comma) return 2;
      *comma = 0;
      via_addr = argv[i] + 6;
      via_port = atoi(comma + 1);
    } else
      return 2;
  }
  if (argc - i != 3) {
    fprintf(stderr,
            "usage: %s [--fork=N] [--daemon=FILE] [--escape=PROCS] [--via=A,P] [--mkcg=DIR] "
            "[--repeat-ms=N [--stop-on-ok]] OP ADDR PORT\n",
            argv[0]);
    return 2;
  }
  const char *op = argv[i], *addr = argv[i + 1];
  int port = atoi(argv[i + 2]);
  alarm(20); /* never hang a test run */

  if (mkcg) {
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int err = make_and_enter_cgroup(mkcg);
    fprintf(out, "mkcg=%s\n", errname(err));
    if (err) return 1;
  }

  if (escape) {
    int fd = open(escape, O_WRONLY | O_CLOEXEC);
    int err = fd < 0 ? errno : (write(fd, "0", 1) == 1 ? 0 : errno);
    if (fd >= 0) close(fd);
    fprintf(out, "escape=%s\n", errname(err));
  }

  for (int level = 0; level < depth; level++) {
    fflush(out);
    pid_t pid = fork();
    if (pid < 0) return 1;
    if (pid > 0) return wait_child(pid);
  }

  if (daemon_file) {
    pid_t starter = getpid();
    int p[2];
    if (pipe(p) != 0) return 1;
    fflush(out);
    pid_t pid = fork();
    if (pid < 0) return 1;
    if (pid > 0) { /* the starter: learn the daemon's pid, then exit at once */
      close(p[1]);
      pid_t daemon_pid = 0;
      if (read(p[0], &daemon_pid, sizeof(daemon_pid)) != sizeof(daemon_pid)) return 1;
      fprintf(out, "daemon=%d\n", (int)daemon_pid);
      wait_child(pid);
      return 0;
    }
    close(p[0]);
    setsid();
    pid_t pid2 = fork();
    if (pid2 < 0) _exit(1);
    if (pid2 > 0) _exit(0); /* the middle: leave the daemon orphaned */
    pid_t me = getpid();
    (void)!write(p[1], &me, sizeof(me));
    close(p[1]);
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
      dup2(devnull, 0);
      dup2(devnull, 1);
      dup2(devnull, 2);
    }
    /* Wait (at most ~10 s) until the starter is gone: the attempt then comes from a process
     * whose whole ancestry in the session has exited. */
    for (int n = 0; n < 1000 && kill(starter, 0) == 0; n++) {
      struct timespec ts = {0, 10 * 1000 * 1000};
      nanosleep(&ts, NULL);
    }
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", daemon_file);
    out = fopen(tmp, "w");
    if (!out) _exit(1);
    int rc = report(op, addr, port);
    fclose(out);
    rename(tmp, daemon_file); /* the reader sees the whole file or none */
    _exit(rc);
  }
  return report(op, addr, port);
}
