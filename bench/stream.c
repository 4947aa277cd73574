/*
 * stream: single-stream throughput tool for `npm run bench`, used only when iperf3 through
 * proxychains4 is not available or fails.
 *
 *   stream source [--port N] [--max-seconds S]
 *       Listens on 127.0.0.1:N (0 = any free port), prints "port N", and writes zeros to each
 *       accepted connection (one at a time) until the peer closes.
 *   stream sink --target IP:PORT [--socks IP:PORT] [--seconds S] [--omit S]
 *       Connects (through a SOCKS5 proxy when given: no-auth greeting, CONNECT by IPv4), reads for
 *       omit+S seconds, and prints JSON with the bytes and rate of the last S seconds.
 * Blocking sockets with receive/send timeouts, so every call is bounded.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (128 * 1024)

static volatile sig_atomic_t stop_requested = 0;

static void on_signal(int sig) {
  (void)sig;
  stop_requested = 1;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int parse_addr(const char *text, struct sockaddr_in *out) {
  char host[64];
  const char *colon = strrchr(text, ':');
  if (colon == NULL || (size_t)(colon - text) >= sizeof host) return -1;
  memcpy(host, text, (size_t)(colon - text));
  host[colon - text] = 0;
  memset(out, 0, sizeof *out);
  out->sin_family = AF_INET;
  int port = atoi(colon + 1);
  if (port <= 0 || port > 65535 || inet_pton(AF_INET, host, &out->sin_addr) != 1) return -1;
  out->sin_port = htons((uint16_t)port);
  return 0;
}

static void set_timeouts(int fd, int seconds) {
  struct timeval tv = {.tv_sec = seconds, .tv_usec = 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static int read_exact(int fd, unsigned char *buf, size_t len) {
  size_t got = 0;
  while (got < len) {
    ssize_t n = recv(fd, buf + got, len - got, 0);
    if (n <= 0) return -1;
    got += (size_t)n;
  }
  return 0;
}

static int run_source(int port, double max_seconds) {
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(lfd, 16) != 0) {
    perror("stream source: bind/listen");
    return 1;
  }
  socklen_t alen = sizeof addr;
  getsockname(lfd, (struct sockaddr *)&addr, &alen);
  printf("port %d\n", ntohs(addr.sin_port));
  fflush(stdout);
  set_timeouts(lfd, 1); /* accept wakes up every second to check the deadline */
  static char buf[CHUNK];
  double deadline = now_s() + max_seconds;
  while (!stop_requested && now_s() < deadline) {
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0) continue;
    set_timeouts(fd, 5);
    while (!stop_requested && now_s() < deadline) {
      if (send(fd, buf, sizeof buf, MSG_NOSIGNAL) <= 0) break;
    }
    close(fd);
  }
  return 0;
}

static int socks_connect(int fd, const struct sockaddr_in *target) {
  unsigned char b[32];
  b[0] = 5, b[1] = 1, b[2] = 0;
  if (send(fd, b, 3, MSG_NOSIGNAL) != 3 || read_exact(fd, b, 2) != 0 || b[0] != 5 || b[1] != 0) return -1;
  b[0] = 5, b[1] = 1, b[2] = 0, b[3] = 1;
  memcpy(b + 4, &target->sin_addr, 4);
  memcpy(b + 8, &target->sin_port, 2);
  if (send(fd, b, 10, MSG_NOSIGNAL) != 10 || read_exact(fd, b, 4) != 0 || b[0] != 5 || b[1] != 0) return -1;
  size_t rest = b[3] == 1 ? 6 : b[3] == 4 ? 18 : 0;
  if (b[3] == 3) {
    if (read_exact(fd, b, 1) != 0) return -1;
    rest = (size_t)b[0] + 2;
  }
  if (rest == 0 || read_exact(fd, b, rest) != 0) return -1;
  return 0;
}

static int run_sink(const struct sockaddr_in *target, const struct sockaddr_in *proxy, double seconds, double omit) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  set_timeouts(fd, 5);
  const struct sockaddr_in *to = proxy ? proxy : target;
  if (connect(fd, (const struct sockaddr *)to, sizeof *to) != 0) {
    perror("stream sink: connect");
    return 1;
  }
  if (proxy && socks_connect(fd, target) != 0) {
    fprintf(stderr, "stream sink: SOCKS5 handshake failed\n");
    return 1;
  }
  static char buf[CHUNK];
  double start = now_s();
  double measure_from = start + omit;
  double end = measure_from + seconds;
  double t0 = 0;
  unsigned long long bytes = 0;
  int measuring = 0;
  double now = start;
  while (!stop_requested && now < end) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    now = now_s();
    if (n <= 0) {
      fprintf(stderr, "stream sink: connection ended early\n");
      return 1;
    }
    if (!measuring && now >= measure_from) {
      measuring = 1;
      t0 = now;
      continue;
    }
    if (measuring) bytes += (unsigned long long)n;
  }
  close(fd);
  double elapsed = now - t0;
  printf("{\"mode\":\"%s\",\"bytes\":%llu,\"seconds\":%.3f,\"bits_per_second\":%.0f}\n", proxy ? "socks5" : "direct",
         bytes, elapsed, elapsed > 0 ? (double)bytes * 8 / elapsed : 0.0);
  return 0;
}

int main(int argc, char **argv) {
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  signal(SIGPIPE, SIG_IGN);
  if (argc < 2) goto usage;
  int port = 0;
  double max_seconds = 900, seconds = 5, omit = 1;
  struct sockaddr_in target, proxy;
  int have_target = 0, have_proxy = 0;
  for (int i = 2; i + 1 < argc; i += 2) {
    const char *a = argv[i], *v = argv[i + 1];
    if (strcmp(a, "--port") == 0) port = atoi(v);
    else if (strcmp(a, "--max-seconds") == 0) max_seconds = atof(v);
    else if (strcmp(a, "--seconds") == 0) seconds = atof(v);
    else if (strcmp(a, "--omit") == 0) omit = atof(v);
    else if (strcmp(a, "--target") == 0 && parse_addr(v, &target) == 0) have_target = 1;
    else if (strcmp(a, "--socks") == 0 && parse_addr(v, &proxy) == 0) have_proxy = 1;
    else goto usage;
  }
  if (argc % 2 != 0) goto usage;
  if (strcmp(argv[1], "source") == 0) return run_source(port, max_seconds);
  if (strcmp(argv[1], "sink") == 0 && have_target && seconds > 0 && seconds <= 600 && omit >= 0 && omit <= 60)
    return run_sink(&target, have_proxy ? &proxy : NULL, seconds, omit);
usage:
  fprintf(stderr, "usage: stream source [--port N] [--max-seconds S]\n"
                  "       stream sink --target IP:PORT [--socks IP:PORT] [--seconds S] [--omit S]\n");
  return 2;
}
