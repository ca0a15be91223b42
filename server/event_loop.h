// EventLoop: one thread's event loop (epoll or io_uring underneath, see event_loop_kind.h),
// with a timer queue and a queue of tasks other threads post to it. Each worker owns one; everything it runs
// (readiness callbacks, timers, posted tasks) runs on the loop's thread, one at a time,
// so the state those callbacks touch needs no lock.
//
//   auto loop = EventLoop::Create();
//   std::thread t([&] { (*loop)->Run(); });
//   (*loop)->Post([] { /* runs on the loop thread */ });
//   (*loop)->Quit();
//   t.join();
//
// The thread rule: while Run() runs, only the loop's own thread may call a method not
// marked thread-safe (Watch, Schedule, Cancel, a Registration's methods), nor touch
// what the loop's callbacks own. AssertInLoopThread() checks it in debug builds (tests,
// sanitizer configs) and compiles to nothing under -c opt. Before Run() starts and
// after it returns, the one thread that holds the loop may use it.
#ifndef ISLET_SERVER_EVENT_LOOP_H_
#define ISLET_SERVER_EVENT_LOOP_H_

#include <sys/epoll.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/event_loop_kind.h"
#include "transport/transport.h"

namespace islet {

class LoopBackend;

class EventLoop {
 public:
  // Receives readiness for one descriptor. Must outlive its registration.
  class Watcher {
   public:
    virtual ~Watcher() = default;
    // `events` is the epoll mask (EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP, ...).
    virtual void OnReady(uint32_t events) = 0;
  };

  using TimerId = uint64_t;
  using Task = absl::AnyInvocable<void() &&>;

  // The loop's I/O for one connected socket (io_uring): its input received by one
  // multishot receive into the loop's shared buffers, read through Socket::AttachInput;
  // its output staged by Socket::AttachOutput and sent by one send per loop turn,
  // submitted with everything else. Each arrival and the input's end (EOF, an error) is
  // told to the watcher as EPOLLIN while receiving; the kernel's taking staged bytes as
  // EPOLLOUT while asked for. Loop thread only (as Registration); destroy it before the
  // loop, and after closing the socket (Socket::Close hands it the unsent bytes).
  class SocketChannel : public InputChannel, public OutputChannel {
   public:
    // On: receive (again). Off: stop receiving; what arrived before stays to be read,
    // and the descriptor keeps what comes after (the peer's window closes as usual).
    virtual void SetReceiving(bool on) = 0;
    // On: tell the watcher EPOLLOUT when the kernel takes staged bytes (at once when
    // nothing is unsent).
    virtual void SetNotifyWhenSent(bool on) = 0;
  };

  // Connections the loop accepts itself from one listening socket (io_uring: one
  // multishot accept), for an acceptor that would otherwise wait for readiness and call
  // accept(2). While accepting, the watcher hears EPOLLIN, level-triggered, as long as
  // Next has a descriptor or an error to give. Loop thread only; destroying it stops
  // accepting and closes what was accepted and not taken (destroy it before the loop).
  class AcceptChannel {
   public:
    virtual ~AcceptChannel() = default;
    // On: accept (again). Off: stop accepting; what was accepted stays for Next, and
    // new connections wait in the listener's backlog.
    virtual void SetAccepting(bool on) = 0;
    // The next accepted descriptor (non-blocking, close-on-exec), in order; Unavailable
    // when there is none now. Errors as Listener::TryAccept's: ResourceExhausted (out of
    // descriptors), Aborted (a connection lost in the backlog), FailedPrecondition (the
    // listening socket was shut down), Unknown for the rest. After an error, accepting
    // is off until SetAccepting(true).
    virtual absl::StatusOr<UniqueFd> Next() = 0;
  };

  // One descriptor's registration with the loop: destroying it (or Reset) unregisters,
  // so nothing stays registered under a watcher that is gone. Move-only; it must not
  // outlive its loop, and is used on the loop thread only. Destroy or Reset it before
  // closing the descriptor: epoll would keep a descriptor that another process shares.
  class Registration {
   public:
    Registration() = default;
    Registration(Registration&& other) noexcept;
    Registration& operator=(Registration&& other) noexcept;
    ~Registration() { Reset(); }

    bool active() const { return loop_ != nullptr; }
    int fd() const { return fd_; }
    // The epoll mask now asked for. Asking for the same mask again costs no syscall.
    uint32_t events() const { return events_; }
    absl::Status SetEvents(uint32_t events);
    // Unregisters now; a no-op when not active.
    void Reset();

   private:
    friend class EventLoop;
    Registration(EventLoop* loop, int fd, uint32_t events, Watcher* watcher)
        : loop_(loop), fd_(fd), events_(events), watcher_(watcher) {}

    EventLoop* loop_ = nullptr;
    int fd_ = -1;
    uint32_t events_ = 0;
    Watcher* watcher_ = nullptr;
  };

  // kDefault follows ISLET_EVENT_LOOP (event_loop_kind.h). Fails with a message saying
  // why where the kernel refuses the kind asked for.
  static absl::StatusOr<std::unique_ptr<EventLoop>> Create(
      EventLoopKind kind = EventLoopKind::kDefault);
  ~EventLoop();

  // The loop's kind, kEpoll or kIoUring, and what the kernel granted, e.g.
  // "io_uring (SINGLE_ISSUER|DEFER_TASKRUN)": for logs and Server::Info.
  EventLoopKind kind() const { return kind_; }
  std::string description() const;

  // Runs until Quit(). Call from the thread that is to own the loop.
  void Run();
  // Makes Run() return after the current iteration. Thread-safe.
  void Quit();

  // Runs `task` on the loop thread soon. Thread-safe; tasks run in the order posted.
  void Post(Task task);
  // Runs `task` before every task posted with Post that has not started yet, even in
  // the middle of a batch: for control (shutdown, stop), which must not wait behind a
  // backlog of messages. Thread-safe; urgent tasks run in the order posted.
  void PostUrgent(Task task);

  // Starts delivering readiness of `fd` to `watcher` until the returned Registration
  // goes. `events` is an epoll mask (level-triggered; EPOLLERR and EPOLLHUP are reported
  // whatever it holds). Loop thread only. Fails for a descriptor already registered with
  // this loop (EEXIST).
  absl::StatusOr<Registration> Watch(int fd, uint32_t events, Watcher* watcher);

  // A SocketChannel for connected socket `fd`, or null where this loop does socket I/O
  // by readiness only (epoll; io_uring without DEFER_TASKRUN or provided-buffer rings).
  // It starts not receiving. Loop thread only.
  std::unique_ptr<SocketChannel> MakeChannel(int fd, Watcher* watcher);
  // An AcceptChannel for listening socket `listen_fd`, or null where this loop accepts
  // by readiness only (epoll; io_uring without DEFER_TASKRUN). It starts not accepting.
  // Loop thread only.
  std::unique_ptr<AcceptChannel> MakeAcceptChannel(int listen_fd, Watcher* watcher);

  // Runs `callback` on the loop thread once MonotonicNow() reaches `deadline`.
  // Loop thread only. Cancel is a no-op for a timer that already ran.
  TimerId Schedule(absl::Duration deadline, absl::AnyInvocable<void()> callback);
  void Cancel(TimerId id);
  // Entries in the timer queue, cancelled ones included (they are dropped lazily, and
  // the queue is compacted once they outnumber the live timers). For tests.
  size_t timer_entries() const { return timer_heap_.size(); }

  // The monotonic time at the start of the current iteration: cheap, and the same for
  // every callback of one batch.
  absl::Duration now() const { return now_; }
  // Turns of the loop (waits for the kernel) since it was made: a loop with nothing to
  // do turns only for its timers. Thread-safe; for tests and statistics.
  uint64_t iterations() const { return iterations_.load(std::memory_order_relaxed); }
  // True on the thread running Run(), and only there.
  bool InLoopThread() const { return std::this_thread::get_id() == owner_.load(); }

  // Dies with a message naming the caller when called off the loop thread while the loop
  // runs. Debug builds only (compiled out under NDEBUG, as -c opt defines it).
  // (std::source_location would name the caller too, but clang 14 cannot build it
  // against libstdc++ 12; these builtins do the same in gcc and clang.)
#ifdef NDEBUG
  void AssertInLoopThread(const char* = nullptr, const char* = nullptr, int = 0) const {}
#else
  void AssertInLoopThread(const char* function = __builtin_FUNCTION(),
                          const char* file = __builtin_FILE(),
                          int line = __builtin_LINE()) const;
#endif

 private:
  EventLoop(EventLoopKind kind, std::unique_ptr<LoopBackend> backend);
  absl::Status Modify(int fd, uint32_t events, Watcher* watcher);
  void Unwatch(int fd);
  void RunTimers();
  void PopTimer();
  // Drops cancelled entries from the timer queue.
  void CompactTimers();
  void Enqueue(Task task, bool urgent);
  void RunPostedTasks();
  void RunUrgentTasks();
  int NextTimeoutMs() const;

  struct PendingTimer {
    absl::Duration deadline;
    TimerId id;
    bool operator>(const PendingTimer& other) const {
      return deadline != other.deadline ? deadline > other.deadline : id > other.id;
    }
  };

  const EventLoopKind kind_;
  std::unique_ptr<LoopBackend> backend_;
  std::atomic<bool> quit_{false};
  std::atomic<uint64_t> iterations_{0};
  // The thread inside Run(); empty before and after.
  std::atomic<std::thread::id> owner_{};
  absl::Duration now_;

  absl::Mutex mu_;
  std::vector<Task> posted_ ABSL_GUARDED_BY(mu_);
  std::vector<Task> urgent_ ABSL_GUARDED_BY(mu_);
  // Set with urgent_ non-empty: checked between tasks and events, without the lock.
  std::atomic<bool> urgent_pending_{false};
  bool wake_pending_ ABSL_GUARDED_BY(mu_) = false;
  // Loop thread only: it posted a task to itself since the last batch.
  bool local_posted_ = false;
  std::vector<Task> running_;  // loop thread: the batch being run

  // A min-heap (std::greater) on the deadline. Cancel leaves the entry; a re-timing of
  // every connection (the overload state) cancels many at once, so the heap is
  // compacted when cancelled entries outnumber the live ones.
  std::vector<PendingTimer> timer_heap_;
  absl::flat_hash_map<TimerId, absl::AnyInvocable<void()>> timers_;
  TimerId next_timer_id_ = 1;
};

}  // namespace islet

#endif  // ISLET_SERVER_EVENT_LOOP_H_
