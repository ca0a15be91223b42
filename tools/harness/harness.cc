// The server harness: for now a minimal echo server on the TCP transport, listening on
// 127.0.0.1:4000 (or --port=N). It becomes the full harness once the server lands.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/match.h"
#include "transport/errors.h"
#include "transport/tcp_transport.h"

int main(int argc, char** argv) {
  uint16_t port = 4000;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    uint32_t value = 0;
    if (absl::StartsWith(arg, "--port=") && absl::SimpleAtoi(arg.substr(7), &value) &&
        value <= 65535) {
      port = static_cast<uint16_t>(value);
    } else {
      std::fprintf(stderr, "harness: unknown or bad flag: %s\n", arg.c_str());
      return 2;
    }
  }
  islet::TcpTransport tcp;
  auto listener = tcp.Listen(port, {.address = "127.0.0.1"});
  if (!listener.ok()) {
    std::fprintf(stderr, "harness: %s\n", listener.status().ToString().c_str());
    return 2;
  }
  auto local = (*listener)->LocalInfo();
  std::printf("islet harness (echo) listening on %s\n", local->ToString().c_str());
  std::fflush(stdout);
  for (;;) {
    auto socket = (*listener)->Accept();
    if (!socket.ok()) {
      if (islet::IsClosed(socket.status())) return 0;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    std::thread([s = std::move(*socket)]() {
      for (;;) {
        auto data = s->Recv(0, absl::InfiniteDuration());
        if (!data.ok() || !s->Send(*data).ok()) return;
      }
    }).detach();
  }
}
