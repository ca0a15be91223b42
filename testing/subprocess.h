// Child processes for tests, each bounded in time and never outliving its test.
//
//  * Subprocess: a program (fork + exec) with its stdout and stderr captured, for tests
//    that drive a binary (the harness, curl) from the outside.
//  * RunCommand: a program run to completion, its input written and its output
//    collected, killed at its deadline (openssl s_client, curl).
//  * ChildProcess: a forked copy of the test running a function, joined to the test by
//    two pipes, for what must not happen in the test's own process (a lowered
//    descriptor limit, thousands of client sockets).
//
//   auto child = Subprocess::Start({"tools/harness/harness", "--port=0"});
//   (*child)->WaitForStdout([](absl::string_view out) { return out.find('\n') !=
//                               absl::string_view::npos; }, absl::Seconds(30));
//   (*child)->Signal(SIGTERM);
//   std::optional<ProcessExit> exit = (*child)->Wait(absl::Seconds(10));
//
// All three fork through ForkChild and hold their child in a ChildPid, which waits with
// a bound and, when destroyed with the child still running, kills it (SIGKILL) and
// reaps it; the child also gets SIGKILL if the thread that started it dies
// (PR_SET_PDEATHSIG). Every wait is bounded by its timeout.
#ifndef ISLET_TESTING_SUBPROCESS_H_
#define ISLET_TESTING_SUBPROCESS_H_

#include <sys/types.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "transport/unique_fd.h"

namespace islet {

// Generous: bounds a child that normally takes milliseconds or seconds, and matters
// only when something is broken (or a sanitizer slows everything down).
inline constexpr absl::Duration kProcessWait = absl::Seconds(20);

// How a child ended.
struct ProcessExit {
  bool exited = false;  // it called exit: `code` holds the status
  int code = 0;
  int signal = 0;  // otherwise: the signal that killed it (0: reaped by someone else)

  // From a waitpid(2) status.
  static ProcessExit FromWaitStatus(int status);
  bool ExitedWith(int c) const { return exited && code == c; }
  std::string ToString() const;  // "exit 0", "signal 9 (Killed)"
};

// Owns a child process: destroyed while the child runs, it kills and reaps it.
class ChildPid {
 public:
  explicit ChildPid(pid_t pid) : pid_(pid) {}
  ~ChildPid() { Kill(); }
  ChildPid(ChildPid&& other) noexcept;
  ChildPid& operator=(ChildPid&&) = delete;
  ChildPid(const ChildPid&) = delete;
  ChildPid& operator=(const ChildPid&) = delete;

  pid_t get() const { return pid_; }

  // The child's waitpid(2) status once it has ended within `timeout` (zero: just
  // checks), nullopt while it still runs. -1 (neither exited nor signalled) when it was
  // reaped by someone else.
  std::optional<int> Wait(absl::Duration timeout);
  // Sends `sig`; false once the child has been reaped.
  bool Signal(int sig);
  // SIGKILL and reap, unless reaped already; the status. Idempotent.
  int Kill();

 private:
  pid_t pid_;
  std::optional<int> status_;  // set once reaped
};

// Forks. In the child, runs `child` and _exits with what it returns. A test that has
// started threads may only make async-signal-safe calls in `child` (another thread may
// have held a lock at the fork, and it stays locked in the child).
absl::StatusOr<ChildPid> ForkChild(absl::FunctionRef<int()> child);

// A pipe, both ends close-on-exec.
struct Pipe {
  static absl::StatusOr<Pipe> Make();
  UniqueFd read_end;
  UniqueFd write_end;
};

// Writes all of `size` bytes to `fd` (a pipe); false on failure. Async-signal-safe.
bool WriteAll(int fd, const void* data, size_t size);
// Reads exactly `size` bytes from `fd` (a pipe) within `timeout`; false on end of
// file, failure or time out.
bool ReadAll(int fd, void* data, size_t size, absl::Duration timeout);

// ---- Subprocess: a program with its output captured ----

struct SubprocessOptions {
  // Replaces the environment when given; by default the child inherits ours.
  std::optional<std::vector<std::string>> env;
  // Standard input is a pipe the test writes with WriteStdin; by default /dev/null.
  bool pipe_stdin = false;
  // Standard error goes where standard output goes, interleaved as written: one
  // transcript, in Stdout().
  bool stderr_to_stdout = false;
  // Descriptors of ours the child gets at the given numbers (3 or more), as a service
  // manager passes sockets: {our descriptor, its number in the child}.
  std::vector<std::pair<int, int>> pass_fds;
};

// A background thread drains the output pipes all the time, so a chatty child never
// blocks on a full pipe.
class Subprocess {
 public:
  using Exit = ProcessExit;

  // Starts argv[0] (a path: no PATH search). The child starts with an empty signal mask
  // and default dispositions for the usual stop signals. An error when argv[0] cannot
  // be executed.
  static absl::StatusOr<std::unique_ptr<Subprocess>> Start(
      const std::vector<std::string>& argv, const SubprocessOptions& options);
  static absl::StatusOr<std::unique_ptr<Subprocess>> Start(
      const std::vector<std::string>& argv,
      const std::optional<std::vector<std::string>>& env = std::nullopt) {
    return Start(argv, SubprocessOptions{.env = env});
  }

  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const { return child_.get(); }

  // What the child has written so far.
  std::string Stdout() const;
  std::string Stderr() const;

  // Waits until `done` holds for everything written so far to the stream, or the stream
  // closes, or `timeout` passes; true when `done` holds.
  bool WaitForStdout(const std::function<bool(absl::string_view)>& done,
                     absl::Duration timeout);
  bool WaitForStderr(const std::function<bool(absl::string_view)>& done,
                     absl::Duration timeout);

  // With pipe_stdin: writes all of `data` within `timeout`; false when the child closed
  // its input (never SIGPIPE), or on time out. CloseStdin sends it end of file.
  bool WriteStdin(absl::string_view data, absl::Duration timeout);
  void CloseStdin() { stdin_.reset(); }

  // Sends `sig`; false when the child has been reaped already.
  bool Signal(int sig) { return child_.Signal(sig); }

  // Reaps the child if it ends within `timeout` (zero: just checks), then gives the
  // pipes a moment to deliver what it wrote last. nullopt: still running.
  std::optional<Exit> Wait(absl::Duration timeout);
  bool Running() { return !Wait(absl::ZeroDuration()).has_value(); }

  // SIGKILL and reap (if still running). Idempotent.
  void Kill() { child_.Kill(); }

 private:
  explicit Subprocess(ChildPid child) : child_(std::move(child)) {}
  void ReadLoop();
  bool WaitFor(bool on_stdout, const std::function<bool(absl::string_view)>& done,
               absl::Duration timeout);

  ChildPid child_;
  UniqueFd stdin_;
  UniqueFd stdout_;
  UniqueFd stderr_;  // invalid with stderr_to_stdout
  UniqueFd wake_read_;  // the destructor writes to wake_write_ to stop ReadLoop
  UniqueFd wake_write_;
  std::thread reader_;

  mutable absl::Mutex mu_;
  std::string stdout_text_ ABSL_GUARDED_BY(mu_);
  std::string stderr_text_ ABSL_GUARDED_BY(mu_);
  bool stdout_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool stderr_closed_ ABSL_GUARDED_BY(mu_) = false;
};

// ---- RunCommand: a program run to completion ----

struct CommandResult {
  int exit_code = -1;  // -1 when killed by a signal (or at the deadline)
  bool timed_out = false;
  std::string output;  // stdout and stderr, interleaved; or why it could not start
};

struct CommandOptions {
  // Written to the program's standard input.
  std::string input;
  // Standard input is closed once `input` is written and this returns true for the
  // output so far (default: at once). Lets a test hold a session open until the
  // server's answer arrived, without sleeping.
  std::function<bool(const std::string& output)> close_input_when;
  absl::Duration timeout = kProcessWait;
};

// Runs argv[0] (an absolute path) with argv, killed when options.timeout passes.
CommandResult RunCommand(const std::vector<std::string>& argv, const CommandOptions& options = {});

// The absolute path of `name` on PATH (or in /usr/bin, /bin, /usr/local/bin), or "".
std::string FindProgram(const std::string& name);

// ---- ChildProcess: a function in a forked child ----

// A forked process that runs `body` and exits with what it returns, talking to the
// test through two pipes. Fork while the test has no other thread (before any server
// starts): the child copies only the forking thread, and a lock another thread held
// would stay locked in it forever.
//
//   auto child = ChildProcess::Fork([](int to_parent, int from_parent) {
//     return WriteAll(to_parent, "R", 1) ? 0 : 1;  // the exit code
//   });
//   ASSERT_NE(child, nullptr);
//   char ready = 0;
//   ASSERT_TRUE(child->Read(&ready, 1, kProcessWait));
//   std::optional<int> status = child->Wait(kProcessWait);  // as waitpid gives it
class ChildProcess {
 public:
  using Body = std::function<int(int to_parent, int from_parent)>;

  // Forks; in the child, runs `body` with its ends of the pipes and _exits with the
  // result (never returning there). nullptr, with the failure reported, when the pipes
  // or the fork fail.
  static std::unique_ptr<ChildProcess> Fork(const Body& body);

  // A child not yet waited for is killed and reaped.
  ~ChildProcess() = default;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // To the child's `from_parent`; false on failure.
  bool Write(const void* data, size_t size) { return WriteAll(to_child_.get(), data, size); }
  // Exactly `size` bytes from the child's `to_parent` within `timeout`.
  bool Read(void* data, size_t size, absl::Duration timeout) {
    return ReadAll(from_child_.get(), data, size, timeout);
  }

  // Waits up to `timeout` for the child to exit: its status as waitpid(2) reports it
  // (WIFEXITED, WEXITSTATUS), or nullopt when it is still running.
  std::optional<int> Wait(absl::Duration timeout) { return child_.Wait(timeout); }
  // Sends `sig`; false when the child has been reaped already.
  bool Signal(int sig) { return child_.Signal(sig); }

 private:
  ChildProcess(ChildPid child, UniqueFd from_child, UniqueFd to_child)
      : child_(std::move(child)),
        from_child_(std::move(from_child)),
        to_child_(std::move(to_child)) {}

  ChildPid child_;
  UniqueFd from_child_;
  UniqueFd to_child_;
};

}  // namespace islet

#endif  // ISLET_TESTING_SUBPROCESS_H_
