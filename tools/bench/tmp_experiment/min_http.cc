// Temporary experiment: the islet server with a handler that does what epoll_http does
// (count "\r\n\r\n", answer each with the http_hello bytes, one Send per read).
#include <signal.h>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include "server/server.h"

namespace {
constexpr char kResponse[] =
    "HTTP/1.1 200 OK\r\nServer: islet\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nHello world!";
constexpr size_t kSize = sizeof(kResponse) - 1;
constexpr size_t kBatch = 64;
struct Responses {
  Responses() { for (size_t i = 0; i < kBatch; ++i) std::memcpy(bytes + i * kSize, kResponse, kSize); }
  char bytes[kBatch * kSize];
};
const Responses responses;

class MinHttp : public islet::Handler {
 public:
  islet::HandlerResult HandleData(absl::string_view data, islet::Connection& conn) override {
    static constexpr char kEnd[4] = {'\r', '\n', '\r', '\n'};
    size_t n = 0;
    int m = matched_;
    for (char c : data) {
      if (c == kEnd[m]) { if (++m == 4) { ++n; m = 0; } } else { m = c == '\r' ? 1 : 0; }
    }
    matched_ = m;
    while (n > 0) {
      const size_t k = n < kBatch ? n : kBatch;
      absl::Status s = conn.Send(absl::string_view(responses.bytes, k * kSize));
      if (!s.ok()) return islet::HandlerResult::Error(s);
      n -= k;
    }
    return islet::HandlerResult::Continue();
  }
 private:
  int matched_ = 0;
};
}  // namespace

int main(int argc, char** argv) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  islet::ServerOptions options;
  options.port = static_cast<uint16_t>(std::atoi(argv[1]));
  options.transport_options.address = "127.0.0.1";
  options.num_workers = 1;
  options.handler_factory = islet::HandlerFactoryOf<MinHttp>();
  auto server = islet::Server::Start(std::move(options));
  if (!server.ok()) { std::fprintf(stderr, "%s\n", server.status().ToString().c_str()); return 1; }
  std::printf("min_http: listening on 127.0.0.1:%s\n", argv[1]);
  std::fflush(stdout);
  int sig;
  sigwait(&set, &sig);
  std::_Exit(0);
}
