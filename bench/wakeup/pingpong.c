/*
 * pingpong: the cost of one wake-up of a server, as the one-client row sees it.
 *
 *   pingpong PORT COUNT
 *
 * Connects to 127.0.0.1:PORT (TCP_NODELAY), then COUNT times writes one byte and waits for it to
 * come back. Prints round trips per second and microseconds per round trip. The server side is
 * bench/wakeup/echo.mjs (Node, three ways of waiting) or bench/wakeup/echo.c (a blocking C loop).
 */
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: pingpong PORT COUNT\n");
    return 2;
  }
  int port = atoi(argv[1]), count = atoi(argv[2]), one = 1;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    perror("pingpong: connect");
    return 1;
  }
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  char b = 'x';
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int i = 0; i < count; i++) {
    if (write(fd, &b, 1) != 1 || read(fd, &b, 1) != 1) {
      perror("pingpong: round trip");
      return 1;
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  printf("%.0f round trips/s, %.1f us each\n", count / s, s / count * 1e6);
  return 0;
}
