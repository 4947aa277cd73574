/*
 * echo-server: single-threaded epoll TCP echo server for `npm run bench` (connections/s).
 *
 *   echo-server [--port N] [--addrs K] [--max-seconds S]
 *
 * Listens on 127.0.0.1:N (0 = any free port), and with --addrs K on the same port of 127.0.0.2 ..
 * 127.0.0.K too (more destination addresses = more loopback 4-tuples before ports run out; see
 * cps.c). Prints "port N" on stdout once listening, echoes
 * every byte back, and closes a connection once the peer has closed and all its bytes went back.
 * Exits on SIGTERM/SIGINT, when its parent dies, or after --max-seconds (default 900), so a
 * crashed bench never leaves it behind.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK 16384
#define MAX_EVENTS 256
#define MAX_ADDRS 64

/* Bytes read but not yet written back (only when the send buffer was full). */
struct conn {
  char *pending;
  size_t len;
  size_t off;
};

static volatile sig_atomic_t stop_requested = 0;
static struct conn *conns;
static int max_fds;
static int ep;

static void on_signal(int sig) {
  (void)sig;
  stop_requested = 1;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void drop(int fd) {
  epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
  close(fd);
  free(conns[fd].pending);
  memset(&conns[fd], 0, sizeof conns[fd]);
}

static void watch(int fd, uint32_t events, int op) {
  struct epoll_event ev = {.events = events, .data.fd = fd};
  if (epoll_ctl(ep, op, fd, &ev) != 0 && op == EPOLL_CTL_ADD) close(fd);
}

/* Writes what is pending; 1 = all out, 0 = would block, -1 = connection broken. */
static int flush_pending(int fd) {
  struct conn *c = &conns[fd];
  while (c->off < c->len) {
    ssize_t n = send(fd, c->pending + c->off, c->len - c->off, MSG_NOSIGNAL);
    if (n > 0) {
      c->off += (size_t)n;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return 0;
    } else {
      return -1;
    }
  }
  free(c->pending);
  c->pending = NULL;
  c->len = c->off = 0;
  return 1;
}

static void on_readable(int fd) {
  static char buf[READ_CHUNK];
  struct conn *c = &conns[fd];
  for (int rounds = 0; rounds < 16; rounds++) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n == 0) {
      drop(fd);
      return;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) drop(fd);
      return;
    }
    ssize_t w = send(fd, buf, (size_t)n, MSG_NOSIGNAL);
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      drop(fd);
      return;
    }
    if (w < 0) w = 0;
    if (w < n) {
      /* the peer is not reading: keep the rest and stop reading until it is out */
      c->len = (size_t)(n - w);
      c->off = 0;
      c->pending = malloc(c->len);
      if (c->pending == NULL) {
        drop(fd);
        return;
      }
      memcpy(c->pending, buf + w, c->len);
      watch(fd, EPOLLOUT, EPOLL_CTL_MOD);
      return;
    }
    if (n < (ssize_t)sizeof buf) return;
  }
}

static void on_writable(int fd) {
  int r = flush_pending(fd);
  if (r < 0) drop(fd);
  else if (r > 0) watch(fd, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_MOD);
}

static void accept_all(int lfd) {
  for (int i = 0; i < 1024; i++) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    if (fd >= max_fds) {
      close(fd);
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    memset(&conns[fd], 0, sizeof conns[fd]);
    watch(fd, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_ADD);
  }
}

static int is_listener(int fd, const int *lfds, int n) {
  for (int i = 0; i < n; i++)
    if (lfds[i] == fd) return 1;
  return 0;
}

int main(int argc, char **argv) {
  int port = 0;
  int addrs = 1;
  double max_seconds = 900;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) port = atoi(argv[++i]);
    else if (strcmp(argv[i], "--max-seconds") == 0 && i + 1 < argc) max_seconds = atof(argv[++i]);
    else if (strcmp(argv[i], "--addrs") == 0 && i + 1 < argc) addrs = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: echo-server [--port N] [--addrs K] [--max-seconds S]\n");
      return 2;
    }
  }
  if (addrs < 1 || addrs > MAX_ADDRS) {
    fprintf(stderr, "echo-server: --addrs must be 1..%d\n", MAX_ADDRS);
    return 2;
  }
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  signal(SIGPIPE, SIG_IGN);

  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max > 65536 ? 65536 : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  max_fds = (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536) ? (int)rl.rlim_cur : 65536;
  conns = calloc((size_t)max_fds, sizeof *conns);
  if (conns == NULL) return 1;

  ep = epoll_create1(EPOLL_CLOEXEC);
  int lfds[MAX_ADDRS];
  for (int i = 0; i < addrs; i++) {
    lfds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfds[i], SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK + (uint32_t)i);
    if (bind(lfds[i], (struct sockaddr *)&addr, sizeof addr) != 0 || listen(lfds[i], 4096) != 0) {
      perror("echo-server: bind/listen");
      return 1;
    }
    if (port == 0) {
      /* the first address picked the port; the others must take the same one */
      socklen_t alen = sizeof addr;
      getsockname(lfds[i], (struct sockaddr *)&addr, &alen);
      port = ntohs(addr.sin_port);
    }
    struct epoll_event lev = {.events = EPOLLIN, .data.fd = lfds[i]};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfds[i], &lev);
  }
  printf("port %d\n", port);
  fflush(stdout);

  double deadline = now_s() + max_seconds;
  struct epoll_event events[MAX_EVENTS];
  while (!stop_requested && now_s() < deadline) {
    int n = epoll_wait(ep, events, MAX_EVENTS, 200);
    for (int i = 0; i < n; i++) {
      int fd = events[i].data.fd;
      uint32_t e = events[i].events;
      if (is_listener(fd, lfds, addrs)) {
        accept_all(fd);
      } else if (e & EPOLLOUT) {
        on_writable(fd);
      } else if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        on_readable(fd);
      }
    }
  }
  return 0;
}
