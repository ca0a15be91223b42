// epoll_echo: the ceiling for an echo server. Every byte read is sent straight back
// from the read buffer (no copy unless the kernel refuses part of it).
//
//   epoll_echo --port=0 [--threads=N] [--ip=127.0.0.1]
#include "tools/bench/epoll_base.h"

namespace {

struct Echo {
  template <typename Write>
  void OnData(const char* data, size_t n, Write&& write) {
    write(data, n);
  }
};

}  // namespace

int main(int argc, char** argv) {
  islet::bench::RunEpollServer<Echo>("epoll_echo", argc, argv);
}
