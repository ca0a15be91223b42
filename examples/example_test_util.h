// A server on 127.0.0.1 (kernel-chosen port) for the examples' tests, and clients for it.
#ifndef ISLET_EXAMPLES_EXAMPLE_TEST_UTIL_H_
#define ISLET_EXAMPLES_EXAMPLE_TEST_UTIL_H_

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>

#include "gtest/gtest.h"
#include "server/server.h"
#include "transport/errors.h"
#include "transport/tcp_transport.h"

namespace islet::examples {

class ExampleServer {
 public:
  explicit ExampleServer(HandlerFactory factory, std::any handler_options = {},
                         ServerOptions options = {}) {
    options.port = 0;
    options.transport_options.address = "127.0.0.1";
    options.handler_factory = std::move(factory);
    options.handler_options = std::move(handler_options);
    auto started = Server::Start(std::move(options));
    EXPECT_TRUE(started.ok()) << started.status();
    if (started.ok()) server_ = *std::move(started);
  }

  Server& server() { return *server_; }
  SocketInfo where() const { return *server_->ListenerInfo(); }

  std::unique_ptr<TcpSocket> Connect() {
    auto client = TcpSocket::Connect(where(), absl::Seconds(10));
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

 private:
  std::unique_ptr<Server> server_;
};

// Reads until the peer closes (or `timeout` passes): everything received, and whether
// the close was orderly (EOF, not a reset or a timeout).
struct ReadToEnd {
  std::string data;
  bool orderly_close = false;
  absl::Status last;
};

// Bytes that differ from position to position (xorshift from `seed`), so a lost,
// repeated or reordered chunk shows.
inline std::string Pattern(size_t size, uint32_t seed) {
  std::string out(size, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < size; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    out[i] = static_cast<char>(x);
  }
  return out;
}

// `bytes`, or an eighth of it under a sanitizer (ISLET_SANITIZER), where everything is
// several times slower.
inline size_t ScaledForSanitizer(size_t bytes) {
  return std::getenv("ISLET_SANITIZER") != nullptr ? bytes / 8 : bytes;
}

inline ReadToEnd ReadUntilClosed(Socket& socket, absl::Duration timeout = absl::Seconds(10)) {
  ReadToEnd out;
  for (;;) {
    absl::StatusOr<std::string> got = socket.Recv(0, timeout);
    if (!got.ok()) {
      out.last = got.status();
      out.orderly_close = IsPeerClosed(got.status());
      return out;
    }
    out.data += *got;
  }
}

}  // namespace islet::examples

#endif  // ISLET_EXAMPLES_EXAMPLE_TEST_UTIL_H_
