// Exits 0 where an io_uring event loop can be set up, 77 (with the reason on stdout)
// where the kernel or its policy refuses it: how the io_uring test twins
// (bazel/with_event_loop.sh) tell a machine without io_uring from a failure.
#include <cstdio>
#include <memory>
#include <string>

#include "server/event_loop.h"

int main() {
  absl::StatusOr<std::unique_ptr<islet::EventLoop>> loop =
      islet::EventLoop::Create(islet::EventLoopKind::kIoUring);
  if (!loop.ok()) {
    std::printf("%s\n", std::string(loop.status().message()).c_str());
    return 77;
  }
  std::printf("%s\n", (*loop)->description().c_str());
  return 0;
}
