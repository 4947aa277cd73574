/*
 * cps: connections-per-second load generator for `npm run bench`.
 *
 *   cps --target IP:PORT [--socks IP:PORT] [--concurrency N] [--seconds S] [--payload B]
 *       [--timeout-ms T] [--sources K] [--target-addrs K]
 *
 * Keeps N transactions in flight on one epoll loop for S seconds. One transaction:
 *   direct: TCP connect to the target, send B bytes, receive the B-byte echo, close.
 *   socks:  TCP connect to the proxy; send the no-auth greeting and wait for the method reply;
 *           send CONNECT to the target by IPv4 and wait for the reply; then the B-byte echo; close.
 * Prints one JSON object: completed transactions, rate, errors by kind, latency percentiles.
 * Only transactions that finish inside the S seconds count; the ones in flight at the end are
 * dropped. A failing slot waits 1 ms before it starts again, so errors cannot make it spin.
 *
 * --sources K binds the client sockets in turn to 127.0.0.1 .. 127.0.0.K (the port is still picked
 * by connect). Loopback has only ~28k ephemeral ports per destination, and a port in TIME_WAIT can
 * be reused (tcp_tw_reuse) only once it is a second old: with one source address the kernel's port
 * search, not the program under test, sets the pace at ~14k connections/s. More sources spread
 * the 4-tuples without touching any sysctl. --target-addrs K does the same for the far leg: each
 * transaction asks for (directly: connects to) the next of target, target+1, ... target+K-1 (the
 * echo server listens on all of them), so a proxy's outgoing connections spread too.
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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONCURRENCY 1024
#define MAX_PAYLOAD 4096
#define LAT_BUCKETS 200000 /* 1 us each, up to 200 ms; slower ones land in the last bucket */

enum state { S_IDLE, S_CONNECTING, S_SENDING, S_RECEIVING };
enum phase { P_GREETING, P_CONNECT, P_ECHO };

enum err {
  E_ADDR_UNAVAIL, /* EADDRNOTAVAIL at connect: local ports exhausted */
  E_REFUSED,
  E_CONNECT,
  E_RESET,
  E_EOF,
  E_IO,
  E_TIMEOUT,
  E_SOCKS_METHOD,
  E_SOCKS_REPLY,
  E_PROTOCOL, /* extra or wrong bytes */
  E_MISMATCH, /* echo differs from what was sent */
  E_COUNT
};
static const char *err_names[E_COUNT] = {"addr_unavailable", "refused", "connect", "reset", "eof", "io",
                                         "timeout", "socks_method", "socks_reply", "protocol", "echo_mismatch"};

struct slot {
  int fd;
  uint32_t gen;
  enum state state;
  enum phase phase;
  int64_t started_ns;
  int64_t phase_ns; /* when the current phase began: its request's first byte was sent (the greeting: the connect began) */
  int64_t deadline_ns;
  int64_t idle_until_ns;
  unsigned char out[MAX_PAYLOAD];
  size_t out_len, out_off;
  unsigned char in[MAX_PAYLOAD + 300];
  size_t in_len, want;
  unsigned char expect[MAX_PAYLOAD];
  struct sockaddr_in dest; /* this transaction's target */
};

static struct slot *slots;
static int ep;
static int concurrency = 32;
static double seconds = 5;
static int payload = 64;
static int64_t timeout_ns = 3000000000LL;
static int use_socks = 0;
static int sources = 1;
static uint64_t next_source = 0;
static int target_addrs = 1;
static uint64_t next_target = 0;
static struct sockaddr_in target, proxy;
static uint64_t completed = 0;
static uint64_t seq = 0;
static uint64_t errors[E_COUNT];
static uint64_t socks_reply_codes[256];
static uint32_t *latency_us;
/* per phase (greeting, connect, echo): how long from its request to its whole answer, same buckets */
static uint32_t *phase_us[3];
static int64_t latency_max_us = 0;
static int64_t run_end_ns;
static volatile sig_atomic_t interrupted = 0;

static void on_signal(int sig) {
  (void)sig;
  interrupted = 1;
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
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

static void set_interest(struct slot *s, uint32_t events, int op) {
  struct epoll_event ev = {.events = events, .data.u64 = ((uint64_t)(s - slots) << 32) | s->gen};
  epoll_ctl(ep, op, s->fd, &ev);
}

static void close_slot(struct slot *s) {
  if (s->fd >= 0) {
    epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
    close(s->fd);
  }
  s->fd = -1;
  s->gen++;
  s->state = S_IDLE;
}

static void fail(struct slot *s, enum err e, int64_t now) {
  errors[e]++;
  close_slot(s);
  s->idle_until_ns = now + 1000000;
}

static void start_send(struct slot *s, enum phase ph, int64_t now);

static void start_transaction(struct slot *s, int64_t now) {
  s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->fd < 0) {
    fail(s, E_CONNECT, now);
    return;
  }
  int one = 1;
  setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (sources > 1) {
    struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = 0};
    src.sin_addr.s_addr = htonl(INADDR_LOOPBACK + (uint32_t)(next_source++ % (uint64_t)sources));
    /* the port is chosen at connect time, for the whole 4-tuple, instead of at bind */
    setsockopt(s->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (bind(s->fd, (struct sockaddr *)&src, sizeof src) != 0) {
      fail(s, errno == EADDRINUSE || errno == EADDRNOTAVAIL ? E_ADDR_UNAVAIL : E_CONNECT, now);
      return;
    }
  }
  s->started_ns = now;
  s->phase_ns = now;
  s->deadline_ns = now + timeout_ns;
  s->dest = target;
  s->dest.sin_addr.s_addr = htonl(ntohl(target.sin_addr.s_addr) + (uint32_t)(next_target++ % (uint64_t)target_addrs));
  const struct sockaddr_in *to = use_socks ? &proxy : &s->dest;
  int r = connect(s->fd, (const struct sockaddr *)to, sizeof *to);
  if (r == 0) {
    start_send(s, use_socks ? P_GREETING : P_ECHO, now);
    return;
  }
  if (errno != EINPROGRESS) {
    fail(s, errno == EADDRNOTAVAIL ? E_ADDR_UNAVAIL : errno == ECONNREFUSED ? E_REFUSED : E_CONNECT, now);
    return;
  }
  s->state = S_CONNECTING;
  set_interest(s, EPOLLOUT, EPOLL_CTL_ADD);
}

/* Tries to write the rest of s->out; 1 = done, 0 = would block, -1 = failed (already counted). */
static int write_out(struct slot *s, int64_t now) {
  while (s->out_off < s->out_len) {
    ssize_t n = send(s->fd, s->out + s->out_off, s->out_len - s->out_off, MSG_NOSIGNAL);
    if (n > 0) {
      s->out_off += (size_t)n;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return 0;
    } else {
      fail(s, errno == ECONNRESET || errno == EPIPE ? E_RESET : E_IO, now);
      return -1;
    }
  }
  return 1;
}

static void phase_done(struct slot *s, int64_t now) {
  if (now > run_end_ns) return;
  int64_t us = (now - s->phase_ns) / 1000;
  phase_us[s->phase][us < LAT_BUCKETS ? us : LAT_BUCKETS - 1]++;
}

static void start_send(struct slot *s, enum phase ph, int64_t now) {
  int was_added = s->state != S_IDLE;
  if (ph != P_GREETING) s->phase_ns = now;
  s->phase = ph;
  s->out_off = 0;
  s->in_len = 0;
  if (ph == P_GREETING) {
    s->out[0] = 5, s->out[1] = 1, s->out[2] = 0; /* version 5, one method: no authentication */
    s->out_len = 3;
    s->want = 2;
  } else if (ph == P_CONNECT) {
    s->out[0] = 5, s->out[1] = 1, s->out[2] = 0, s->out[3] = 1; /* CONNECT, IPv4 */
    memcpy(s->out + 4, &s->dest.sin_addr, 4);
    memcpy(s->out + 8, &s->dest.sin_port, 2);
    s->out_len = 10;
    s->want = 5; /* enough to learn the reply's address type; raised once it is known */
  } else {
    uint64_t x = ++seq;
    for (int i = 0; i < payload; i++) s->out[i] = (unsigned char)((x * 131 + (uint64_t)i * 7) & 0xff);
    memcpy(s->expect, s->out, (size_t)payload);
    s->out_len = (size_t)payload;
    s->want = (size_t)payload;
  }
  int r = write_out(s, now);
  if (r < 0) return;
  s->state = r == 1 ? S_RECEIVING : S_SENDING;
  set_interest(s, r == 1 ? EPOLLIN : EPOLLOUT, was_added ? EPOLL_CTL_MOD : EPOLL_CTL_ADD);
}

static void finish(struct slot *s, int64_t now) {
  if (now <= run_end_ns) {
    completed++;
    int64_t us = (now - s->started_ns) / 1000;
    latency_us[us < LAT_BUCKETS ? us : LAT_BUCKETS - 1]++;
    if (us > latency_max_us) latency_max_us = us;
  }
  close_slot(s);
  s->idle_until_ns = 0;
}

/* Acts on what has been received so far in the current phase. */
static void on_bytes(struct slot *s, int64_t now) {
  if (s->in_len < s->want) return;
  switch (s->phase) {
    case P_GREETING:
      if (s->in_len != 2) return fail(s, E_PROTOCOL, now);
      if (s->in[0] != 5 || s->in[1] != 0) return fail(s, E_SOCKS_METHOD, now);
      phase_done(s, now);
      return start_send(s, P_CONNECT, now);
    case P_CONNECT: {
      if (s->in[0] != 5) return fail(s, E_PROTOCOL, now);
      if (s->in[1] != 0) {
        socks_reply_codes[s->in[1]]++;
        return fail(s, E_SOCKS_REPLY, now);
      }
      size_t total;
      if (s->in[3] == 1) total = 4 + 4 + 2;
      else if (s->in[3] == 4) total = 4 + 16 + 2;
      else if (s->in[3] == 3) total = 4 + 1 + (size_t)s->in[4] + 2;
      else return fail(s, E_PROTOCOL, now);
      if (s->in_len < total) {
        s->want = total;
        return;
      }
      if (s->in_len > total) return fail(s, E_PROTOCOL, now);
      phase_done(s, now);
      return start_send(s, P_ECHO, now);
    }
    case P_ECHO:
      if (s->in_len != (size_t)payload) return fail(s, E_PROTOCOL, now);
      if (memcmp(s->in, s->expect, (size_t)payload) != 0) return fail(s, E_MISMATCH, now);
      phase_done(s, now);
      return finish(s, now);
  }
}

static void on_event(struct slot *s, uint32_t events, int64_t now) {
  if (s->state == S_CONNECTING) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return fail(s, err == ECONNREFUSED ? E_REFUSED : err == EADDRNOTAVAIL ? E_ADDR_UNAVAIL : E_CONNECT, now);
    if (!(events & EPOLLOUT)) return;
    s->state = S_SENDING; /* so start_send modifies the registration instead of adding it */
    return start_send(s, use_socks ? P_GREETING : P_ECHO, now);
  }
  if (s->state == S_SENDING) {
    if (events & (EPOLLERR | EPOLLHUP)) return fail(s, E_RESET, now);
    int r = write_out(s, now);
    if (r == 1) {
      s->state = S_RECEIVING;
      set_interest(s, EPOLLIN, EPOLL_CTL_MOD);
    }
    return;
  }
  if (s->state != S_RECEIVING) return;
  for (int rounds = 0; rounds < 4; rounds++) {
    ssize_t n = recv(s->fd, s->in + s->in_len, sizeof s->in - s->in_len, 0);
    if (n == 0) return fail(s, E_EOF, now);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      return fail(s, errno == ECONNRESET ? E_RESET : E_IO, now);
    }
    s->in_len += (size_t)n;
    enum phase before = s->phase;
    uint32_t gen = s->gen;
    on_bytes(s, now);
    if (s->gen != gen || s->phase != before || s->in_len < s->want) return;
  }
}

/* p50, p90 and p99 of a histogram of 1 us buckets holding `count` samples */
static void percentiles(const uint32_t *h, uint64_t count, uint64_t pct[3]) {
  const double marks[3] = {0.50, 0.90, 0.99};
  uint64_t seen = 0;
  int m = 0;
  pct[0] = pct[1] = pct[2] = 0;
  for (int us = 0; us < LAT_BUCKETS && count > 0; us++) {
    if (h[us] == 0) continue;
    seen += h[us];
    while (m < 3 && (double)seen >= marks[m] * (double)count) pct[m++] = (uint64_t)us;
  }
}

static void print_result(double elapsed) {
  uint64_t total_err = 0;
  for (int i = 0; i < E_COUNT; i++) total_err += errors[i];
  uint64_t pct[3];
  percentiles(latency_us, completed, pct);
  printf("{\"mode\":\"%s\",\"concurrency\":%d,\"sources\":%d,\"target_addrs\":%d,\"payload\":%d,\"seconds\":%.3f,\"transactions\":%llu,"
         "\"per_second\":%.1f,\"errors_total\":%llu,\"errors\":{",
         use_socks ? "socks5" : "direct", concurrency, sources, target_addrs, payload, elapsed, (unsigned long long)completed,
         elapsed > 0 ? (double)completed / elapsed : 0.0, (unsigned long long)total_err);
  for (int i = 0; i < E_COUNT; i++) printf("%s\"%s\":%llu", i ? "," : "", err_names[i], (unsigned long long)errors[i]);
  printf("},\"socks_reply_codes\":{");
  int first = 1;
  for (int i = 0; i < 256; i++) {
    if (socks_reply_codes[i] == 0) continue;
    printf("%s\"%d\":%llu", first ? "" : ",", i, (unsigned long long)socks_reply_codes[i]);
    first = 0;
  }
  printf("},\"latency_us\":{\"p50\":%llu,\"p90\":%llu,\"p99\":%llu,\"max\":%llu}", (unsigned long long)pct[0],
         (unsigned long long)pct[1], (unsigned long long)pct[2], (unsigned long long)latency_max_us);
  /* where a transaction's time goes: greeting = connect to the proxy + method reply, connect = CONNECT to its reply, echo = the payload there and back */
  static const char *phase_names[3] = {"greeting", "connect", "echo"};
  printf(",\"phases_us\":{");
  first = 1;
  for (int ph = 0; ph < 3; ph++) {
    uint64_t count = 0;
    for (int us = 0; us < LAT_BUCKETS; us++) count += phase_us[ph][us];
    if (count == 0) continue;
    percentiles(phase_us[ph], count, pct);
    printf("%s\"%s\":{\"p50\":%llu,\"p99\":%llu}", first ? "" : ",", phase_names[ph], (unsigned long long)pct[0], (unsigned long long)pct[2]);
    first = 0;
  }
  printf("}}\n");
}

static void usage(void) {
  fprintf(stderr, "usage: cps --target IP:PORT [--socks IP:PORT] [--concurrency N] [--seconds S] "
                  "[--payload B] [--timeout-ms T] [--sources K] [--target-addrs K]\n");
  exit(2);
}

int main(int argc, char **argv) {
  int have_target = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (v == NULL) usage();
    if (strcmp(a, "--target") == 0) {
      if (parse_addr(v, &target) != 0) usage();
      have_target = 1;
    } else if (strcmp(a, "--socks") == 0) {
      if (parse_addr(v, &proxy) != 0) usage();
      use_socks = 1;
    } else if (strcmp(a, "--concurrency") == 0) {
      concurrency = atoi(v);
    } else if (strcmp(a, "--seconds") == 0) {
      seconds = atof(v);
    } else if (strcmp(a, "--payload") == 0) {
      payload = atoi(v);
    } else if (strcmp(a, "--target-addrs") == 0) {
      target_addrs = atoi(v);
    } else if (strcmp(a, "--sources") == 0) {
      sources = atoi(v);
    } else if (strcmp(a, "--timeout-ms") == 0) {
      timeout_ns = (int64_t)atoi(v) * 1000000LL;
    } else {
      usage();
    }
    i++;
  }
  if (!have_target || concurrency < 1 || concurrency > MAX_CONCURRENCY || payload < 1 || payload > MAX_PAYLOAD ||
      !(seconds > 0 && seconds <= 600) || timeout_ns <= 0 || sources < 1 || sources > 250 ||
      target_addrs < 1 || target_addrs > 64)
    usage();
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  signal(SIGPIPE, SIG_IGN);

  slots = calloc((size_t)concurrency, sizeof *slots);
  latency_us = calloc(LAT_BUCKETS, sizeof *latency_us);
  for (int ph = 0; ph < 3; ph++) phase_us[ph] = calloc(LAT_BUCKETS, sizeof *phase_us[ph]);
  ep = epoll_create1(EPOLL_CLOEXEC);
  if (slots == NULL || latency_us == NULL || ep < 0) return 1;

  int64_t start = now_ns();
  run_end_ns = start + (int64_t)(seconds * 1e9);
  for (int i = 0; i < concurrency; i++) {
    slots[i].fd = -1;
    slots[i].state = S_IDLE;
  }

  struct epoll_event events[MAX_CONCURRENCY];
  int64_t now = start;
  while (!interrupted && now < run_end_ns) {
    for (int i = 0; i < concurrency; i++) {
      struct slot *s = &slots[i];
      if (s->state == S_IDLE) {
        if (now >= s->idle_until_ns) start_transaction(s, now);
      } else if (now > s->deadline_ns) {
        fail(s, E_TIMEOUT, now);
      }
    }
    int n = epoll_wait(ep, events, concurrency, 2);
    now = now_ns();
    for (int i = 0; i < n; i++) {
      uint32_t idx = (uint32_t)(events[i].data.u64 >> 32);
      uint32_t gen = (uint32_t)events[i].data.u64;
      if (idx >= (uint32_t)concurrency || slots[idx].gen != gen || slots[idx].state == S_IDLE) continue;
      on_event(&slots[idx], events[i].events, now);
    }
  }
  int64_t end = now < run_end_ns ? now : run_end_ns;
  for (int i = 0; i < concurrency; i++) close_slot(&slots[i]);
  print_result((double)(end - start) / 1e9);
  return interrupted ? 130 : 0;
}
