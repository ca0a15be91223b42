// What the harness's end-to-end tests share: finding the binary, starting it and
// reading its listening line, stopping it, and checking a usage error's one line.
// Every wait has a generous bound: these only fail when something hangs.
#ifndef ISLET_TOOLS_HARNESS_HARNESS_TEST_UTIL_H_
#define ISLET_TOOLS_HARNESS_HARNESS_TEST_UTIL_H_

#include <csignal>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "testing/subprocess.h"

namespace islet::harness {

inline constexpr absl::Duration kStartTimeout = absl::Seconds(30);
inline constexpr absl::Duration kIoTimeout = absl::Seconds(10);
inline constexpr absl::Duration kExitTimeout = absl::Seconds(10);

// A file of the test's runfiles, by its path in the workspace.
std::string RunfilePath(const std::string& relative);
std::string HarnessPath();

// The child's state, stdout and stderr, for a failure message.
std::string Describe(Subprocess& child);

// A running harness and where it listens.
struct Harness {
  std::unique_ptr<Subprocess> process;
  std::string line;  // the listening line, without its newline
  uint16_t port = 0;
};

// Starts the harness with `flags` and waits for its listening line. With
// `tcp_on_loopback` the line must name 127.0.0.1:PORT, and the port is parsed from it.
// Use with ASSERT_NO_FATAL_FAILURE.
void StartHarness(const std::vector<std::string>& flags, Harness* out,
                  bool tcp_on_loopback = true);

// Sends `sig` and expects exit 0 within `bound`.
void StopAndExpectExit0(Subprocess& child, int sig = SIGTERM,
                        absl::Duration bound = kExitTimeout);

// Exactly one line, non-empty, and nothing else.
void ExpectOneLine(absl::string_view text);

// Runs the harness with `flags`; expects exit 2, nothing on stdout, and one line on
// stderr starting "harness: " (so no log line came before it). Returns that line.
std::string ExpectUsageError(const std::vector<std::string>& flags);

}  // namespace islet::harness

#endif  // ISLET_TOOLS_HARNESS_HARNESS_TEST_UTIL_H_
