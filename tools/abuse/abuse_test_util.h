// What the abuse tests share: the flood client as a child process and its output
// lines, a good HTTP client with deadlines, and what /proc says of the harness.
// Every wait has a bound; a failure returns a status naming what was awaited.
#ifndef ISLET_TOOLS_ABUSE_ABUSE_TEST_UTIL_H_
#define ISLET_TOOLS_ABUSE_ABUSE_TEST_UTIL_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "testing/subprocess.h"
#include "transport/unique_fd.h"

namespace islet::abuse {

// The sanitizer the tests run under (ISLET_SANITIZER), or "" in the default build.
std::string Sanitizer();
// `normal` in the default build, `sanitized` under a sanitizer.
int Scaled(int normal, int sanitized);

// One "flood: WHAT key=value ..." line of the flood client.
struct FloodLine {
  std::string what;  // ready, not_ready, status, summary
  std::map<std::string, std::string> fields;
  // A numeric field; -1 when absent or not a number.
  int64_t Get(const std::string& key) const;
  std::string text;  // the line itself, for messages
};

// The flood lines in `output`, in order; other lines are skipped.
std::vector<FloodLine> ParseFloodLines(absl::string_view output);

// Starts //tools/abuse:flood_client against 127.0.0.1:`port` with `flags`.
absl::StatusOr<std::unique_ptr<Subprocess>> StartFlood(uint16_t port,
                                                      const std::vector<std::string>& flags);
// The first line of kind `what` the flood printed (of those `accept` takes, when given),
// waiting up to `timeout`.
absl::StatusOr<FloodLine> WaitForFloodLine(
    Subprocess& flood, absl::string_view what, absl::Duration timeout,
    absl::FunctionRef<bool(const FloodLine&)> accept = [](const FloodLine&) { return true; });
// SIGTERM, then its summary line (the flood exits at once on the signal).
absl::StatusOr<FloodLine> StopFlood(Subprocess& flood, absl::Duration timeout);

// A connected, blocking-free client socket to 127.0.0.1:port, within `deadline`.
// With a finite `attempt`, a connect not established within it is given up and tried
// again on a new socket, as a load balancer's health check does: behind a listen
// backlog that a flood keeps full, the kernel drops SYNs, and a first SYN with its
// retransmits (at 1, 3, 7 and 15 s) are only five draws in half a minute.
absl::StatusOr<UniqueFd> ConnectLoopback(uint16_t port, absl::Time deadline,
                                         absl::Duration attempt = absl::InfiniteDuration());
absl::Status SendAll(int fd, absl::string_view data, absl::Time deadline);

// An HTTP/1.1 response framed by Content-Length, read from `fd` on top of `buffer`
// (what follows it stays there). Returns the status line.
absl::StatusOr<std::string> ReadHttpResponse(int fd, std::string& buffer, absl::Time deadline);

// One GET on a new connection (connected as ConnectLoopback does): the status line of
// its response.
absl::StatusOr<std::string> GetOnNewConnection(
    uint16_t port, absl::Time deadline, absl::Duration connect_attempt = absl::InfiniteDuration());

inline constexpr absl::string_view kGet = "GET / HTTP/1.1\r\nHost: good\r\n\r\n";

// A number from /proc/PID/status, in kB for the Vm* fields; -1 when unreadable.
int64_t ProcStatusKb(pid_t pid, absl::string_view field);
// Descriptors open in `pid`; -1 when unreadable.
int OpenDescriptors(pid_t pid);

}  // namespace islet::abuse

#endif  // ISLET_TOOLS_ABUSE_ABUSE_TEST_UTIL_H_
