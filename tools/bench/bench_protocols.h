// The protocols of the floor servers (epoll_base.h, uring_base.h): per-connection state
// with
//   template <typename Write> void OnData(const char* data, size_t n, Write&& write);
// which answers by calling write(bytes, length) any number of times; the bytes are
// within data or live as long as the program.
#ifndef ISLET_TOOLS_BENCH_BENCH_PROTOCOLS_H_
#define ISLET_TOOLS_BENCH_BENCH_PROTOCOLS_H_

#include <cstddef>

#include "examples/http_hello/hello_response.h"

namespace islet::bench {

// Every byte read is sent straight back, from the bytes read.
struct EchoProtocol {
  template <typename Write>
  void OnData(const char* data, size_t n, Write&& write) {
    write(data, n);
  }
};

// kBatch copies of the response examples/http_hello sends for a keep-alive HTTP/1.1
// request, back to back, built at compile time.
struct HelloResponses {
  static constexpr const auto& kResponse = islet::examples::kHelloResponse;
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

// HTTP/1.1 hello world: every request gets the very bytes examples/http_hello sends for
// a keep-alive HTTP/1.1 request; requests are counted by their "\r\n\r\n" (across
// reads), with no parsing at all. Pipelined requests read together are answered with
// one write (of up to HelloResponses::kBatch responses).
struct HelloHttpProtocol {
  int matched = 0;  // how much of "\r\n\r\n" ended the bytes read so far

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
    constexpr size_t kBatch = HelloResponses::kBatch;
    while (requests > 0) {
      const size_t k = requests < kBatch ? requests : kBatch;
      write(kHelloResponses.bytes, k * HelloResponses::kResponseSize);
      requests -= k;
    }
  }
};

}  // namespace islet::bench

#endif  // ISLET_TOOLS_BENCH_BENCH_PROTOCOLS_H_
