#include "tools/harness/subprocess.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

extern char** environ;

namespace islet::harness {
namespace {

absl::Status Errno(int err, absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", strerror(err)));
}

void CloseFd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

// Writes all of `n` bytes from the child after fork: async-signal-safe.
void WriteAllRaw(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= static_cast<size_t>(w);
  }
}

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

std::string Subprocess::Exit::ToString() const {
  if (exited) return absl::StrCat("exit ", code);
  return absl::StrCat("signal ", signal, " (", strsignal(signal), ")");
}

absl::StatusOr<std::unique_ptr<Subprocess>> Subprocess::Start(
    const std::vector<std::string>& argv, const std::optional<std::vector<std::string>>& env) {
  if (argv.empty()) return absl::InvalidArgumentError("Subprocess::Start: empty argv");
  // Everything the child needs is prepared before fork: after it, only
  // async-signal-safe calls are allowed (other threads may hold locks).
  std::vector<std::string> args = argv;
  std::vector<char*> c_args = CStrings(args);
  std::vector<std::string> envs;
  std::vector<char*> c_envs;
  char** child_env = environ;
  if (env.has_value()) {
    envs = *env;
    c_envs = CStrings(envs);
    child_env = c_envs.data();
  }

  int out_pipe[2], err_pipe[2], exec_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return Errno(errno, "pipe2");
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    const int err = errno;
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    return Errno(err, "pipe2");
  }
  if (::pipe2(exec_pipe, O_CLOEXEC) != 0) {
    const int err = errno;
    for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]}) ::close(fd);
    return Errno(err, "pipe2");
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1], exec_pipe[0],
                   exec_pipe[1]}) {
      ::close(fd);
    }
    return Errno(err, "fork");
  }
  if (pid == 0) {
    // The child. Dies with the thread that started it, even if that one crashes.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int sig : {SIGTERM, SIGINT, SIGPIPE, SIGHUP, SIGQUIT}) ::sigaction(sig, &dfl, nullptr);
    int in = ::open("/dev/null", O_RDONLY);
    int failed_errno = 0;
    if (in < 0 || ::dup2(in, 0) < 0 || ::dup2(out_pipe[1], 1) < 0 ||
        ::dup2(err_pipe[1], 2) < 0) {
      failed_errno = errno;
    } else {
      ::execve(c_args[0], c_args.data(), child_env);
      failed_errno = errno;
    }
    WriteAllRaw(exec_pipe[1], &failed_errno, sizeof(failed_errno));
    ::_exit(127);
  }

  // The parent.
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  ::close(exec_pipe[1]);
  // The exec pipe closes (EOF) when execve succeeds; otherwise it carries errno.
  int child_errno = 0;
  ssize_t got;
  do {
    got = ::read(exec_pipe[0], &child_errno, sizeof(child_errno));
  } while (got < 0 && errno == EINTR);
  ::close(exec_pipe[0]);
  if (got > 0) {
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    int status;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return Errno(child_errno, absl::StrCat("exec ", argv[0]));
  }

  auto child = std::unique_ptr<Subprocess>(new Subprocess());
  child->pid_ = pid;
  child->stdout_fd_ = out_pipe[0];
  child->stderr_fd_ = err_pipe[0];
  int wake[2];
  if (::pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0) {
    const int err = errno;
    child->Kill();
    return Errno(err, "pipe2");
  }
  child->wake_read_fd_ = wake[0];
  child->wake_write_fd_ = wake[1];
  child->reader_ = std::thread([c = child.get()] { c->ReadLoop(); });
  return child;
}

Subprocess::~Subprocess() {
  Kill();
  if (reader_.joinable()) {
    const char byte = 1;
    (void)!::write(wake_write_fd_, &byte, 1);
    reader_.join();
  }
  CloseFd(stdout_fd_);
  CloseFd(stderr_fd_);
  CloseFd(wake_read_fd_);
  CloseFd(wake_write_fd_);
}

void Subprocess::ReadLoop() {
  bool out_open = true, err_open = true;
  char buf[16384];
  while (out_open || err_open) {
    pollfd fds[3] = {{out_open ? stdout_fd_ : -1, POLLIN, 0},
                     {err_open ? stderr_fd_ : -1, POLLIN, 0},
                     {wake_read_fd_, POLLIN, 0}};
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
        (i == 0 ? stdout_ : stderr_).append(buf, static_cast<size_t>(n));
      }
    }
  }
  absl::MutexLock lock(&mu_);
  stdout_closed_ = stderr_closed_ = true;
}

std::string Subprocess::Stdout() const {
  absl::MutexLock lock(&mu_);
  return stdout_;
}

std::string Subprocess::Stderr() const {
  absl::MutexLock lock(&mu_);
  return stderr_;
}

bool Subprocess::WaitFor(bool on_stdout, const std::function<bool(absl::string_view)>& done,
                         absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  const std::string& stream = on_stdout ? stdout_ : stderr_;
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

bool Subprocess::Signal(int sig) {
  if (exit_.has_value() || pid_ <= 0) return false;
  return ::kill(pid_, sig) == 0;
}

std::optional<Subprocess::Exit> Subprocess::Wait(absl::Duration timeout) {
  if (exit_.has_value() || pid_ <= 0) return exit_;
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      Exit e;
      if (WIFEXITED(status)) {
        e.exited = true;
        e.code = WEXITSTATUS(status);
      } else if (WIFSIGNALED(status)) {
        e.signal = WTERMSIG(status);
      }
      exit_ = e;
      break;
    }
    if (r < 0 && errno != EINTR) {
      exit_ = Exit{.exited = false, .code = 0, .signal = 0};  // not ours any more
      break;
    }
    if (absl::Now() >= deadline) return std::nullopt;
    absl::SleepFor(absl::Milliseconds(5));
  }
  // The child is gone, so its pipes close once the reader has taken what is left
  // (unless a grandchild holds them: then give up after a while).
  absl::MutexLock lock(&mu_);
  auto drained = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stdout_closed_ && stderr_closed_;
  };
  mu_.AwaitWithTimeout(absl::Condition(&drained), absl::Seconds(5));
  return exit_;
}

void Subprocess::Kill() {
  if (exit_.has_value() || pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, 0);
  } while (r < 0 && errno == EINTR);
  Exit e;
  if (r == pid_ && WIFEXITED(status)) {
    e.exited = true;
    e.code = WEXITSTATUS(status);
  } else if (r == pid_ && WIFSIGNALED(status)) {
    e.signal = WTERMSIG(status);
  }
  exit_ = e;
}

}  // namespace islet::harness
