// pipelined_load: a deliberately cheap load generator for the scaling case. It keeps
// `depth` copies of one request in flight on each connection and checks every byte of
// the replies against one fixed reply, without parsing them.
//
//   pipelined_load --target=127.0.0.1:4000 --request=http --connections=50 --depth=64
//
// wrk and echo_load parse or compute every reply, so on a 2-core machine they cannot
// load a server that has both cores; this client sends a whole window of requests in
// one write and compares replies with memcmp, at a fraction of the server's cost per
// request. The reply is learned first: for HTTP, one request's full response (headers
// and Content-Length body) on a probe connection; for echo, the request itself. A
// server whose replies differ from request to request (a Date header) is not for this
// tool. Prints one line: requests, requests/s, errors.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tools/bench/load_target.h"

ABSL_FLAG(std::string, target, "127.0.0.1:4000", "HOST:PORT of the server (IPv4)");
ABSL_FLAG(std::string, request, "http",
          "http (GET / keep-alive; the reply is learned from the server) or echo (64 bytes; "
          "the reply is the request)");
ABSL_FLAG(int, connections, 50, "connections");
ABSL_FLAG(int, depth, 64, "requests in flight per connection");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(10), "how long to count");
ABSL_FLAG(absl::Duration, warmup, absl::Seconds(1), "run this long before counting");

namespace {

int Fail(const char* what) {
  std::fprintf(stderr, "pipelined_load: %s: %s\n", what, errno != 0 ? strerror(errno) : "");
  return 1;
}

int ConnectTo(const sockaddr_in& addr) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// One request's whole HTTP response, read from a blocking probe connection.
bool LearnHttpReply(const sockaddr_in& addr, const std::string& request, std::string* reply) {
  const int fd = ConnectTo(addr);
  if (fd < 0) return false;
  timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  bool ok = send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(request.size());
  std::string got;
  char buf[4096];
  while (ok) {
    const size_t head_end = got.find("\r\n\r\n");
    if (head_end != std::string::npos) {
      size_t body = 0;
      for (absl::string_view line : absl::StrSplit(absl::string_view(got).substr(0, head_end), "\r\n")) {
        if (absl::StartsWithIgnoreCase(line, "content-length:")) {
          ok = absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(15)), &body);
        }
      }
      if (ok && got.size() >= head_end + 4 + body) {
        *reply = got.substr(0, head_end + 4 + body);
        break;
      }
    }
    const ssize_t r = recv(fd, buf, sizeof(buf), 0);
    if (r <= 0) ok = false;
    if (r > 0) got.append(buf, static_cast<size_t>(r));
  }
  close(fd);
  return ok;
}

struct Conn {
  int fd = -1;
  uint64_t in_flight = 0;
  size_t reply_pos = 0;  // bytes of the current reply already checked
};

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  sockaddr_in addr;
  if (!islet::bench::ParseLoadTarget(absl::GetFlag(FLAGS_target), &addr)) {
    std::fprintf(stderr, "pipelined_load: --target must be IPv4:PORT\n");
    return 2;
  }
  const int depth = std::max(1, absl::GetFlag(FLAGS_depth));
  const int n = std::max(1, absl::GetFlag(FLAGS_connections));

  std::string request, reply;
  if (absl::GetFlag(FLAGS_request) == "http") {
    request = "GET / HTTP/1.1\r\nHost: bench\r\n\r\n";
    if (!LearnHttpReply(addr, request, &reply)) return Fail("learning the reply");
  } else if (absl::GetFlag(FLAGS_request) == "echo") {
    for (int i = 0; i < 64; ++i) request.push_back(static_cast<char>('a' + i % 26));
    reply = request;
  } else {
    std::fprintf(stderr, "pipelined_load: --request must be http or echo\n");
    return 2;
  }
  // A whole window of requests, so that refilling any number of them is one send.
  std::string window;
  for (int i = 0; i < depth; ++i) window += request;

  const int ep = epoll_create1(EPOLL_CLOEXEC);
  std::vector<Conn> conns(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    Conn& c = conns[static_cast<size_t>(i)];
    c.fd = ConnectTo(addr);
    if (c.fd < 0) return Fail("connect");
    fcntl(c.fd, F_SETFL, O_NONBLOCK);
    epoll_event ev = {};
    ev.events = EPOLLIN;
    ev.data.u32 = static_cast<uint32_t>(i);
    epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
  }

  // Sends up to `count` requests; a partial request left by a short write is completed
  // before anything else (blocking for it is fine: the server is reading).
  auto send_requests = [&](Conn& c, uint64_t count) -> bool {
    size_t left = static_cast<size_t>(count) * request.size();
    const char* p = window.data();
    while (left > 0) {
      const ssize_t w = send(c.fd, p, left, MSG_NOSIGNAL);
      if (w < 0 && errno == EAGAIN) {
        if (left % request.size() == 0) break;  // whole requests only: send the rest later
        continue;
      }
      if (w <= 0) return false;
      p += w;
      left -= static_cast<size_t>(w);
    }
    c.in_flight += count - left / request.size();
    return true;
  };
  for (Conn& c : conns) {
    if (!send_requests(c, static_cast<uint64_t>(depth))) return Fail("send");
  }

  uint64_t counted = 0, errors = 0;
  const absl::Time count_from = absl::Now() + absl::GetFlag(FLAGS_warmup);
  const absl::Time end = count_from + absl::GetFlag(FLAGS_duration);
  std::vector<char> buf(1 << 18);
  epoll_event events[256];
  for (absl::Time now = absl::Now(); now < end;) {
    const int k = epoll_wait(ep, events, 256, 100);
    now = absl::Now();
    const bool counting = now >= count_from;
    for (int e = 0; e < k; ++e) {
      Conn& c = conns[events[e].data.u32];
      const ssize_t r = recv(c.fd, buf.data(), buf.size(), 0);
      if (r <= 0) {
        if (r < 0 && errno == EAGAIN) continue;
        std::fprintf(stderr, "pipelined_load: the server closed a connection\n");
        return 1;
      }
      uint64_t done = 0;
      for (size_t at = 0; at < static_cast<size_t>(r);) {
        const size_t take = std::min(static_cast<size_t>(r) - at, reply.size() - c.reply_pos);
        if (std::memcmp(buf.data() + at, reply.data() + c.reply_pos, take) != 0) ++errors;
        at += take;
        c.reply_pos += take;
        if (c.reply_pos == reply.size()) {
          c.reply_pos = 0;
          ++done;
        }
      }
      c.in_flight -= std::min(done, c.in_flight);
      if (counting) counted += done;
      // Refill once half the window has been answered: few, large writes.
      const uint64_t room = static_cast<uint64_t>(depth) - c.in_flight;
      if (room * 2 >= static_cast<uint64_t>(depth) && !send_requests(c, room)) return Fail("send");
    }
  }
  const double seconds = absl::ToDoubleSeconds(absl::GetFlag(FLAGS_duration));
  std::printf("requests=%llu rate=%.0f/s errors=%llu\n", static_cast<unsigned long long>(counted),
              counted / seconds, static_cast<unsigned long long>(errors));
  for (Conn& c : conns) close(c.fd);
  return errors == 0 && counted > 0 ? 0 : 1;
}
