// uring_echo: the io_uring floor for an echo server (uring_base.h). Every byte read is
// sent straight back from the provided buffer it arrived in, which returns to the ring
// once the send completes (no copy unless the kernel refuses part of it).
//
//   uring_echo --port=0 [--threads=N] [--ip=127.0.0.1] [feature flags: uring_base.h]
#include "tools/bench/bench_protocols.h"
#include "tools/bench/uring_base.h"

int main(int argc, char** argv) {
  islet::bench::RunUringServer<islet::bench::EchoProtocol>("uring_echo", argc, argv);
}
