// EventLoopKind: which kernel interface a worker's event loop waits on.
//
//   kEpoll    level-triggered epoll (the default, and the reference).
//   kIoUring  an io_uring ring (Linux 6.1+; see docs/IO_URING.md). Where the kernel or
//             its policy refuses io_uring (kernel.io_uring_disabled, a seccomp filter,
//             an older kernel), creating such a loop fails with a message saying why.
//   kDefault  the ISLET_EVENT_LOOP environment variable ("epoll" or "io_uring") if set,
//             else kEpoll: an operator can try the other loop without a rebuild, as gRPC's
//             GRPC_POLL_STRATEGY does, and the test suite runs once per loop this way.
#ifndef ISLET_SERVER_EVENT_LOOP_KIND_H_
#define ISLET_SERVER_EVENT_LOOP_KIND_H_

#include <optional>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace islet {

enum class EventLoopKind { kDefault, kEpoll, kIoUring };

// "default", "epoll", "io_uring".
absl::string_view EventLoopKindName(EventLoopKind kind);
// The inverse of EventLoopKindName; nullopt for anything else.
std::optional<EventLoopKind> ParseEventLoopKind(absl::string_view name);
// kEpoll or kIoUring: kDefault resolved through ISLET_EVENT_LOOP. InvalidArgument, naming
// the variable, when it holds anything but "epoll" or "io_uring".
absl::StatusOr<EventLoopKind> ResolveEventLoopKind(EventLoopKind kind);

}  // namespace islet

#endif  // ISLET_SERVER_EVENT_LOOP_KIND_H_
