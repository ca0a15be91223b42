// LoopBackend: what an EventLoop does with the kernel, behind one interface with an epoll
// and an io_uring implementation. EventLoop keeps everything else (posted tasks, timers,
// the thread rule, now()); see docs/IO_URING.md for the design and its order of work.
//
// The contract every backend keeps, so that the loop's users see one behaviour:
// - readiness is level-triggered: a watcher that leaves data unread hears again on the
//   next Wait, and one that wants nothing it is not told (EPOLLERR and EPOLLHUP are
//   reported whatever the mask, as epoll does; nothing else unasked is);
// - Add, Modify, Remove and Wait run on the loop thread (or, before and after Run, on
//   the thread that holds the loop); Wake is thread-safe;
// - a watcher is looked up when its readiness is delivered, so one removed by an
//   earlier callback of the same batch is not called (epoll's backend keeps epoll's own
//   rule: its events carry the pointer, and users remove watchers only by Registration);
// - after Quiesce, nothing of the kernel's holds a watched descriptor: closing one then
//   releases the socket at once, as a close does under epoll.
#ifndef ISLET_SERVER_LOOP_BACKEND_H_
#define ISLET_SERVER_LOOP_BACKEND_H_

#include <cstdint>
#include <memory>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/event_loop.h"

namespace islet {

class LoopBackend {
 public:
  using Dispatch = absl::FunctionRef<void(EventLoop::Watcher*, uint32_t)>;

  virtual ~LoopBackend() = default;

  // Starts, changes or ends delivering `events` (an epoll mask) of `fd` to `watcher`.
  // Add fails for a descriptor already added.
  virtual absl::Status Add(int fd, uint32_t events, EventLoop::Watcher* watcher) = 0;
  virtual absl::Status Modify(int fd, uint32_t events, EventLoop::Watcher* watcher) = 0;
  virtual void Remove(int fd) = 0;

  // Submits what is queued, waits until something is ready, Wake is called, or
  // `timeout_ms` passes (-1: no limit, 0: no wait), and calls `dispatch` once per ready
  // descriptor with the mask it is ready for.
  virtual void Wait(int timeout_ms, Dispatch dispatch) = 0;
  // See EventLoop::MakeChannel; null by default.
  virtual std::unique_ptr<EventLoop::SocketChannel> MakeChannel(int fd, EventLoop::Watcher* watcher) {
    return nullptr;
  }
  // See EventLoop::MakeAcceptChannel; null by default.
  virtual std::unique_ptr<EventLoop::AcceptChannel> MakeAcceptChannel(int listen_fd,
                                                                      EventLoop::Watcher* watcher) {
    return nullptr;
  }

  // Makes a blocked Wait return. Thread-safe.
  virtual void Wake() = 0;
  // Run is returning: give back what the kernel holds of watched descriptors (io_uring's
  // armed polls hold their files open). Registrations stay; the next Wait re-arms them.
  virtual void Quiesce() {}

  // "epoll" or "io_uring", and what the kernel granted (for logs and Server::Info).
  virtual absl::string_view name() const = 0;
  virtual std::string description() const { return std::string(name()); }
};

absl::StatusOr<std::unique_ptr<LoopBackend>> MakeEpollBackend();
// Fails (Unavailable, or the setup's own error) where the kernel refuses io_uring, with
// a message that says why.
absl::StatusOr<std::unique_ptr<LoopBackend>> MakeIoUringBackend();

}  // namespace islet

#endif  // ISLET_SERVER_LOOP_BACKEND_H_
