// The protocols of the floor servers (epoll_base.h, uring_base.h): per-connection state
// with
//   template <typename Write> void OnData(const char* data, size_t n, Write&& write);
// which answers by calling write(bytes, length) any number of times; the bytes are
// within data or live as long as the program. Once `close_requested` is set, the server
// sends what was written, closes the connection and reads nothing more.
#ifndef ISLET_TOOLS_BENCH_BENCH_PROTOCOLS_H_
#define ISLET_TOOLS_BENCH_BENCH_PROTOCOLS_H_

#include <cstddef>
#include <cstring>

#include "examples/http_hello/hello_response.h"

namespace islet::bench {

// Every byte read is sent straight back, from the bytes read.
struct EchoProtocol {
  bool close_requested = false;  // never: the client closes

  template <typename Write>
  void OnData(const char* data, size_t n, Write&& write) {
    write(data, n);
  }
};

// kBatch copies of the response examples/http_hello sends for a keep-alive HTTP/1.1
// request, back to back, built at compile time.
struct HelloResponses {
  static constexpr const auto& kResponse = examples::kHelloResponse;
  static constexpr size_t kResponseSize = sizeof(kResponse) - 1;
  static constexpr size_t kBatch = 64;

  constexpr HelloResponses() {
    for (size_t i = 0; i < kBatch; ++i) {
      for (size_t j = 0; j < kResponseSize; ++j) bytes[i * kResponseSize + j] = kResponse[j];
    }
  }
  char bytes[kBatch * kResponseSize] = {};
};
inline constexpr HelloResponses kHelloResponses;
inline constexpr const auto& kHelloCloseResponse = examples::kHelloCloseResponse;

// HTTP/1.1 hello world: every request gets the very bytes examples/http_hello sends for
// a keep-alive HTTP/1.1 request; requests are counted by their "\r\n\r\n" (across
// reads), with no parsing at all. Pipelined requests read together are answered with
// one write (of up to HelloResponses::kBatch responses). Bytes read that hold the header
// "Connection: close" (as wrk -H sends it; not searched across reads) have their last
// request answered with examples/http_hello's close response, and the connection closes
// after it: the churn case, a new connection per request.
struct HelloHttpProtocol {
  int matched = 0;  // how much of "\r\n\r\n" ended the bytes read so far
  bool close_requested = false;

  template <typename Write>
  void OnData(const char* data, size_t n, Write&& write) {
    static constexpr char kEnd[4] = {'\r', '\n', '\r', '\n'};
    size_t requests = 0;
    int m = matched;
    for (size_t i = 0; i < n; ++i) {
      const char c = data[i];
      if (c == kEnd[m]) {
        if (++m == 4) {
          ++requests;
          m = 0;
        }
      } else {
        m = c == '\r' ? 1 : 0;
      }
    }
    matched = m;
    static constexpr char kClose[] = "\r\nConnection: close\r\n";
    if (requests > 0 && ::memmem(data, n, kClose, sizeof(kClose) - 1) != nullptr) {
      close_requested = true;
      --requests;  // answered last, below
    }
    constexpr size_t kBatch = HelloResponses::kBatch;
    while (requests > 0) {
      const size_t k = requests < kBatch ? requests : kBatch;
      write(kHelloResponses.bytes, k * HelloResponses::kResponseSize);
      requests -= k;
    }
    if (close_requested) write(kHelloCloseResponse, sizeof(kHelloCloseResponse) - 1);
  }
};

}  // namespace islet::bench

#endif  // ISLET_TOOLS_BENCH_BENCH_PROTOCOLS_H_
