// echo_load: drives an echo server and checks every byte it echoes.
//
//   echo_load --target=127.0.0.1:4000 --connections=50 --size=64 --depth=1 --duration=10s
//
// Each connection keeps `depth` messages of `size` bytes in flight; a message's bytes are
// a function of (connection, sequence), so a wrong, lost or reordered byte is caught.
// One thread, one epoll loop: the client's own cost per message stays small. Prints one
// line: messages, messages/s, p50/p99 round-trip latency, errors.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tools/bench/load_target.h"

ABSL_FLAG(std::string, target, "127.0.0.1:4000", "HOST:PORT of the echo server (IPv4)");
ABSL_FLAG(int, connections, 50, "connections");
ABSL_FLAG(int, size, 64, "bytes per message");
ABSL_FLAG(int, depth, 1, "messages in flight per connection");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(10), "how long to run");
ABSL_FLAG(absl::Duration, warmup, absl::Seconds(1), "run this long before counting");

namespace {

char ByteAt(uint64_t conn, uint64_t seq, int i) {
  return static_cast<char>((conn * 131 + seq * 31 + static_cast<uint64_t>(i) * 7) & 0xff);
}

struct Conn {
  int fd = -1;
  uint64_t id = 0;
  uint64_t next_send = 0;     // sequence of the next message to send
  uint64_t next_check = 0;    // sequence of the next message to verify
  size_t checked_in_msg = 0;  // bytes of next_check already verified
  std::string out;            // unsent bytes
  std::deque<absl::Time> sent_at;
};

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  sockaddr_in addr;
  if (!islet::bench::ParseLoadTarget(absl::GetFlag(FLAGS_target), &addr)) {
    std::fprintf(stderr, "echo_load: --target must be IPv4:PORT\n");
    return 2;
  }
  const int size = absl::GetFlag(FLAGS_size);
  const int depth = absl::GetFlag(FLAGS_depth);
  const int n = absl::GetFlag(FLAGS_connections);

  int ep = epoll_create1(EPOLL_CLOEXEC);
  std::vector<Conn> conns(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    Conn& c = conns[static_cast<size_t>(i)];
    c.id = static_cast<uint64_t>(i);
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      std::fprintf(stderr, "echo_load: connect: %s\n", strerror(errno));
      return 1;
    }
    fcntl(c.fd, F_SETFL, O_NONBLOCK);
    epoll_event ev = {};
    ev.events = EPOLLIN;
    ev.data.u32 = static_cast<uint32_t>(i);
    epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
  }

  std::vector<absl::Duration> latencies;
  latencies.reserve(1 << 20);
  uint64_t counted = 0, errors = 0;
  const absl::Time start = absl::Now();
  const absl::Time count_from = start + absl::GetFlag(FLAGS_warmup);
  const absl::Time end = count_from + absl::GetFlag(FLAGS_duration);

  auto fill = [&](Conn& c) {
    while (c.next_send - c.next_check < static_cast<uint64_t>(depth)) {
      for (int i = 0; i < size; ++i) c.out.push_back(ByteAt(c.id, c.next_send, i));
      c.sent_at.push_back(absl::Now());
      ++c.next_send;
    }
    while (!c.out.empty()) {
      ssize_t w = send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
      if (w <= 0) break;
      c.out.erase(0, static_cast<size_t>(w));
    }
  };
  for (Conn& c : conns) fill(c);

  std::vector<char> buf(1 << 16);
  epoll_event events[256];
  absl::Time now = absl::Now();
  while (now < end) {
    int k = epoll_wait(ep, events, 256, 100);
    now = absl::Now();
    for (int e = 0; e < k; ++e) {
      Conn& c = conns[events[e].data.u32];
      ssize_t r = recv(c.fd, buf.data(), buf.size(), 0);
      if (r <= 0) {
        if (r < 0 && errno == EAGAIN) continue;
        std::fprintf(stderr, "echo_load: connection %llu closed by the server\n",
                     static_cast<unsigned long long>(c.id));
        return 1;
      }
      for (ssize_t i = 0; i < r; ++i) {
        if (buf[static_cast<size_t>(i)] !=
            ByteAt(c.id, c.next_check, static_cast<int>(c.checked_in_msg))) {
          ++errors;
        }
        if (++c.checked_in_msg == static_cast<size_t>(size)) {
          c.checked_in_msg = 0;
          ++c.next_check;
          if (now >= count_from) {
            ++counted;
            latencies.push_back(now - c.sent_at.front());
          }
          c.sent_at.pop_front();
        }
      }
      fill(c);
    }
  }
  std::sort(latencies.begin(), latencies.end());
  auto pct = [&](double p) {
    if (latencies.empty()) return absl::ZeroDuration();
    return latencies[std::min(latencies.size() - 1, static_cast<size_t>(p * latencies.size()))];
  };
  const double seconds = absl::ToDoubleSeconds(absl::GetFlag(FLAGS_duration));
  std::printf("messages=%llu rate=%.0f/s p50=%s p99=%s errors=%llu\n",
              static_cast<unsigned long long>(counted), counted / seconds,
              absl::FormatDuration(pct(0.50)).c_str(), absl::FormatDuration(pct(0.99)).c_str(),
              static_cast<unsigned long long>(errors));
  for (Conn& c : conns) close(c.fd);
  return errors == 0 ? 0 : 1;
}
