// Test helper for event_loop_kind_test: starts a server on io_uring in a process whose
// seccomp filter refuses io_uring_setup with the errno named by argv[1] (EPERM, as
// kernel.io_uring_disabled or a container's policy do; ENOSYS, as a kernel without
// io_uring does), and prints Server::Start's error. Exits 0 if Start failed, 1 if it
// succeeded, 2 if the filter could not be installed.
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "server/server.h"

namespace {

bool RefuseIoUringSetup(int err) {
  sock_filter program[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (static_cast<unsigned>(err) & 0xffff)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog filter = {sizeof(program) / sizeof(program[0]), program};
  return ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
         ::syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &filter) == 0;
}

class Silent : public islet::Handler {};

}  // namespace

int main(int argc, char** argv) {
  const int err = argc > 1 && std::strcmp(argv[1], "ENOSYS") == 0 ? ENOSYS : EPERM;
  if (!RefuseIoUringSetup(err)) {
    std::printf("seccomp: %s\n", std::strerror(errno));
    return 2;
  }
  islet::ServerOptions options;
  options.port = 0;
  options.transport_options.address = "127.0.0.1";
  options.num_workers = 1;
  options.event_loop = islet::EventLoopKind::kIoUring;
  options.handler_factory = [](const std::any&) { return std::make_unique<Silent>(); };
  absl::StatusOr<std::unique_ptr<islet::Server>> server = islet::Server::Start(options);
  if (server.ok()) {
    std::printf("started on %s\n", (*server)->Info().event_loop.c_str());
    return 1;
  }
  std::printf("%s\n", server.status().ToString().c_str());
  return 0;
}
