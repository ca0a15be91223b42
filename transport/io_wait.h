// Waiting for one descriptor with a deadline on the monotonic clock.
#ifndef ISLET_TRANSPORT_IO_WAIT_H_
#define ISLET_TRANSPORT_IO_WAIT_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "transport/transport.h"

namespace islet {

// Time since an arbitrary fixed point (CLOCK_MONOTONIC): immune to clock changes.
absl::Duration MonotonicNow();

// Waits until `fd` is ready for `interest` or until `deadline` (a MonotonicNow value;
// absl::InfiniteDuration() for none) passes: OK, or DeadlineExceeded("<op>: timed out").
// Errors and hang-ups count as ready: the next call on the socket reports them.
absl::Status WaitForIo(int fd, IoInterest interest, absl::Duration deadline,
                       absl::string_view op);

}  // namespace islet

#endif  // ISLET_TRANSPORT_IO_WAIT_H_
