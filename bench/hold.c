/*
 * hold: opens N proxied connections and keeps them open, for `npm run bench`'s memory and
 * held-connections rows.
 *
 *   hold --target IP:PORT --socks IP:PORT --count N [--sources K] [--timeout-ms T]
 *
 * One connection: TCP connect to the proxy, the no-auth greeting and its reply, CONNECT to the
 * target (an echo server) by IPv4 and its reply, one byte out and its echo back: the connection is
 * proxied end to end. Connections are opened one after another, blocking, each step bounded by T ms.
 * Client sockets are bound in turn to 127.0.0.1 .. 127.0.0.K. When all N are tried it prints one
 * JSON line {"held":H,"errors":{...}} and keeps the connections open until it is signalled (or its
 * parent dies). RLIMIT_NOFILE is raised to the hard limit first.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static int parse_addr(const char *s, struct sockaddr_in *out) {
  char host[64];
  const char *colon = strrchr(s, ':');
  if (!colon || colon - s >= (long)sizeof host) return -1;
  memcpy(host, s, colon - s);
  host[colon - s] = 0;
  memset(out, 0, sizeof *out);
  out->sin_family = AF_INET;
  out->sin_port = htons((unsigned short)atoi(colon + 1));
  return inet_pton(AF_INET, host, &out->sin_addr) == 1 ? 0 : -1;
}

static int full_write(int fd, const void *buf, size_t n) {
  const char *p = buf;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int full_read(int fd, void *buf, size_t n) {
  char *p = buf;
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r <= 0) return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

enum { E_SOCKET, E_CONNECT, E_GREETING, E_REPLY, E_ECHO, E_KINDS };
static const char *kind_names[E_KINDS] = {"socket", "connect", "greeting", "socks_reply", "echo"};

int main(int argc, char **argv) {
  struct sockaddr_in target, socks;
  int have_target = 0, have_socks = 0, count = 0, sources = 1, timeout_ms = 3000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--target")) have_target = parse_addr(argv[i + 1], &target) == 0;
    else if (!strcmp(argv[i], "--socks")) have_socks = parse_addr(argv[i + 1], &socks) == 0;
    else if (!strcmp(argv[i], "--count")) count = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--sources")) sources = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--timeout-ms")) timeout_ms = atoi(argv[i + 1]);
  }
  if (!have_target || !have_socks || count <= 0 || count > 100000 || sources < 1 || sources > 254) {
    fprintf(stderr, "usage: hold --target IP:PORT --socks IP:PORT --count N [--sources K] [--timeout-ms T]\n");
    return 2;
  }
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  int *fds = calloc((size_t)count, sizeof(int));
  long errors[E_KINDS] = {0};
  int held = 0;
  unsigned char req[10] = {5, 1, 0, 1};
  memcpy(req + 4, &target.sin_addr, 4);
  memcpy(req + 8, &target.sin_port, 2);
  for (int i = 0; i < count; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
      errors[E_SOCKET]++;
      continue;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in src = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001u + (unsigned)(i % sources))};
    bind(fd, (struct sockaddr *)&src, sizeof src);
    unsigned char buf[16];
    int kind = -1;
    if (connect(fd, (struct sockaddr *)&socks, sizeof socks) != 0) kind = E_CONNECT;
    else if (full_write(fd, "\x05\x01\x00", 3) || full_read(fd, buf, 2) || buf[0] != 5 || buf[1] != 0) kind = E_GREETING;
    else if (full_write(fd, req, sizeof req) || full_read(fd, buf, 10) || buf[1] != 0) kind = E_REPLY;
    else if (full_write(fd, "x", 1) || full_read(fd, buf, 1) || buf[0] != 'x') kind = E_ECHO;
    if (kind >= 0) {
      errors[kind]++;
      close(fd);
      continue;
    }
    fds[held++] = fd;
  }
  printf("{\"held\":%d,\"errors\":{", held);
  for (int k = 0, first = 1; k < E_KINDS; k++) {
    if (!errors[k]) continue;
    printf("%s\"%s\":%ld", first ? "" : ",", kind_names[k], errors[k]);
    first = 0;
  }
  printf("}}\n");
  fflush(stdout);
  for (;;) pause();
}
