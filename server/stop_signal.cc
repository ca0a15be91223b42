#include "server/stop_signal.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>

#include <cstdlib>
#include <thread>

namespace islet {
namespace {

sigset_t StopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

}  // namespace

void BlockStopSignals() {
  const sigset_t set = StopSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

int WaitForStopSignal() {
  const sigset_t set = StopSignals();
  int signal_number = 0;
  while (sigwait(&set, &signal_number) != 0) {
  }
  return signal_number;
}

void BlockSignals(std::initializer_list<int> signals) {
  sigset_t set;
  sigemptyset(&set);
  for (int s : signals) sigaddset(&set, s);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

SignalWait WaitForSignal(std::initializer_list<int> signals, int fd) {
  sigset_t set;
  sigemptyset(&set);
  for (int s : signals) sigaddset(&set, s);
  // A signalfd reads the blocked signals pending for the process, so the wait can
  // include a descriptor; made per call, as signals are rare.
  const int signals_fd = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (signals_fd < 0) {  // out of descriptors: the signals alone, as sigwait does
    int signal_number = 0;
    while (sigwait(&set, &signal_number) != 0) {
    }
    return {.signal = signal_number};
  }
  SignalWait result;
  for (;;) {
    signalfd_siginfo info;
    if (::read(signals_fd, &info, sizeof(info)) == static_cast<ssize_t>(sizeof(info))) {
      result.signal = static_cast<int>(info.ssi_signo);
      break;
    }
    pollfd fds[2] = {{.fd = signals_fd, .events = POLLIN, .revents = 0},
                     {.fd = fd, .events = POLLIN, .revents = 0}};
    const int ready = ::poll(fds, fd >= 0 ? 2 : 1, -1);
    if (ready < 0 && errno != EINTR) break;
    if (fds[0].revents != 0) continue;  // read it above
    if (fd >= 0 && fds[1].revents != 0) {
      result.fd_readable = true;
      break;
    }
  }
  ::close(signals_fd);
  return result;
}

absl::Status RunUntilStopSignal(Server& server,
                                std::function<void(int signal, bool again)> on_signal) {
  const int first = WaitForStopSignal();
  if (on_signal) on_signal(first, false);
  // The second signal is waited for beside the drain; it ends the process, so the
  // thread is never joined.
  std::thread second([on_signal] {
    const int again = WaitForStopSignal();
    if (on_signal) on_signal(again, true);
    std::_Exit(1);
  });
  second.detach();
  return server.Stop();
}

}  // namespace islet
