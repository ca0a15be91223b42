// The epoll backend: level-triggered epoll, and an eventfd for Wake.
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

#include "server/loop_backend.h"
#include "transport/errors.h"
#include "transport/unique_fd.h"

namespace islet {
namespace {

constexpr int kMaxEventsPerWait = 256;

class EpollBackend final : public LoopBackend {
 public:
  EpollBackend(UniqueFd epoll, UniqueFd wake)
      : epoll_(std::move(epoll)), wake_(std::move(wake)) {}

  absl::Status Add(int fd, uint32_t events, EventLoop::Watcher* watcher) override {
    return Control(EPOLL_CTL_ADD, fd, events, watcher, "event loop: watch");
  }

  absl::Status Modify(int fd, uint32_t events, EventLoop::Watcher* watcher) override {
    return Control(EPOLL_CTL_MOD, fd, events, watcher, "event loop: modify");
  }

  void Remove(int fd) override { ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr); }

  void Wait(int timeout_ms, Dispatch dispatch) override {
    const int n = ::epoll_wait(epoll_.get(), events_, kMaxEventsPerWait, timeout_ms);
    for (int i = 0; i < n; ++i) {
      auto* watcher = static_cast<EventLoop::Watcher*>(events_[i].data.ptr);
      if (watcher == nullptr) {
        uint64_t drained;
        [[maybe_unused]] ssize_t r = ::read(wake_.get(), &drained, sizeof(drained));
        continue;
      }
      dispatch(watcher, events_[i].events);
    }
  }

  void Wake() override {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t r = ::write(wake_.get(), &one, sizeof(one));
  }

  absl::string_view name() const override { return "epoll"; }

 private:
  absl::Status Control(int op, int fd, uint32_t events, EventLoop::Watcher* watcher,
                       absl::string_view what) {
    epoll_event ev = {};
    ev.events = events;
    ev.data.ptr = watcher;
    if (::epoll_ctl(epoll_.get(), op, fd, &ev) != 0) return PosixError(errno, what);
    return absl::OkStatus();
  }

  UniqueFd epoll_;
  UniqueFd wake_;
  epoll_event events_[kMaxEventsPerWait];
};

}  // namespace

absl::StatusOr<std::unique_ptr<LoopBackend>> MakeEpollBackend() {
  UniqueFd epoll(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll) return PosixError(errno, "event loop: epoll_create1");
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake) return PosixError(errno, "event loop: eventfd");
  epoll_event ev = {};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // the wakeup descriptor is the only one without a watcher
  if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, wake.get(), &ev) != 0) {
    return PosixError(errno, "event loop: epoll_ctl");
  }
  return std::make_unique<EpollBackend>(std::move(epoll), std::move(wake));
}

}  // namespace islet
