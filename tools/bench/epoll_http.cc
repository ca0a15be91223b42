// epoll_http: the ceiling for an HTTP/1.1 hello-world server. Every request gets the
// very bytes examples/http_hello sends for a keep-alive HTTP/1.1 request; requests are
// counted by their "\r\n\r\n" (across reads), with no parsing at all
// (HelloHttpProtocol). Pipelined requests read together are answered with one send().
//
//   epoll_http --port=0 [--threads=N] [--ip=127.0.0.1]
#include "tools/bench/bench_protocols.h"
#include "tools/bench/epoll_base.h"

int main(int argc, char** argv) {
  islet::bench::RunEpollServer<islet::bench::HelloHttpProtocol>("epoll_http", argc, argv);
}
