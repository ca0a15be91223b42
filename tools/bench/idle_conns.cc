// idle_conns: opens many connections to a server and holds them idle, to measure what
// an idle connection costs the server.
//
//   idle_conns --target=127.0.0.1:4000 --connections=10000 --hold=10s [--check_echo]
//
// Raises its own descriptor limit to the hard limit. Prints how many connected, and with
// --check_echo, how many answered one byte at the end (all of them must).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tools/bench/load_target.h"

ABSL_FLAG(std::string, target, "127.0.0.1:4000", "HOST:PORT (IPv4)");
ABSL_FLAG(int, connections, 10000, "connections to open");
ABSL_FLAG(absl::Duration, hold, absl::Seconds(10), "how long to hold them");
ABSL_FLAG(bool, check_echo, false, "send one byte on each at the end and expect it back");
ABSL_FLAG(std::string, ready_file, "", "touch this file once every connection is open");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  islet::bench::RaiseDescriptorLimit();
  sockaddr_in addr;
  if (!islet::bench::ParseLoadTarget(absl::GetFlag(FLAGS_target), &addr)) {
    std::fprintf(stderr, "idle_conns: --target must be IPv4:PORT\n");
    return 2;
  }
  std::vector<int> fds;
  const int n = absl::GetFlag(FLAGS_connections);
  for (int i = 0; i < n; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      std::fprintf(stderr, "idle_conns: connection %d: %s\n", i, strerror(errno));
      return 1;
    }
    fds.push_back(fd);
  }
  std::printf("connected=%zu\n", fds.size());
  std::fflush(stdout);
  islet::bench::TouchReadyFile(absl::GetFlag(FLAGS_ready_file));
  absl::SleepFor(absl::GetFlag(FLAGS_hold));
  int answered = 0;
  if (absl::GetFlag(FLAGS_check_echo)) {
    for (int fd : fds) {
      char c = 'x';
      if (send(fd, &c, 1, MSG_NOSIGNAL) != 1) continue;
      pollfd p = {fd, POLLIN, 0};
      if (poll(&p, 1, 10000) == 1 && recv(fd, &c, 1, 0) == 1 && c == 'x') ++answered;
    }
    std::printf("answered=%d\n", answered);
  }
  for (int fd : fds) close(fd);
  return absl::GetFlag(FLAGS_check_echo) && answered != n ? 1 : 0;
}
