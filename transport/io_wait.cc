#include "transport/io_wait.h"

#include <poll.h>
#include <time.h>

#include <algorithm>
#include <cerrno>

#include "transport/errors.h"

namespace islet {

absl::Duration MonotonicNow() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return absl::DurationFromTimespec(ts);
}

absl::Status WaitForIo(int fd, IoInterest interest, absl::Duration deadline,
                       absl::string_view op) {
  struct pollfd p = {};
  p.fd = fd;
  p.events = interest == IoInterest::kWrite ? POLLOUT : POLLIN;
  for (;;) {
    int timeout_ms = -1;
    if (deadline != absl::InfiniteDuration()) {
      const absl::Duration left = deadline - MonotonicNow();
      if (left <= absl::ZeroDuration()) return TimeoutError(op);
      // Round up so we never wake a hair early and spin.
      timeout_ms = static_cast<int>(
          std::min<int64_t>(absl::ToInt64Milliseconds(left + absl::Microseconds(999)),
                            1 << 30));
    }
    const int n = ::poll(&p, 1, timeout_ms);
    if (n > 0) return absl::OkStatus();
    if (n < 0 && errno != EINTR) return PosixError(errno, op);
  }
}

}  // namespace islet
