/*
 * echo: the reference for bench/wakeup: accepts on 127.0.0.1:PORT and echoes each connection's
 * bytes with blocking read/write, one connection at a time (what a thread per client does).
 * Ends when its parent does.
 */
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 8) != 0) return 1;
  for (;;) {
    int fd = accept(l, NULL, NULL);
    if (fd < 0) continue;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
      if (write(fd, buf, (size_t)n) != n) break;
    close(fd);
  }
}
