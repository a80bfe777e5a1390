/*
 * libacp_preload.so: the rootless, weak wall (`acp run --backend=preload`).
 *
 * Loaded with LD_PRELOAD, it interposes the libc calls that pick a destination (connect,
 * sendto, sendmsg, sendmmsg and the aliases glibc exports) and lets an internet socket reach
 * only the endpoints listed in ACP_PRELOAD_ALLOW, i.e. the consent proxy:
 *
 *   ACP_PRELOAD_ALLOW="127.0.0.1:8443,[::1]:8443"    (optionally ADDR:PORT/tcp or /udp)
 *
 * parsed once, in the constructor. AF_UNIX is always allowed; AF_INET and AF_INET6 (an
 * IPv4-mapped ::ffff:a.b.c.d compared as a.b.c.d) only to a listed endpoint; every other
 * address family is refused. A missing or unparsable ACP_PRELOAD_ALLOW allows no inet
 * destination at all (fail closed).
 *
 * A refused call returns -1 with errno EPERM: the errno the BPF and iptables walls give, and
 * the one connect(2) documents for "a local firewall rule", so an agent sees the same failure
 * whatever the backend. One line goes to stderr, once per process.
 *
 * What this cannot stop (docs/preload.md): statically linked programs, raw syscalls
 * (syscall(2), inline asm, io_uring), a process that drops LD_PRELOAD from its children's
 * environment, set-user-ID programs (the loader ignores LD_PRELOAD for them), and glibc's own
 * internal calls (the stub resolver sends DNS queries through hidden aliases). That is why
 * `acp status` reports this mode as weak isolation.
 *
 * The interposed functions run in signal handlers and between fork and exec in other
 * programs, so after the constructor they only read immutable state and use async-signal-safe
 * calls (getpeername, getsockopt, getpid, write).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define ACP_EXPORT __attribute__((visibility("default")))
#define MAX_ALLOWED 64
/* sockaddr_in6 without sin6_scope_id (RFC 2133): the shortest the kernel accepts. */
#define SIN6_LEN_RFC2133 24

enum { PROTO_ANY = 0, PROTO_TCP = SOCK_STREAM, PROTO_UDP = SOCK_DGRAM };

struct allowed {
  uint8_t addr[16]; /* IPv6 form; IPv4 as ::ffff:a.b.c.d */
  uint16_t port;    /* host order */
  int proto;        /* PROTO_ANY, or the socket type it is limited to */
};

typedef int (*connect_fn)(int, const struct sockaddr*, socklen_t);
typedef ssize_t (*sendto_fn)(int, const void*, size_t, int, const struct sockaddr*, socklen_t);
typedef ssize_t (*sendmsg_fn)(int, const struct msghdr*, int);
typedef int (*sendmmsg_fn)(int, struct mmsghdr*, unsigned int, int);

static struct allowed allow_list[MAX_ALLOWED];
static int allow_count;
static int allow_valid; /* 0: unset or unparsable, nothing inet is allowed */
static connect_fn real_connect;
static sendto_fn real_sendto;
static sendmsg_fn real_sendmsg;
static sendmmsg_fn real_sendmmsg;
static int init_state; /* 0 not yet, 1 in progress, 2 done */
static pid_t warned_pid;

/* ---- parsing (constructor only) ---- */

static int parse_entry(const char* s, size_t n, struct allowed* out) {
  char buf[96];
  if (n == 0 || n >= sizeof(buf)) return -1;
  memcpy(buf, s, n);
  buf[n] = '\0';
  memset(out, 0, sizeof(*out));

  char* slash = strrchr(buf, '/');
  if (slash) {
    if (strcmp(slash, "/tcp") == 0)
      out->proto = PROTO_TCP;
    else if (strcmp(slash, "/udp") == 0)
      out->proto = PROTO_UDP;
    else
      return -1;
    *slash = '\0';
  }
  char* host = buf;
  char* port;
  if (buf[0] == '[') {
    char* close = strchr(buf, ']');
    if (!close || close[1] != ':') return -1;
    *close = '\0';
    host = buf + 1;
    port = close + 2;
    struct in6_addr a6;
    if (inet_pton(AF_INET6, host, &a6) != 1) return -1;
    memcpy(out->addr, &a6, 16);
  } else {
    char* colon = strrchr(buf, ':');
    if (!colon) return -1;
    *colon = '\0';
    port = colon + 1;
    struct in_addr a4;
    if (inet_pton(AF_INET, host, &a4) != 1) return -1;
    out->addr[10] = 0xff;
    out->addr[11] = 0xff;
    memcpy(out->addr + 12, &a4, 4);
  }
  if (*port == '\0' || strlen(port) > 5) return -1;
  unsigned long p = 0;
  for (const char* c = port; *c; c++) {
    if (*c < '0' || *c > '9') return -1;
    p = p * 10 + (unsigned long)(*c - '0');
  }
  if (p == 0 || p > 65535) return -1;
  out->port = (uint16_t)p;
  return 0;
}

static void parse_allow(const char* env) {
  allow_count = 0;
  allow_valid = 0;
  if (!env || !*env) return;
  const char* s = env;
  int count = 0;
  for (;;) {
    const char* end = strchr(s, ',');
    size_t n = end ? (size_t)(end - s) : strlen(s);
    while (n > 0 && (*s == ' ' || *s == '\t')) s++, n--;
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    if (count == MAX_ALLOWED || parse_entry(s, n, &allow_list[count]) != 0) {
      allow_count = 0;
      return; /* one bad entry invalidates the whole list: fail closed */
    }
    count++;
    if (!end) break;
    s = end + 1;
  }
  allow_count = count;
  allow_valid = 1;
}

static void write_str(const char* s) {
  size_t n = strlen(s);
  while (n > 0) {
    ssize_t w = write(STDERR_FILENO, s, n);
    if (w <= 0) {
      if (w < 0 && errno == EINTR) continue;
      return;
    }
    s += w;
    n -= (size_t)w;
  }
}

static void init_once(void) {
  int expected = 0;
  if (__atomic_compare_exchange_n(&init_state, &expected, 1, 0, __ATOMIC_ACQ_REL,
                                  __ATOMIC_ACQUIRE)) {
    real_connect = (connect_fn)dlsym(RTLD_NEXT, "connect");
    real_sendto = (sendto_fn)dlsym(RTLD_NEXT, "sendto");
    real_sendmsg = (sendmsg_fn)dlsym(RTLD_NEXT, "sendmsg");
    real_sendmmsg = (sendmmsg_fn)dlsym(RTLD_NEXT, "sendmmsg");
    const char* env = getenv("ACP_PRELOAD_ALLOW");
    parse_allow(env);
    if (env && !allow_valid) {
      write_str(
          "acp-preload: ACP_PRELOAD_ALLOW is not a list of ADDR:PORT; "
          "every internet destination is blocked\n");
    }
    __atomic_store_n(&init_state, 2, __ATOMIC_RELEASE);
    return;
  }
  /* Another thread is initializing (only possible before the constructor ran). */
  while (__atomic_load_n(&init_state, __ATOMIC_ACQUIRE) != 2) sched_yield();
}

static inline void ensure_init(void) {
  if (__builtin_expect(__atomic_load_n(&init_state, __ATOMIC_ACQUIRE) != 2, 0)) init_once();
}

__attribute__((constructor)) static void acp_preload_init(void) {
  ensure_init();
}

/* ---- the decision (async-signal-safe) ---- */

enum verdict { ALLOW, BLOCK };

struct target {
  int family;
  uint8_t addr[16];
  uint16_t port;
};

static int socket_type(int fd) {
  int type = 0;
  socklen_t len = sizeof(type);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) return -1;
  return type;
}

/* Fills `t` from a socket address; returns ALLOW for families that need no list. */
static enum verdict judge(int fd, const struct sockaddr* sa, socklen_t len, struct target* t) {
  memset(t, 0, sizeof(*t));
  if (!sa || len < (socklen_t)sizeof(sa_family_t)) {
    t->family = -1;
    return BLOCK;
  }
  t->family = sa->sa_family;
  if (sa->sa_family == AF_UNIX) return ALLOW;
  if (sa->sa_family == AF_INET) {
    if (len < (socklen_t)sizeof(struct sockaddr_in)) return BLOCK;
    const struct sockaddr_in* s4 = (const struct sockaddr_in*)sa;
    t->addr[10] = 0xff;
    t->addr[11] = 0xff;
    memcpy(t->addr + 12, &s4->sin_addr, 4);
    t->port = ntohs(s4->sin_port);
  } else if (sa->sa_family == AF_INET6) {
    if (len < (socklen_t)SIN6_LEN_RFC2133) return BLOCK;
    const struct sockaddr_in6* s6 = (const struct sockaddr_in6*)sa;
    memcpy(t->addr, &s6->sin6_addr, 16);
    t->port = ntohs(s6->sin6_port);
  } else {
    return BLOCK; /* AF_PACKET, AF_NETLINK, ...: nothing but the proxy leaves */
  }
  if (!allow_valid) return BLOCK;
  int type = -2; /* looked up only when an entry is limited to one protocol */
  for (int i = 0; i < allow_count; i++) {
    const struct allowed* a = &allow_list[i];
    if (a->port != t->port || memcmp(a->addr, t->addr, 16) != 0) continue;
    if (a->proto == PROTO_ANY) return ALLOW;
    if (type == -2) type = socket_type(fd);
    if (type == a->proto) return ALLOW;
  }
  return BLOCK;
}

static char* put_str(char* p, char* end, const char* s) {
  while (*s && p < end) *p++ = *s++;
  return p;
}

static char* put_uint(char* p, char* end, unsigned v) {
  char tmp[12];
  int n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v && n < (int)sizeof(tmp));
  while (n > 0 && p < end) *p++ = tmp[--n];
  return p;
}

/* RFC 5952 text of an IPv6 address: lowercase, the longest run of zero groups as "::". */
static char* put_ip6(char* p, char* end, const uint8_t* a) {
  static const char hex[] = "0123456789abcdef";
  unsigned g[8];
  for (int i = 0; i < 8; i++) g[i] = (unsigned)(a[2 * i] << 8 | a[2 * i + 1]);
  int best = -1, best_len = 1, cur = -1, cur_len = 0;
  for (int i = 0; i < 8; i++) {
    if (g[i] == 0) {
      if (cur < 0) cur = i, cur_len = 0;
      if (++cur_len > best_len) best = cur, best_len = cur_len;
    } else {
      cur = -1;
    }
  }
  for (int i = 0; i < 8; i++) {
    if (i == best) {
      p = put_str(p, end, "::");
      i += best_len - 1;
      continue;
    }
    if (i > 0 && i != best + best_len) p = put_str(p, end, ":");
    int started = 0;
    for (int shift = 12; shift >= 0; shift -= 4) {
      unsigned d = (g[i] >> shift) & 0xf;
      if (d || started || shift == 0) {
        if (p < end) *p++ = hex[d];
        started = 1;
      }
    }
  }
  return p;
}

static int is_mapped(const uint8_t* a) {
  static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return memcmp(a, prefix, 12) == 0;
}

/* Sets errno to EPERM and says so on stderr, once per process (fork makes a new one). */
static void refuse(const char* call, const struct target* t) {
  pid_t me = getpid();
  if (__atomic_exchange_n(&warned_pid, me, __ATOMIC_ACQ_REL) != me) {
    char line[256];
    char* p = line;
    char* end = line + sizeof(line) - 1;
    p = put_str(p, end, "acp-preload: blocked ");
    p = put_str(p, end, call);
    p = put_str(p, end, " to ");
    if (t->family == AF_INET || t->family == AF_INET6) {
      if (is_mapped(t->addr)) {
        for (int i = 12; i < 16; i++) {
          p = put_uint(p, end, t->addr[i]);
          if (i < 15) p = put_str(p, end, ".");
        }
      } else {
        p = put_str(p, end, "[");
        p = put_ip6(p, end, t->addr);
        p = put_str(p, end, "]");
      }
      p = put_str(p, end, ":");
      p = put_uint(p, end, t->port);
    } else if (t->family < 0) {
      p = put_str(p, end, "an unknown address");
    } else {
      p = put_str(p, end, "address family ");
      p = put_uint(p, end, (unsigned)t->family);
    }
    p = put_str(p, end,
                allow_valid ? " (only the consent proxy is allowed)"
                            : " (ACP_PRELOAD_ALLOW unset or invalid: nothing is allowed)");
    *p++ = '\n';
    *p = '\0';
    int saved = errno;
    write_str(line);
    errno = saved;
  }
  errno = EPERM;
}

/* A send with no address goes to the socket's peer: judge that. An unconnected socket has no
 * peer and nothing to send to; the real call then fails on its own. */
static enum verdict judge_peer(int fd, struct target* t) {
  struct sockaddr_storage peer;
  socklen_t len = sizeof(peer);
  if (getpeername(fd, (struct sockaddr*)&peer, &len) != 0) {
    if (errno == ENOTCONN || errno == ENOTSOCK || errno == EBADF) return ALLOW;
    memset(t, 0, sizeof(*t));
    t->family = -1;
    return BLOCK;
  }
  return judge(fd, (const struct sockaddr*)&peer, len, t);
}

static enum verdict judge_msg(int fd, const struct msghdr* msg, struct target* t) {
  if (!msg || !msg->msg_name || msg->msg_namelen == 0) return judge_peer(fd, t);
  return judge(fd, (const struct sockaddr*)msg->msg_name, msg->msg_namelen, t);
}

/* ---- the interposed calls ---- */

static int acp_connect(int fd, const struct sockaddr* addr, socklen_t len) {
  ensure_init();
  struct target t;
  /* AF_UNSPEC dissolves a datagram socket's association; it sends nothing. */
  int unspec = addr && len >= (socklen_t)sizeof(sa_family_t) && addr->sa_family == AF_UNSPEC;
  if (!unspec && judge(fd, addr, len, &t) == BLOCK) {
    refuse("connect", &t);
    return -1;
  }
  if (!real_connect) return errno = ENOSYS, -1;
  return real_connect(fd, addr, len);
}

static ssize_t acp_sendto(int fd, const void* buf, size_t n, int flags, const struct sockaddr* addr,
                          socklen_t len) {
  ensure_init();
  struct target t;
  enum verdict v = (addr && len > 0) ? judge(fd, addr, len, &t) : judge_peer(fd, &t);
  if (v == BLOCK) {
    refuse("sendto", &t);
    return -1;
  }
  if (!real_sendto) return errno = ENOSYS, -1;
  return real_sendto(fd, buf, n, flags, addr, len);
}

static ssize_t acp_sendmsg(int fd, const struct msghdr* msg, int flags) {
  ensure_init();
  struct target t;
  if (judge_msg(fd, msg, &t) == BLOCK) {
    refuse("sendmsg", &t);
    return -1;
  }
  if (!real_sendmsg) return errno = ENOSYS, -1;
  return real_sendmsg(fd, msg, flags);
}

/* Messages go out in order, and the first refused one ends the batch as a kernel error would:
 * the ones before it are sent and counted; a refused first message makes the call fail. */
static int acp_sendmmsg(int fd, struct mmsghdr* vec, unsigned int vlen, int flags) {
  ensure_init();
  struct target t, peer_t;
  enum verdict peer = ALLOW;
  int peer_judged = 0;
  unsigned int ok = 0;
  for (; vec && ok < vlen; ok++) {
    const struct msghdr* m = &vec[ok].msg_hdr;
    enum verdict v;
    if (!m->msg_name || m->msg_namelen == 0) {
      if (!peer_judged) peer = judge_peer(fd, &peer_t), peer_judged = 1;
      v = peer;
      t = peer_t;
    } else {
      v = judge(fd, (const struct sockaddr*)m->msg_name, m->msg_namelen, &t);
    }
    if (v == BLOCK) break;
  }
  if (vec && ok < vlen) {
    refuse("sendmmsg", &t);
    if (ok == 0) return -1;
    vlen = ok;
  }
  if (!real_sendmmsg) return errno = ENOSYS, -1;
  return real_sendmmsg(fd, vec, vlen, flags);
}

/* The names programs link against: the public ones and the aliases glibc also exports
 * (`nm -D libc.so.6`: __connect, __sendmmsg; __sendto and __sendmsg exist in some builds). */
ACP_EXPORT int connect(int fd, const struct sockaddr* addr, socklen_t len) {
  return acp_connect(fd, addr, len);
}
ACP_EXPORT int __connect(int fd, const struct sockaddr* addr, socklen_t len) {
  return acp_connect(fd, addr, len);
}
ACP_EXPORT ssize_t sendto(int fd, const void* buf, size_t n, int flags, const struct sockaddr* addr,
                          socklen_t len) {
  return acp_sendto(fd, buf, n, flags, addr, len);
}
ACP_EXPORT ssize_t __sendto(int fd, const void* buf, size_t n, int flags,
                            const struct sockaddr* addr, socklen_t len) {
  return acp_sendto(fd, buf, n, flags, addr, len);
}
ACP_EXPORT ssize_t sendmsg(int fd, const struct msghdr* msg, int flags) {
  return acp_sendmsg(fd, msg, flags);
}
ACP_EXPORT ssize_t __sendmsg(int fd, const struct msghdr* msg, int flags) {
  return acp_sendmsg(fd, msg, flags);
}
ACP_EXPORT int sendmmsg(int fd, struct mmsghdr* vec, unsigned int vlen, int flags) {
  return acp_sendmmsg(fd, vec, vlen, flags);
}
ACP_EXPORT int __sendmmsg(int fd, struct mmsghdr* vec, unsigned int vlen, int flags) {
  return acp_sendmmsg(fd, vec, vlen, flags);
}
