// uring_http: the io_uring floor for an HTTP/1.1 hello-world server (uring_base.h):
// epoll_http's protocol (HelloHttpProtocol: the very bytes examples/http_hello sends,
// requests counted by their "\r\n\r\n"). Pipelined requests read together are answered
// with one send SQE, straight from static bytes.
//
//   uring_http --port=0 [--threads=N] [--ip=127.0.0.1] [feature flags: uring_base.h]
#include "tools/bench/bench_protocols.h"
#include "tools/bench/uring_base.h"

int main(int argc, char** argv) {
  islet::bench::RunUringServer<islet::bench::HelloHttpProtocol>("uring_http", argc, argv);
}
