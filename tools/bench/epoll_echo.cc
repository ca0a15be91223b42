// epoll_echo: the ceiling for an echo server. Every byte read is sent straight back
// from the read buffer (no copy unless the kernel refuses part of it).
//
//   epoll_echo --port=0 [--threads=N] [--ip=127.0.0.1]
#include "tools/bench/bench_protocols.h"
#include "tools/bench/epoll_base.h"

int main(int argc, char** argv) {
  islet::bench::RunEpollServer<islet::bench::EchoProtocol>("epoll_echo", argc, argv);
}
