// tls_idle_conns: opens many TLS connections to a server, completes each handshake, and
// holds them idle, to measure what an idle TLS connection costs the server (the TLS
// counterpart of idle_conns).
//
//   tls_idle_conns --target=127.0.0.1:4433 --connections=10000 --hold=10s
//                  [--ready_file=/tmp/ready] [--check_http]
//
// Raises its own descriptor limit to the hard limit. Connections are opened by
// --threads threads, each handshake full (TLS 1.3, no session cache, no resumption),
// then left idle: the client sends nothing more (the server's NewSessionTickets stay
// unread in the kernel). Once all are open it prints "connected=N" and touches
// --ready_file; after --hold, with --check_http, it sends one "GET /" on each and expects
// a 200 (every connection must still be alive), then closes them all.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tools/bench/load_target.h"
#include "tools/bench/tls_load.h"

ABSL_FLAG(std::string, target, "127.0.0.1:4433", "HOST:PORT (IPv4)");
ABSL_FLAG(int, connections, 10000, "connections to open");
ABSL_FLAG(int, threads, 4, "threads opening them");
ABSL_FLAG(absl::Duration, hold, absl::Seconds(10), "how long to hold them");
ABSL_FLAG(bool, check_http, false,
          "at the end, send one GET on each and expect an HTTP 200 (all must answer)");
ABSL_FLAG(std::string, ready_file, "", "touch this file once every connection is open");
ABSL_FLAG(std::string, alpn, "http/1.1", "ALPN protocol to offer; empty: none");
ABSL_FLAG(std::string, server_name, "localhost", "SNI; empty: none");
ABSL_FLAG(absl::Duration, io_timeout, absl::Seconds(10), "per-operation socket timeout");

namespace {

using islet::bench::SslErrorString;

struct Conn {
  int fd = -1;
  SSL* ssl = nullptr;
};

// A 200 with its whole Content-Length body.
bool AskOnce(SSL* ssl, const std::string& request) {
  if (SSL_write(ssl, request.data(), static_cast<int>(request.size())) !=
      static_cast<int>(request.size())) {
    return false;
  }
  std::string in;
  char buf[4096];
  size_t head_end;
  while ((head_end = in.find("\r\n\r\n")) == std::string::npos) {
    const int n = SSL_read(ssl, buf, sizeof(buf));
    if (n <= 0 || in.size() > 65536) return false;
    in.append(buf, static_cast<size_t>(n));
  }
  if (in.compare(0, 12, "HTTP/1.1 200") != 0) return false;
  std::string lower = in.substr(0, head_end);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  const size_t cl = lower.find("\r\ncontent-length:");
  if (cl == std::string::npos) return false;
  const size_t length = std::strtoul(lower.c_str() + cl + 17, nullptr, 10);
  while (in.size() < head_end + 4 + length) {
    const int n = SSL_read(ssl, buf, sizeof(buf));
    if (n <= 0) return false;
    in.append(buf, static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const rlim_t descriptors = islet::bench::RaiseDescriptorLimit();
  sockaddr_in addr;
  if (!islet::bench::ParseLoadTarget(absl::GetFlag(FLAGS_target), &addr)) {
    std::fprintf(stderr, "tls_idle_conns: --target must be IPv4:PORT\n");
    return 2;
  }
  const int n = absl::GetFlag(FLAGS_connections);
  if (static_cast<rlim_t>(n) + 64 > descriptors) {
    std::fprintf(stderr, "tls_idle_conns: %d connections need more descriptors than the limit %llu\n",
                 n, static_cast<unsigned long long>(descriptors));
    return 1;
  }
  const std::string server_name = absl::GetFlag(FLAGS_server_name);
  const timeval io_timeout = absl::ToTimeval(absl::GetFlag(FLAGS_io_timeout));

  bssl::UniquePtr<SSL_CTX> ctx(SSL_CTX_new(TLS_method()));
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(ctx.get(), TLS1_3_VERSION);
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  islet::bench::OfferAlpn(ctx.get(), absl::GetFlag(FLAGS_alpn));

  std::vector<Conn> conns(static_cast<size_t>(n));
  std::atomic<int> next{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  const absl::Time start = absl::Now();
  auto open_some = [&] {
    for (;;) {
      const int i = next.fetch_add(1);
      if (i >= n || failed.load()) return;
      Conn& c = conns[static_cast<size_t>(i)];
      c.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (c.fd < 0) {
        std::lock_guard<std::mutex> lock(mu);
        std::fprintf(stderr, "tls_idle_conns: socket %d: %s\n", i, strerror(errno));
        failed = true;
        return;
      }
      int one = 1;
      setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &io_timeout, sizeof(io_timeout));
      setsockopt(c.fd, SOL_SOCKET, SO_SNDTIMEO, &io_timeout, sizeof(io_timeout));
      if (connect(c.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        std::lock_guard<std::mutex> lock(mu);
        std::fprintf(stderr, "tls_idle_conns: connection %d: connect: %s\n", i, strerror(errno));
        failed = true;
        return;
      }
      c.ssl = SSL_new(ctx.get());
      SSL_set_fd(c.ssl, c.fd);
      if (!server_name.empty()) SSL_set_tlsext_host_name(c.ssl, server_name.c_str());
      ERR_clear_error();
      if (SSL_connect(c.ssl) != 1 || SSL_version(c.ssl) != TLS1_3_VERSION ||
          SSL_session_reused(c.ssl)) {
        std::lock_guard<std::mutex> lock(mu);
        std::fprintf(stderr, "tls_idle_conns: connection %d: handshake: %s\n", i,
                     SslErrorString().c_str());
        failed = true;
        return;
      }
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < std::max(1, absl::GetFlag(FLAGS_threads)); ++t) threads.emplace_back(open_some);
  for (std::thread& t : threads) t.join();
  auto close_all = [&] {
    for (Conn& c : conns) {
      if (c.ssl != nullptr) SSL_free(c.ssl);
      if (c.fd >= 0) close(c.fd);
    }
  };
  if (failed) {
    close_all();
    return 1;
  }
  std::printf("connected=%d in %.2fs\n", n, absl::ToDoubleSeconds(absl::Now() - start));
  std::fflush(stdout);
  islet::bench::TouchReadyFile(absl::GetFlag(FLAGS_ready_file));
  absl::SleepFor(absl::GetFlag(FLAGS_hold));
  int answered = 0;
  if (absl::GetFlag(FLAGS_check_http)) {
    const std::string request =
        "GET / HTTP/1.1\r\nHost: " + (server_name.empty() ? std::string("x") : server_name) +
        "\r\n\r\n";
    for (Conn& c : conns) {
      ERR_clear_error();
      if (AskOnce(c.ssl, request)) ++answered;
    }
    std::printf("answered=%d\n", answered);
    std::fflush(stdout);
  }
  for (Conn& c : conns) {
    ERR_clear_error();
    SSL_shutdown(c.ssl);  // close_notify, best effort
  }
  close_all();
  return absl::GetFlag(FLAGS_check_http) && answered != n ? 1 : 0;
}
