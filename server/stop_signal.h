// Running a server until SIGTERM or SIGINT, then draining it: what every server's main
// does. (The harness uses BlockStopSignals, BlockSignals and WaitForSignal, with its own
// steps between: SIGHUP reloads, a hand-off, readiness first, then progress lines.)
//
//   int main() {
//     islet::BlockStopSignals();              // first: before any thread starts
//     auto server = islet::Server::Start(options);
//     ...
//     return islet::RunUntilStopSignal(**server).ok() ? 0 : 1;
//   }
//
// The signals are taken synchronously (sigwait) on the calling thread: no handler runs
// in signal context, and the workers never see them.
#ifndef ISLET_SERVER_STOP_SIGNAL_H_
#define ISLET_SERVER_STOP_SIGNAL_H_

#include <functional>
#include <initializer_list>

#include "absl/status/status.h"
#include "server/server.h"

namespace islet {

// Blocks SIGTERM and SIGINT in the calling thread; threads started afterwards inherit
// the mask, so the signals stay pending for WaitForStopSignal. Also ignores SIGPIPE
// (a peer's close must never kill the process). Call it before starting any thread.
void BlockStopSignals();

// Waits for SIGTERM or SIGINT (blocked by BlockStopSignals) and returns which.
int WaitForStopSignal();

// Blocks `signals` too, as BlockStopSignals does (before any thread starts), so that
// WaitForSignal can take them: a server that reloads on SIGHUP blocks it here.
void BlockSignals(std::initializer_list<int> signals);

// What ended WaitForSignal: a signal taken, or `fd` polling readable (signal 0).
struct SignalWait {
  int signal = 0;
  bool fd_readable = false;
};

// Waits for one of `signals` (blocked beforehand) and takes it, or for `fd` (-1: none)
// to poll readable, whichever comes first; a signal already pending is taken first.
// For a main loop that also serves a descriptor (the harness's hand-off socket).
SignalWait WaitForSignal(std::initializer_list<int> signals, int fd = -1);

// Waits for SIGTERM or SIGINT, then stops `server`: connections drain within its
// shutdown_timeout. A second signal while it drains ends the process at once with exit
// status 1 (an operator who insists). `on_signal`, if given, hears each signal first,
// with `again` true for the second (for a log line). Returns what Stop returned.
absl::Status RunUntilStopSignal(Server& server,
                                std::function<void(int signal, bool again)> on_signal = {});

}  // namespace islet

#endif  // ISLET_SERVER_STOP_SIGNAL_H_
