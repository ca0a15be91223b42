// tls_handshake_load: a BoringSSL client that does nothing but new, full TLS handshakes,
// to measure what a handshake costs a server.
//
//   tls_handshake_load --target=127.0.0.1:4433 --threads=4 --duration=5s
//                      [--request=http] [--cpu_pids=1234,1235]
//
// Each thread loops: TCP connect, TLS handshake (TLS 1.3 only by default), with
// --request=http one "GET / HTTP/1.1" whose response must be a 200 with a body, then
// close_notify, a TCP half-close, and a drain until the server closes. Every connection
// uses a fresh SSL from an SSL_CTX whose session cache is off and no session is ever
// offered, so every handshake is a full one (ECDHE + certificate signature); a resumed
// handshake is counted as an error. The server's NewSessionTickets are read and dropped.
//
// Prints one line: handshakes counted in the window (after --warmup), handshakes/s,
// p50/p99 handshake latency (connect start to handshake done), and errors. With
// --cpu_pids, also the server's CPU (utime+stime of those processes, from /proc/PID/stat)
// over the same window and per handshake. Exit 1 on any error or resumption.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
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

ABSL_FLAG(std::string, target, "127.0.0.1:4433", "HOST:PORT of the TLS server (IPv4)");
ABSL_FLAG(int, threads, 4, "client threads, each with one connection at a time");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(5), "how long to count");
ABSL_FLAG(absl::Duration, warmup, absl::Seconds(1), "run this long before counting");
ABSL_FLAG(std::string, request, "http",
          "after the handshake: 'http' (one GET, expect 200) or 'none'");
ABSL_FLAG(std::string, alpn, "http/1.1", "ALPN protocol to offer; empty: none");
ABSL_FLAG(std::string, server_name, "localhost", "SNI; empty: none");
ABSL_FLAG(bool, tls13_only, true, "offer TLS 1.3 only (else 1.2 and 1.3)");
ABSL_FLAG(std::string, cafile, "",
          "verify the server's chain against this CA bundle (PEM; a self-signed leaf that is "
          "not a CA does not qualify). Default: no chain check (the TLS 1.3 "
          "CertificateVerify signature is checked either way)");
ABSL_FLAG(std::string, cpu_pids, "",
          "comma-separated server PIDs whose utime+stime is measured over the window");
ABSL_FLAG(absl::Duration, io_timeout, absl::Seconds(5), "per-operation socket timeout");

namespace {

using islet::bench::SslErrorString;

// NewSessionTickets received (each becomes a session BoringSSL hands to the callback).
std::atomic<uint64_t> g_tickets{0};

// utime+stime of `pids`, in seconds; -1 if one cannot be read.
double CpuSeconds(const std::vector<int>& pids) {
  const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  double total = 0;
  for (int pid : pids) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(in, line)) return -1;
    const size_t paren = line.rfind(')');
    if (paren == std::string::npos) return -1;
    std::istringstream rest(line.substr(paren + 2));
    std::string field;
    // After "(comm) ": state is field 3; utime and stime are fields 14 and 15.
    unsigned long long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {
      if (i == 14) utime = std::stoull(field);
      if (i == 15) stime = std::stoull(field);
    }
    total += static_cast<double>(utime + stime) / tick;
  }
  return total;
}

struct Shared {
  SSL_CTX* ctx = nullptr;
  sockaddr_in addr = {};
  std::string request;  // empty: none
  std::string server_name;
  timeval io_timeout = {};
  absl::Time count_from, end;
  std::atomic<bool> stop{false};

  std::mutex mu;
  std::vector<int32_t> latencies_us;  // counted window only
  uint64_t counted = 0, total = 0, errors = 0, resumed = 0;
  int errors_printed = 0;
  std::string first_params;  // version / cipher / group / signature of one handshake
};

void ReportError(Shared& shared, const std::string& what) {
  std::lock_guard<std::mutex> lock(shared.mu);
  ++shared.errors;
  if (shared.errors_printed < 5) {
    ++shared.errors_printed;
    std::fprintf(stderr, "tls_handshake_load: %s\n", what.c_str());
  }
}

// Reads one HTTP/1.1 response with a Content-Length body; true for a 200.
bool ReadResponse(SSL* ssl, std::string& why) {
  std::string in;
  char buf[4096];
  size_t head_end = std::string::npos;
  while ((head_end = in.find("\r\n\r\n")) == std::string::npos) {
    const int n = SSL_read(ssl, buf, sizeof(buf));
    if (n <= 0) {
      why = "reading the response head: " + SslErrorString();
      return false;
    }
    in.append(buf, static_cast<size_t>(n));
    if (in.size() > 65536) {
      why = "response head too long";
      return false;
    }
  }
  if (in.compare(0, 12, "HTTP/1.1 200") != 0) {
    why = "not a 200: " + in.substr(0, in.find("\r\n"));
    return false;
  }
  size_t length = 0;
  std::string lower = in.substr(0, head_end);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  const size_t cl = lower.find("\r\ncontent-length:");
  if (cl == std::string::npos) {
    why = "no Content-Length in the response";
    return false;
  }
  length = std::strtoul(lower.c_str() + cl + 17, nullptr, 10);
  while (in.size() < head_end + 4 + length) {
    const int n = SSL_read(ssl, buf, sizeof(buf));
    if (n <= 0) {
      why = "reading the response body: " + SslErrorString();
      return false;
    }
    in.append(buf, static_cast<size_t>(n));
  }
  if (length == 0) {
    why = "empty response body";
    return false;
  }
  return true;
}

// One connection: connect, handshake, optional request, close. Returns false on error
// (already reported); `latency` is connect start to handshake done.
bool OneConnection(Shared& shared, absl::Duration& latency, bool& was_resumed,
                   std::string* params) {
  const absl::Time start = absl::Now();
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ReportError(shared, std::string("socket: ") + strerror(errno));
    return false;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &shared.io_timeout, sizeof(shared.io_timeout));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &shared.io_timeout, sizeof(shared.io_timeout));
  if (connect(fd, reinterpret_cast<const sockaddr*>(&shared.addr), sizeof(shared.addr)) != 0) {
    ReportError(shared, std::string("connect: ") + strerror(errno));
    close(fd);
    return false;
  }
  bssl::UniquePtr<SSL> ssl(SSL_new(shared.ctx));
  SSL_set_fd(ssl.get(), fd);
  if (!shared.server_name.empty()) SSL_set_tlsext_host_name(ssl.get(), shared.server_name.c_str());
  ERR_clear_error();
  if (SSL_connect(ssl.get()) != 1) {
    std::string why = "handshake: " + SslErrorString();
    if (SSL_get_verify_result(ssl.get()) != X509_V_OK) {
      why += std::string(": ") + X509_verify_cert_error_string(SSL_get_verify_result(ssl.get()));
    }
    ReportError(shared, why);
    close(fd);
    return false;
  }
  latency = absl::Now() - start;
  was_resumed = SSL_session_reused(ssl.get()) == 1;
  bool ok = true;
  if (params != nullptr) {
    const char* group = SSL_get_curve_name(SSL_get_curve_id(ssl.get()));
    const char* sig =
        SSL_get_signature_algorithm_name(SSL_get_peer_signature_algorithm(ssl.get()), 1);
    const uint8_t* alpn = nullptr;
    unsigned alpn_len = 0;
    SSL_get0_alpn_selected(ssl.get(), &alpn, &alpn_len);
    *params = std::string(SSL_get_version(ssl.get())) + " " +
              SSL_CIPHER_standard_name(SSL_get_current_cipher(ssl.get())) + " group=" +
              (group ? group : "?") + " sig=" + (sig ? sig : "?") + " alpn=" +
              std::string(reinterpret_cast<const char*>(alpn), alpn_len);
  }
  if (absl::GetFlag(FLAGS_tls13_only) && SSL_version(ssl.get()) != TLS1_3_VERSION) {
    ReportError(shared, std::string("negotiated ") + SSL_get_version(ssl.get()));
    ok = false;
  }
  if (ok && !shared.request.empty()) {
    if (SSL_write(ssl.get(), shared.request.data(), static_cast<int>(shared.request.size())) !=
        static_cast<int>(shared.request.size())) {
      ReportError(shared, "writing the request: " + SslErrorString());
      ok = false;
    } else {
      std::string why;
      if (!ReadResponse(ssl.get(), why)) {
        ReportError(shared, why);
        ok = false;
      }
    }
  }
  // close_notify, then a half-close, and a drain until the server closes: no reset, and
  // the server sees a clean close.
  if (ok) {
    ERR_clear_error();
    SSL_shutdown(ssl.get());
    ERR_clear_error();
    ::shutdown(fd, SHUT_WR);
    char buf[4096];
    for (;;) {
      const ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n > 0) continue;
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        ReportError(shared, "the server did not close the connection after close_notify");
        ok = false;
      }
      break;  // EOF, or a reset (the server closed with our bytes unread): both fine
    }
  }
  ssl.reset();
  close(fd);
  return ok;
}

void Run(Shared& shared) {
  std::vector<int32_t> latencies;
  latencies.reserve(1 << 16);
  uint64_t counted = 0, total = 0, resumed = 0;
  bool want_params = false;
  {
    std::lock_guard<std::mutex> lock(shared.mu);
    want_params = shared.first_params.empty();
    if (want_params) shared.first_params = "?";
  }
  while (!shared.stop.load(std::memory_order_relaxed)) {
    absl::Duration latency;
    bool was_resumed = false;
    std::string params;
    const bool ok = OneConnection(shared, latency, was_resumed, want_params ? &params : nullptr);
    if (want_params && ok) {
      std::lock_guard<std::mutex> lock(shared.mu);
      shared.first_params = params;
      want_params = false;
    }
    const absl::Time now = absl::Now();
    if (now >= shared.end) break;
    if (!ok) {
      absl::SleepFor(absl::Milliseconds(1));  // do not spin on a refusing server
      continue;
    }
    ++total;
    if (was_resumed) ++resumed;
    if (now >= shared.count_from) {
      ++counted;
      latencies.push_back(static_cast<int32_t>(absl::ToInt64Microseconds(latency)));
    }
  }
  std::lock_guard<std::mutex> lock(shared.mu);
  shared.latencies_us.insert(shared.latencies_us.end(), latencies.begin(), latencies.end());
  shared.counted += counted;
  shared.total += total;
  shared.resumed += resumed;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  Shared shared;
  if (!islet::bench::ParseLoadTarget(absl::GetFlag(FLAGS_target), &shared.addr)) {
    std::fprintf(stderr, "tls_handshake_load: --target must be IPv4:PORT\n");
    return 2;
  }
  shared.server_name = absl::GetFlag(FLAGS_server_name);
  const std::string request = absl::GetFlag(FLAGS_request);
  if (request == "http") {
    shared.request = "GET / HTTP/1.1\r\nHost: " +
                     (shared.server_name.empty() ? std::string("x") : shared.server_name) +
                     "\r\n\r\n";
  } else if (request != "none") {
    std::fprintf(stderr, "tls_handshake_load: --request must be http or none\n");
    return 2;
  }
  std::vector<int> cpu_pids;
  for (absl::string_view p : absl::StrSplit(absl::GetFlag(FLAGS_cpu_pids), ',', absl::SkipEmpty())) {
    int pid = 0;
    if (!absl::SimpleAtoi(p, &pid) || pid <= 0) {
      std::fprintf(stderr, "tls_handshake_load: bad --cpu_pids\n");
      return 2;
    }
    cpu_pids.push_back(pid);
  }
  const absl::Duration io_timeout = absl::GetFlag(FLAGS_io_timeout);
  shared.io_timeout = absl::ToTimeval(io_timeout);

  bssl::UniquePtr<SSL_CTX> ctx(SSL_CTX_new(TLS_method()));
  shared.ctx = ctx.get();
  SSL_CTX_set_min_proto_version(ctx.get(),
                                absl::GetFlag(FLAGS_tls13_only) ? TLS1_3_VERSION : TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(ctx.get(), TLS1_3_VERSION);
  // No resumption: no session is ever set on an SSL and none is kept. The callback only
  // counts the server's NewSessionTickets (how much ticket work the server did); it
  // returns 0, so BoringSSL frees each session at once, and the internal cache is off.
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
  SSL_CTX_sess_set_new_cb(ctx.get(), [](SSL*, SSL_SESSION*) -> int {
    g_tickets.fetch_add(1, std::memory_order_relaxed);
    return 0;
  });
  islet::bench::OfferAlpn(ctx.get(), absl::GetFlag(FLAGS_alpn));
  const std::string cafile = absl::GetFlag(FLAGS_cafile);
  if (!cafile.empty()) {
    if (!SSL_CTX_load_verify_locations(ctx.get(), cafile.c_str(), nullptr)) {
      std::fprintf(stderr, "tls_handshake_load: --cafile %s: %s\n", cafile.c_str(),
                   SslErrorString().c_str());
      return 2;
    }
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  }

  const absl::Time start = absl::Now();
  shared.count_from = start + absl::GetFlag(FLAGS_warmup);
  shared.end = shared.count_from + absl::GetFlag(FLAGS_duration);
  std::vector<std::thread> threads;
  for (int i = 0; i < std::max(1, absl::GetFlag(FLAGS_threads)); ++i) {
    threads.emplace_back(Run, std::ref(shared));
  }
  // The window's CPU, read at its edges.
  double cpu_start = -1, cpu_end = -1;
  absl::SleepFor(shared.count_from - absl::Now());
  if (!cpu_pids.empty()) cpu_start = CpuSeconds(cpu_pids);
  absl::SleepFor(shared.end - absl::Now());
  if (!cpu_pids.empty()) cpu_end = CpuSeconds(cpu_pids);
  shared.stop = true;
  for (std::thread& t : threads) t.join();

  std::vector<int32_t>& lat = shared.latencies_us;
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double p) -> int32_t {
    if (lat.empty()) return 0;
    return lat[std::min(lat.size() - 1, static_cast<size_t>(p * static_cast<double>(lat.size())))];
  };
  const double seconds = absl::ToDoubleSeconds(absl::GetFlag(FLAGS_duration));
  std::fprintf(stderr, "tls_handshake_load: %s\n", shared.first_params.c_str());
  std::printf("handshakes=%llu rate=%.0f/s p50=%dus p99=%dus errors=%llu resumed=%llu",
              static_cast<unsigned long long>(shared.counted),
              static_cast<double>(shared.counted) / seconds, pct(0.50), pct(0.99),
              static_cast<unsigned long long>(shared.errors),
              static_cast<unsigned long long>(shared.resumed));
  if (shared.request.empty()) {
    std::printf(" tickets=n/a");  // they may arrive after our close_notify, unread
  } else {
    std::printf(" tickets_per_conn=%.2f",
                shared.total > 0 ? static_cast<double>(g_tickets.load()) /
                                       static_cast<double>(shared.total)
                                 : 0.0);
  }
  if (!cpu_pids.empty()) {
    const double cpu = (cpu_start < 0 || cpu_end < 0) ? -1 : cpu_end - cpu_start;
    std::printf(" server_cpu=%.2fs cpu_per_handshake=%.1fus", cpu,
                shared.counted > 0 && cpu >= 0 ? cpu * 1e6 / static_cast<double>(shared.counted)
                                               : -1.0);
  }
  std::printf("\n");
  std::fflush(stdout);
  return shared.errors == 0 && shared.resumed == 0 && shared.counted > 0 ? 0 : 1;
}
