#include "testing/subprocess.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdlib>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

extern char** environ;

namespace islet {
namespace {

absl::Status Errno(int err, absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", strerror(err)));
}

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// poll(2) for one descriptor until `deadline`: true when `events` came (or an error
// or hang-up, which the next read or write reports).
bool PollUntil(int fd, short events, absl::Time deadline) {
  for (;;) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    pollfd pfd = {fd, events, 0};
    const int ready = ::poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (ready > 0) return true;
    if (ready < 0 && errno != EINTR) return false;
  }
}

// write(2) with SIGPIPE blocked in this thread, and a SIGPIPE it raised swallowed, so a
// reader that went away is EPIPE and nothing else (and a SIGPIPE pending for someone
// else stays pending).
ssize_t WriteWithoutSigpipe(int fd, const char* data, size_t size) {
  sigset_t pipe_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  sigset_t pending;
  sigpending(&pending);
  const bool was_pending = sigismember(&pending, SIGPIPE) == 1;
  sigset_t old_mask;
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);
  const ssize_t n = ::write(fd, data, size);
  const int err = errno;
  if (n < 0 && err == EPIPE && !was_pending) {
    const timespec zero = {0, 0};
    while (sigtimedwait(&pipe_set, nullptr, &zero) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  errno = err;
  return n;
}

}  // namespace

// ---- Shared pieces ----

ProcessExit ProcessExit::FromWaitStatus(int status) {
  ProcessExit e;
  if (WIFEXITED(status)) {
    e.exited = true;
    e.code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    e.signal = WTERMSIG(status);
  }
  return e;
}

std::string ProcessExit::ToString() const {
  if (exited) return absl::StrCat("exit ", code);
  return absl::StrCat("signal ", signal, " (", strsignal(signal), ")");
}

ChildPid::ChildPid(ChildPid&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)), status_(std::move(other.status_)) {}

std::optional<int> ChildPid::Wait(absl::Duration timeout) {
  if (status_.has_value() || pid_ <= 0) return status_;
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t waited = ::waitpid(pid_, &status, WNOHANG);
    if (waited == pid_) {
      status_ = status;
      return status_;
    }
    if (waited < 0 && errno != EINTR) {
      status_ = -1;  // not ours any more
      return status_;
    }
    if (absl::Now() >= deadline) return std::nullopt;
    absl::SleepFor(absl::Milliseconds(5));
  }
}

bool ChildPid::Signal(int sig) {
  if (status_.has_value() || pid_ <= 0) return false;
  return ::kill(pid_, sig) == 0;
}

int ChildPid::Kill() {
  if (status_.has_value() || pid_ <= 0) return status_.value_or(-1);
  ::kill(pid_, SIGKILL);
  int status = 0;
  pid_t waited;
  do {
    waited = ::waitpid(pid_, &status, 0);
  } while (waited < 0 && errno == EINTR);
  status_ = waited == pid_ ? status : -1;
  return *status_;
}

absl::StatusOr<ChildPid> ForkChild(absl::FunctionRef<int()> child) {
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return Errno(errno, "fork");
  if (pid == 0) {
    // Dies with the thread that started it, even if that one crashes.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::_exit(child());
  }
  return ChildPid(pid);
}

absl::StatusOr<Pipe> Pipe::Make() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return Errno(errno, "pipe2");
  Pipe pipe;
  pipe.read_end.reset(fds[0]);
  pipe.write_end.reset(fds[1]);
  return pipe;
}

bool WriteAll(int fd, const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t w = ::write(fd, p, size);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    size -= static_cast<size_t>(w);
  }
  return true;
}

bool ReadAll(int fd, void* data, size_t size, absl::Duration timeout) {
  char* p = static_cast<char*>(data);
  const absl::Time deadline = absl::Now() + timeout;
  while (size > 0) {
    if (!PollUntil(fd, POLLIN, deadline)) return false;
    const ssize_t r = ::read(fd, p, size);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    size -= static_cast<size_t>(r);
  }
  return true;
}

// ---- Subprocess ----

absl::StatusOr<std::unique_ptr<Subprocess>> Subprocess::Start(
    const std::vector<std::string>& argv, const SubprocessOptions& options) {
  if (argv.empty()) return absl::InvalidArgumentError("Subprocess::Start: empty argv");
  // Everything the child needs is prepared before fork: after it, only
  // async-signal-safe calls are allowed (other threads may hold locks).
  std::vector<std::string> args = argv;
  std::vector<char*> c_args = CStrings(args);
  std::vector<std::string> envs;
  std::vector<char*> c_envs;
  char** child_env = environ;
  if (options.env.has_value()) {
    envs = *options.env;
    c_envs = CStrings(envs);
    child_env = c_envs.data();
  }

  Pipe in, out, err;
  if (options.pipe_stdin) {
    absl::StatusOr<Pipe> made = Pipe::Make();
    if (!made.ok()) return made.status();
    in = *std::move(made);
  }
  for (Pipe* pipe : {&out, &err}) {
    if (pipe == &err && options.stderr_to_stdout) continue;
    absl::StatusOr<Pipe> made = Pipe::Make();
    if (!made.ok()) return made.status();
    *pipe = *std::move(made);
  }
  // Closes (EOF) when execve succeeds; otherwise it carries errno.
  absl::StatusOr<Pipe> exec = Pipe::Make();
  if (!exec.ok()) return exec.status();

  const int stdin_fd = in.read_end.get();
  const int stdout_fd = out.write_end.get();
  const int stderr_fd = options.stderr_to_stdout ? stdout_fd : err.write_end.get();
  const int exec_fd = exec->write_end.get();
  absl::StatusOr<ChildPid> pid = ForkChild([&]() -> int {
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int sig : {SIGTERM, SIGINT, SIGPIPE, SIGHUP, SIGQUIT}) ::sigaction(sig, &dfl, nullptr);
    int failed_errno = 0;
    int report_fd = exec_fd;
    if (!options.pass_fds.empty()) {
      // Every source (and the exec pipe) first moves above the targets, so that placing
      // one never overwrites another; dup2 leaves the placed copy inheritable.
      report_fd = ::fcntl(exec_fd, F_DUPFD_CLOEXEC, 256);
      for (const auto& [from, to] : options.pass_fds) {
        const int high = ::fcntl(from, F_DUPFD_CLOEXEC, 256 + to);
        if (high < 0 || ::dup2(high, to) != to) failed_errno = errno;
      }
    }
    const int input = stdin_fd >= 0 ? stdin_fd : ::open("/dev/null", O_RDONLY);
    if (failed_errno != 0 || input < 0 || ::dup2(input, 0) < 0 || ::dup2(stdout_fd, 1) < 0 ||
        ::dup2(stderr_fd, 2) < 0) {
      if (failed_errno == 0) failed_errno = errno;
    } else {
      ::execve(c_args[0], c_args.data(), child_env);
      failed_errno = errno;
    }
    WriteAll(report_fd, &failed_errno, sizeof(failed_errno));
    return 127;
  });
  if (!pid.ok()) return pid.status();

  // The parent keeps only its own ends.
  in.read_end.reset();
  out.write_end.reset();
  err.write_end.reset();
  exec->write_end.reset();
  int child_errno = 0;
  ssize_t got;
  do {
    got = ::read(exec->read_end.get(), &child_errno, sizeof(child_errno));
  } while (got < 0 && errno == EINTR);
  if (got > 0) {
    pid->Wait(absl::InfiniteDuration());  // it exits at once
    return Errno(child_errno, absl::StrCat("exec ", argv[0]));
  }

  auto child = std::unique_ptr<Subprocess>(new Subprocess(*std::move(pid)));
  child->stdin_ = std::move(in.write_end);
  child->stdout_ = std::move(out.read_end);
  child->stderr_ = std::move(err.read_end);
  if (!child->stderr_) {
    absl::MutexLock lock(&child->mu_);
    child->stderr_closed_ = true;
  }
  int wake[2];
  if (::pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0) return Errno(errno, "pipe2");
  child->wake_read_.reset(wake[0]);
  child->wake_write_.reset(wake[1]);
  child->reader_ = std::thread([c = child.get()] { c->ReadLoop(); });
  return child;
}

Subprocess::~Subprocess() {
  Kill();
  if (reader_.joinable()) {
    const char byte = 1;
    (void)!::write(wake_write_.get(), &byte, 1);
    reader_.join();
  }
}

void Subprocess::ReadLoop() {
  bool out_open = true;
  bool err_open = stderr_.valid();
  char buf[16384];
  while (out_open || err_open) {
    pollfd fds[3] = {{out_open ? stdout_.get() : -1, POLLIN, 0},
                     {err_open ? stderr_.get() : -1, POLLIN, 0},
                     {wake_read_.get(), POLLIN, 0}};
    if (::poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[2].revents != 0) break;  // the destructor wants us gone
    for (int i = 0; i < 2; ++i) {
      if (fds[i].revents == 0) continue;
      ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      absl::MutexLock lock(&mu_);
      if (n <= 0) {
        (i == 0 ? out_open : err_open) = false;
        (i == 0 ? stdout_closed_ : stderr_closed_) = true;
      } else {
        (i == 0 ? stdout_text_ : stderr_text_).append(buf, static_cast<size_t>(n));
      }
    }
  }
  absl::MutexLock lock(&mu_);
  stdout_closed_ = stderr_closed_ = true;
}

std::string Subprocess::Stdout() const {
  absl::MutexLock lock(&mu_);
  return stdout_text_;
}

std::string Subprocess::Stderr() const {
  absl::MutexLock lock(&mu_);
  return stderr_text_;
}

bool Subprocess::WaitFor(bool on_stdout, const std::function<bool(absl::string_view)>& done,
                         absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  const std::string& stream = on_stdout ? stdout_text_ : stderr_text_;
  const bool& closed = on_stdout ? stdout_closed_ : stderr_closed_;
  auto ready = [&]() { return closed || done(stream); };
  mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  return done(stream);
}

bool Subprocess::WaitForStdout(const std::function<bool(absl::string_view)>& done,
                               absl::Duration timeout) {
  return WaitFor(true, done, timeout);
}

bool Subprocess::WaitForStderr(const std::function<bool(absl::string_view)>& done,
                               absl::Duration timeout) {
  return WaitFor(false, done, timeout);
}

bool Subprocess::WriteStdin(absl::string_view data, absl::Duration timeout) {
  if (!stdin_) return data.empty();
  ::fcntl(stdin_.get(), F_SETFL, O_NONBLOCK);
  const absl::Time deadline = absl::Now() + timeout;
  while (!data.empty()) {
    const ssize_t n = WriteWithoutSigpipe(stdin_.get(), data.data(), data.size());
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
    } else if (n < 0 && errno == EAGAIN) {
      if (!PollUntil(stdin_.get(), POLLOUT, deadline)) return false;
    } else if (n < 0 && errno != EINTR) {
      return false;  // the program closed its input
    }
  }
  return true;
}

std::optional<Subprocess::Exit> Subprocess::Wait(absl::Duration timeout) {
  std::optional<int> status = child_.Wait(timeout);
  if (!status.has_value()) return std::nullopt;
  // The child is gone, so its pipes close once the reader has taken what is left
  // (unless a grandchild holds them: then give up after a while).
  absl::MutexLock lock(&mu_);
  auto drained = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stdout_closed_ && stderr_closed_;
  };
  mu_.AwaitWithTimeout(absl::Condition(&drained), absl::Seconds(5));
  return ProcessExit::FromWaitStatus(*status);
}

// ---- RunCommand ----

CommandResult RunCommand(const std::vector<std::string>& argv, const CommandOptions& options) {
  CommandResult result;
  const absl::Time deadline = absl::Now() + options.timeout;
  absl::StatusOr<std::unique_ptr<Subprocess>> started =
      Subprocess::Start(argv, {.pipe_stdin = true, .stderr_to_stdout = true});
  if (!started.ok()) {
    result.output = started.status().ToString();
    return result;
  }
  Subprocess& child = **started;
  // A program that closes its input early just does not get the rest.
  child.WriteStdin(options.input, deadline - absl::Now());
  if (options.close_input_when) {
    child.WaitForStdout(
        [&](absl::string_view out) { return options.close_input_when(std::string(out)); },
        deadline - absl::Now());
  }
  child.CloseStdin();
  std::optional<ProcessExit> exit = child.Wait(deadline - absl::Now());
  if (exit.has_value()) {
    result.exit_code = exit->exited ? exit->code : -1;
  } else {
    result.timed_out = true;
    child.Kill();
  }
  result.output = child.Stdout();
  return result;
}

std::string FindProgram(const std::string& name) {
  std::vector<std::string> dirs;
  if (const char* path = std::getenv("PATH")) dirs = absl::StrSplit(path, ':', absl::SkipEmpty());
  for (const char* d : {"/usr/bin", "/bin", "/usr/local/bin"}) dirs.push_back(d);
  for (const std::string& dir : dirs) {
    const std::string candidate = absl::StrCat(dir, "/", name);
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

// ---- ChildProcess ----

std::unique_ptr<ChildProcess> ChildProcess::Fork(const Body& body) {
  absl::StatusOr<Pipe> up = Pipe::Make();    // child -> parent
  absl::StatusOr<Pipe> down = Pipe::Make();  // parent -> child
  if (!up.ok() || !down.ok()) {
    ADD_FAILURE() << (up.ok() ? down.status() : up.status());
    return nullptr;
  }
  absl::StatusOr<ChildPid> pid = ForkChild([&]() -> int {
    up->read_end.reset();
    down->write_end.reset();
    return body(up->write_end.get(), down->read_end.get());
  });
  if (!pid.ok()) {
    ADD_FAILURE() << pid.status();
    return nullptr;
  }
  return std::unique_ptr<ChildProcess>(
      new ChildProcess(*std::move(pid), std::move(up->read_end), std::move(down->write_end)));
}

}  // namespace islet
