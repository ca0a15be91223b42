#include "server/stop_signal.h"

#include <pthread.h>
#include <signal.h>

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
