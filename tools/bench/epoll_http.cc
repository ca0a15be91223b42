// epoll_http: the ceiling for an HTTP/1.1 hello-world server. Every request gets the
// very bytes examples/http_hello sends for a keep-alive HTTP/1.1 request; requests are
// counted by their "\r\n\r\n" (across reads), with no parsing at all. Pipelined requests
// read together are answered with one send().
//
//   epoll_http --port=0 [--threads=N] [--ip=127.0.0.1]
#include <cstring>

#include "examples/http_hello/hello_response.h"
#include "tools/bench/epoll_base.h"

namespace {

// Byte for byte what examples/http_hello answers.
constexpr const auto& kResponse = islet::examples::kHelloResponse;
constexpr size_t kResponseSize = sizeof(kResponse) - 1;
constexpr size_t kBatch = 64;  // responses in the prebuilt buffer

struct Responses {
  Responses() {
    for (size_t i = 0; i < kBatch; ++i) std::memcpy(bytes + i * kResponseSize, kResponse, kResponseSize);
  }
  char bytes[kBatch * kResponseSize];
};
const Responses responses;

struct Http {
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
    while (requests > 0) {
      const size_t k = requests < kBatch ? requests : kBatch;
      write(responses.bytes, k * kResponseSize);
      requests -= k;
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  islet::bench::RunEpollServer<Http>("epoll_http", argc, argv);
}
