#include "server/event_loop.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <utility>

#include "server/loop_backend.h"
#include "transport/io_wait.h"

namespace islet {

absl::StatusOr<std::unique_ptr<EventLoop>> EventLoop::Create(EventLoopKind kind) {
  absl::StatusOr<EventLoopKind> resolved = ResolveEventLoopKind(kind);
  if (!resolved.ok()) return resolved.status();
  absl::StatusOr<std::unique_ptr<LoopBackend>> backend =
      *resolved == EventLoopKind::kIoUring ? MakeIoUringBackend() : MakeEpollBackend();
  if (!backend.ok()) return backend.status();
  return std::unique_ptr<EventLoop>(new EventLoop(*resolved, *std::move(backend)));
}

EventLoop::EventLoop(EventLoopKind kind, std::unique_ptr<LoopBackend> backend)
    : kind_(kind), backend_(std::move(backend)), now_(MonotonicNow()) {}

EventLoop::~EventLoop() = default;

std::string EventLoop::description() const { return backend_->description(); }

std::unique_ptr<EventLoop::SocketChannel> EventLoop::MakeChannel(int fd, Watcher* watcher) {
  AssertInLoopThread();
  return backend_->MakeChannel(fd, watcher);
}

std::unique_ptr<EventLoop::AcceptChannel> EventLoop::MakeAcceptChannel(int listen_fd,
                                                                       Watcher* watcher) {
  AssertInLoopThread();
  return backend_->MakeAcceptChannel(listen_fd, watcher);
}

void EventLoop::Run() {
  owner_.store(std::this_thread::get_id());
  auto dispatch = [this](Watcher* watcher, uint32_t events) {
    watcher->OnReady(events);
    if (urgent_pending_.load(std::memory_order_relaxed)) RunUrgentTasks();
  };
  while (!quit_.load(std::memory_order_acquire)) {
    backend_->Wait(NextTimeoutMs(), dispatch);
    iterations_.fetch_add(1, std::memory_order_relaxed);
    now_ = MonotonicNow();
    RunTimers();
    RunPostedTasks();
  }
  // Tasks posted before Quit still run: a hand-over or a shutdown request is never lost.
  RunPostedTasks();
  // What Worker::Stop closes after this must really close (io_uring's polls hold files).
  backend_->Quiesce();
  // From here the thread that joins this one holds the loop (Worker::Stop closes what
  // is left on it).
  owner_.store(std::thread::id());
}

#ifndef NDEBUG
void EventLoop::AssertInLoopThread(const char* function, const char* file, int line) const {
  const std::thread::id owner = owner_.load();
  if (owner == std::thread::id() || owner == std::this_thread::get_id()) return;
  std::fprintf(stderr,
               "islet: %s (%s:%d) called off its event loop's thread while the loop runs; "
               "post it to the loop instead\n",
               function, file, line);
  std::abort();
}
#endif

EventLoop::Registration::Registration(Registration&& other) noexcept
    : loop_(std::exchange(other.loop_, nullptr)),
      fd_(std::exchange(other.fd_, -1)),
      events_(std::exchange(other.events_, 0)),
      watcher_(std::exchange(other.watcher_, nullptr)) {}

EventLoop::Registration& EventLoop::Registration::operator=(Registration&& other) noexcept {
  if (this != &other) {
    Reset();
    loop_ = std::exchange(other.loop_, nullptr);
    fd_ = std::exchange(other.fd_, -1);
    events_ = std::exchange(other.events_, 0);
    watcher_ = std::exchange(other.watcher_, nullptr);
  }
  return *this;
}

absl::Status EventLoop::Registration::SetEvents(uint32_t events) {
  if (loop_ == nullptr) return absl::FailedPreconditionError("event loop: not registered");
  if (events == events_) return absl::OkStatus();
  absl::Status s = loop_->Modify(fd_, events, watcher_);
  if (s.ok()) events_ = events;
  return s;
}

void EventLoop::Registration::Reset() {
  if (loop_ == nullptr) return;
  loop_->Unwatch(fd_);
  loop_ = nullptr;
  fd_ = -1;
  events_ = 0;
  watcher_ = nullptr;
}

void EventLoop::Quit() {
  quit_.store(true, std::memory_order_release);
  Post([] {});
}

void EventLoop::Post(Task task) { Enqueue(std::move(task), /*urgent=*/false); }

void EventLoop::PostUrgent(Task task) { Enqueue(std::move(task), /*urgent=*/true); }

void EventLoop::Enqueue(Task task, bool urgent) {
  // From the loop's own thread the loop is awake (it is running us): no need to write
  // the wakeup descriptor, only to make sure the next wait does not block
  // (NextTimeoutMs).
  const bool local = InLoopThread();
  if (local) local_posted_ = true;
  bool wake = false;
  {
    absl::MutexLock lock(&mu_);
    if (urgent) {
      urgent_.push_back(std::move(task));
      urgent_pending_.store(true, std::memory_order_relaxed);
    } else {
      posted_.push_back(std::move(task));
    }
    if (!local) wake = !std::exchange(wake_pending_, true);
  }
  if (wake) backend_->Wake();
}

void EventLoop::RunPostedTasks() {
  {
    absl::MutexLock lock(&mu_);
    running_.swap(posted_);
    wake_pending_ = false;
  }
  local_posted_ = false;
  // After wake_pending_ is cleared, not before: an urgent task posted from another
  // thread while these run then writes the wakeup descriptor. Posted before the clear,
  // it would find the flag set, write nothing, and wait for some other wakeup.
  RunUrgentTasks();
  for (Task& task : running_) {
    std::move(task)();
    // A stop or a shutdown posted meanwhile goes ahead of the rest of the batch.
    if (urgent_pending_.load(std::memory_order_relaxed)) RunUrgentTasks();
  }
  running_.clear();
}

void EventLoop::RunUrgentTasks() {
  std::vector<Task> urgent;
  {
    absl::MutexLock lock(&mu_);
    urgent.swap(urgent_);
    urgent_pending_.store(false, std::memory_order_relaxed);
  }
  for (Task& task : urgent) std::move(task)();
}

absl::StatusOr<EventLoop::Registration> EventLoop::Watch(int fd, uint32_t events,
                                                          Watcher* watcher) {
  AssertInLoopThread();
  absl::Status added = backend_->Add(fd, events, watcher);
  if (!added.ok()) return added;
  return Registration(this, fd, events, watcher);
}

absl::Status EventLoop::Modify(int fd, uint32_t events, Watcher* watcher) {
  AssertInLoopThread();
  return backend_->Modify(fd, events, watcher);
}

void EventLoop::Unwatch(int fd) {
  AssertInLoopThread();
  backend_->Remove(fd);
}

EventLoop::TimerId EventLoop::Schedule(absl::Duration deadline,
                                       absl::AnyInvocable<void()> callback) {
  AssertInLoopThread();
  const TimerId id = next_timer_id_++;
  timers_.emplace(id, std::move(callback));
  timer_heap_.push_back({deadline, id});
  std::push_heap(timer_heap_.begin(), timer_heap_.end(), std::greater<>());
  return id;
}

void EventLoop::Cancel(TimerId id) {
  AssertInLoopThread();
  if (timers_.erase(id) == 0) return;
  // Small queues are left alone: compaction is for thousands of cancelled entries.
  constexpr size_t kCompactAbove = 1024;
  if (timer_heap_.size() > kCompactAbove && timer_heap_.size() > 2 * timers_.size()) {
    CompactTimers();
  }
}

void EventLoop::CompactTimers() {
  std::erase_if(timer_heap_, [this](const PendingTimer& t) { return !timers_.contains(t.id); });
  std::make_heap(timer_heap_.begin(), timer_heap_.end(), std::greater<>());
}

void EventLoop::PopTimer() {
  std::pop_heap(timer_heap_.begin(), timer_heap_.end(), std::greater<>());
  timer_heap_.pop_back();
}

void EventLoop::RunTimers() {
  while (!timer_heap_.empty() && timer_heap_.front().deadline <= now_) {
    const TimerId id = timer_heap_.front().id;
    PopTimer();
    auto it = timers_.find(id);
    if (it == timers_.end()) continue;  // cancelled
    absl::AnyInvocable<void()> callback = std::move(it->second);
    timers_.erase(it);
    callback();
  }
  // Cancelled timers leave their heap entries behind; drop the dead ones on top.
  while (!timer_heap_.empty() && !timers_.contains(timer_heap_.front().id)) PopTimer();
}

int EventLoop::NextTimeoutMs() const {
  // Tasks posted from other threads write the wakeup descriptor; ours do not.
  if (local_posted_) return 0;
  if (timer_heap_.empty()) return -1;
  const absl::Duration left = timer_heap_.front().deadline - MonotonicNow();
  if (left <= absl::ZeroDuration()) return 0;
  return static_cast<int>(std::min<int64_t>(
      absl::ToInt64Milliseconds(left + absl::Microseconds(999)), 1 << 30));
}

}  // namespace islet
