// Subprocess: a child process with its stdout and stderr captured, for tests that drive
// a binary (the harness, curl) from the outside.
//
//   auto child = Subprocess::Start({"tools/harness/harness", "--port=0"});
//   (*child)->WaitForStdout([](absl::string_view out) { return out.find('\n') !=
//                               absl::string_view::npos; }, absl::Seconds(30));
//   (*child)->Signal(SIGTERM);
//   std::optional<Subprocess::Exit> exit = (*child)->Wait(absl::Seconds(10));
//
// A background thread drains both pipes all the time, so a chatty child never blocks
// on a full pipe. The destructor kills a child still running (SIGKILL) and reaps it,
// so a failing test leaves nothing behind; the child also gets SIGKILL if the thread
// that started it dies (PR_SET_PDEATHSIG). Every wait is bounded by its timeout.
#ifndef ISLET_TOOLS_HARNESS_SUBPROCESS_H_
#define ISLET_TOOLS_HARNESS_SUBPROCESS_H_

#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace islet::harness {

class Subprocess {
 public:
  // How the child ended.
  struct Exit {
    bool exited = false;  // it called exit: `code` holds the status
    int code = 0;
    int signal = 0;  // otherwise: the signal that killed it
    bool ExitedWith(int c) const { return exited && code == c; }
    std::string ToString() const;  // "exit 0", "signal 9 (Killed)"
  };

  // Starts argv[0] (a path: no PATH search) with stdin from /dev/null. `env` replaces
  // the environment when given; by default the child inherits ours. The child starts
  // with an empty signal mask and default dispositions for the usual stop signals.
  static absl::StatusOr<std::unique_ptr<Subprocess>> Start(
      const std::vector<std::string>& argv,
      const std::optional<std::vector<std::string>>& env = std::nullopt);

  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const { return pid_; }

  // What the child has written so far.
  std::string Stdout() const;
  std::string Stderr() const;

  // Waits until `done` holds for everything written so far to the stream, or the stream
  // closes, or `timeout` passes; true when `done` holds.
  bool WaitForStdout(const std::function<bool(absl::string_view)>& done,
                     absl::Duration timeout);
  bool WaitForStderr(const std::function<bool(absl::string_view)>& done,
                     absl::Duration timeout);

  // Sends `sig`; false when the child has been reaped already.
  bool Signal(int sig);

  // Reaps the child if it ends within `timeout` (zero: just checks), then gives the
  // pipes a moment to deliver what it wrote last. nullopt: still running.
  std::optional<Exit> Wait(absl::Duration timeout);
  bool Running() { return !Wait(absl::ZeroDuration()).has_value(); }

  // SIGKILL and reap (if still running). Idempotent.
  void Kill();

 private:
  Subprocess() = default;
  void ReadLoop();
  bool WaitFor(bool on_stdout, const std::function<bool(absl::string_view)>& done,
               absl::Duration timeout);

  pid_t pid_ = -1;
  std::optional<Exit> exit_;
  int stdout_fd_ = -1;
  int stderr_fd_ = -1;
  int wake_read_fd_ = -1;   // the destructor writes to wake_write_fd_ to stop ReadLoop
  int wake_write_fd_ = -1;
  std::thread reader_;

  mutable absl::Mutex mu_;
  std::string stdout_ ABSL_GUARDED_BY(mu_);
  std::string stderr_ ABSL_GUARDED_BY(mu_);
  bool stdout_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool stderr_closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace islet::harness

#endif  // ISLET_TOOLS_HARNESS_SUBPROCESS_H_
