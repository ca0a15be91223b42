// EventLoop: posted tasks, timers, descriptor readiness and Quit, driven from a
// separate thread as the workers drive it.
#include "server/event_loop.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/loop_test_util.h"
#include "server/test_util.h"
#include "transport/io_wait.h"

namespace islet {
namespace {

using testutil::kWait;
using testutil::LoopThread;
using testutil::TcpPair;

TEST(EventLoopTest, PostedTasksRunOnTheLoopThreadInOrder) {
  LoopThread t;
  constexpr int kPosters = 4;
  constexpr int kPerPoster = 500;
  absl::Mutex mu;
  std::vector<std::vector<int>> seen(kPosters);
  std::atomic<int> off_thread{0};
  std::atomic<int> ran{0};
  std::vector<std::thread> posters;
  for (int p = 0; p < kPosters; ++p) {
    posters.emplace_back([&, p] {
      for (int i = 0; i < kPerPoster; ++i) {
        t.loop().Post([&, p, i] {
          if (!t.loop().InLoopThread()) off_thread.fetch_add(1);
          absl::MutexLock lock(&mu);
          seen[p].push_back(i);
          ran.fetch_add(1);
        });
      }
    });
  }
  for (std::thread& p : posters) p.join();
  ASSERT_TRUE(testutil::WaitFor([&] { return ran.load() == kPosters * kPerPoster; }));
  EXPECT_EQ(off_thread.load(), 0);
  absl::MutexLock lock(&mu);
  for (int p = 0; p < kPosters; ++p) {
    ASSERT_EQ(seen[p].size(), static_cast<size_t>(kPerPoster));
    for (int i = 0; i < kPerPoster; ++i) {
      ASSERT_EQ(seen[p][i], i) << "poster " << p << " out of order";
    }
  }
  EXPECT_FALSE(t.loop().InLoopThread());
}

TEST(EventLoopTest, TaskPostedFromATaskRunsLater) {
  LoopThread t;
  testutil::EventRecorder log;  // what ran, in order
  // Hold the loop until both tasks below are queued, so they run as one batch.
  absl::Notification gate;
  t.loop().Post([&] { gate.WaitForNotification(); });
  t.loop().Post([&] {
    log.Record("outer");
    t.loop().Post([&] { log.Record("inner"); });
    log.Record("outer-end");
  });
  t.loop().Post([&] { log.Record("second"); });
  gate.Notify();
  ASSERT_TRUE(testutil::WaitFor([&] { return log.Events().size() == 4; }));
  EXPECT_EQ(log.Events(), (std::vector<std::string>{"outer", "outer-end", "second", "inner"}));
}

// Tasks a loop posts to itself do not write its wakeup descriptor; the loop must still
// run them without waiting for anything else to happen: from a task, a timer, or a
// readiness callback, and chained many times over.
TEST(EventLoopTest, TasksTheLoopPostsToItselfRunWithoutOutsideHelp) {
  LoopThread t;
  absl::Notification chain_done;
  int left = 1000;
  absl::AnyInvocable<void()> step;
  step = [&] {
    if (--left == 0) {
      chain_done.Notify();
      return;
    }
    t.loop().Post([&] { step(); });
  };
  t.loop().Post([&] { step(); });
  ASSERT_TRUE(chain_done.WaitForNotificationWithTimeout(kWait));

  absl::Notification from_timer;
  t.RunOnLoop([&] {
    t.loop().Schedule(MonotonicNow(), [&] { t.loop().Post([&] { from_timer.Notify(); }); });
  });
  ASSERT_TRUE(from_timer.WaitForNotificationWithTimeout(kWait));

  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
  UniqueFd read_end(fds[0]), write_end(fds[1]);
  absl::Notification from_watcher;
  struct PostingWatcher : EventLoop::Watcher {
    EventLoop* loop;
    EventLoop::Registration registration;
    absl::Notification* done;
    void OnReady(uint32_t) override {
      registration.Reset();
      loop->Post([done = done] { done->Notify(); });
    }
  } watcher;
  watcher.loop = &t.loop();
  watcher.done = &from_watcher;
  t.RunOnLoop([&] {
    absl::StatusOr<EventLoop::Registration> r = t.loop().Watch(read_end.get(), EPOLLIN, &watcher);
    ASSERT_TRUE(r.ok()) << r.status();
    watcher.registration = *std::move(r);
  });
  ASSERT_EQ(::write(write_end.get(), "x", 1), 1);
  ASSERT_TRUE(from_watcher.WaitForNotificationWithTimeout(kWait));
}

TEST(EventLoopTest, TimersFireInDeadlineOrder) {
  LoopThread t;
  testutil::EventRecorder log;  // what ran, in order
  t.RunOnLoop([&] {
    const absl::Duration now = MonotonicNow();
    // Scheduled out of order; two share a deadline (they fire in scheduling order).
    t.loop().Schedule(now + absl::Milliseconds(60), [&] { log.Record("60"); });
    t.loop().Schedule(now + absl::Milliseconds(20), [&] { log.Record("20"); });
    t.loop().Schedule(now + absl::Milliseconds(40), [&] { log.Record("40a"); });
    t.loop().Schedule(now + absl::Milliseconds(40), [&] { log.Record("40b"); });
    t.loop().Schedule(now - absl::Milliseconds(5), [&] { log.Record("past"); });
  });
  ASSERT_TRUE(testutil::WaitFor([&] { return log.Events().size() == 5; }));
  EXPECT_EQ(log.Events(), (std::vector<std::string>{"past", "20", "40a", "40b", "60"}));
}

TEST(EventLoopTest, TimerDoesNotFireBeforeItsDeadline) {
  LoopThread t;
  std::atomic<int64_t> fired_at_ns{0};
  absl::Duration deadline;
  t.RunOnLoop([&] {
    deadline = MonotonicNow() + absl::Milliseconds(50);
    t.loop().Schedule(deadline, [&] {
      fired_at_ns.store(absl::ToInt64Nanoseconds(MonotonicNow()));
    });
  });
  ASSERT_TRUE(testutil::WaitFor([&] { return fired_at_ns.load() != 0; }));
  EXPECT_GE(absl::Nanoseconds(fired_at_ns.load()), deadline);
}

TEST(EventLoopTest, CancelPreventsATimer) {
  LoopThread t;
  testutil::EventRecorder log;  // what ran, in order
  t.RunOnLoop([&] {
    const absl::Duration now = MonotonicNow();
    EventLoop::TimerId doomed =
        t.loop().Schedule(now + absl::Milliseconds(10), [&] { log.Record("cancelled"); });
    EventLoop::TimerId also_doomed =
        t.loop().Schedule(now + absl::Milliseconds(30), [&] { log.Record("cancelled too"); });
    t.loop().Schedule(now + absl::Milliseconds(20), [&, also_doomed] {
      log.Record("kept");
      t.loop().Cancel(also_doomed);  // from another timer's callback
    });
    t.loop().Schedule(now + absl::Milliseconds(80), [&] { log.Record("last"); });
    t.loop().Cancel(doomed);
    t.loop().Cancel(doomed);  // twice is harmless
  });
  ASSERT_TRUE(testutil::WaitFor([&] { return log.Events().size() >= 2; }));
  // "last" fires after the cancelled timers' deadlines: had they run, they'd be here.
  EXPECT_EQ(log.Events(), (std::vector<std::string>{"kept", "last"}));
}

// Re-timing every connection (the overload state) cancels thousands of far timers at
// once, again and again: their entries must not pile up until their deadlines pass.
TEST(EventLoopTest, CancelledTimersDoNotPileUpInTheQueue) {
  LoopThread t;
  std::atomic<int> fired{0};
  size_t most = 0;
  t.RunOnLoop([&] {
    const absl::Duration far = MonotonicNow() + absl::Hours(1);
    std::vector<EventLoop::TimerId> live;
    for (int i = 0; i < 10'000; ++i) live.push_back(t.loop().Schedule(far, [] {}));
    for (int round = 0; round < 20; ++round) {
      for (EventLoop::TimerId& id : live) {
        t.loop().Cancel(id);
        id = t.loop().Schedule(far - absl::Seconds(round + 1), [] {});
        most = std::max(most, t.loop().timer_entries());
      }
    }
    // Still in order, and a near one among them fires.
    t.loop().Schedule(MonotonicNow(), [&] { fired.fetch_add(1); });
  });
  // 10,000 live timers; without compaction 210,000 entries would be queued.
  EXPECT_LE(most, 2u * 10'000 + 2);
  ASSERT_TRUE(testutil::WaitFor([&] { return fired.load() == 1; }));
}

TEST(EventLoopTest, CancellingARunTimerIsANoOp) {
  LoopThread t;
  std::atomic<int> fired{0};
  EventLoop::TimerId id = 0;
  t.RunOnLoop([&] { id = t.loop().Schedule(MonotonicNow(), [&] { fired.fetch_add(1); }); });
  ASSERT_TRUE(testutil::WaitFor([&] { return fired.load() == 1; }));
  t.RunOnLoop([&] { t.loop().Cancel(id); });
  EXPECT_EQ(fired.load(), 1);
}

TEST(EventLoopTest, TimerScheduledFromATimerFires) {
  LoopThread t;
  testutil::EventRecorder log;  // what ran, in order
  t.RunOnLoop([&] {
    t.loop().Schedule(MonotonicNow() + absl::Milliseconds(5), [&] {
      log.Record("first");
      t.loop().Schedule(MonotonicNow() + absl::Milliseconds(5), [&] { log.Record("second"); });
    });
  });
  ASSERT_TRUE(testutil::WaitFor([&] { return log.Events().size() == 2; }));
  EXPECT_EQ(log.Events(), (std::vector<std::string>{"first", "second"}));
}

// Records readiness for a descriptor.
class RecordingWatcher : public EventLoop::Watcher {
 public:
  explicit RecordingWatcher(int fd) : fd_(fd) {}
  void OnReady(uint32_t events) override {
    calls_.fetch_add(1);
    last_events_.store(events);
    if (drain_ && (events & EPOLLIN) != 0) {
      char buf[64];
      while (::read(fd_, buf, sizeof(buf)) > 0) {
      }
    }
  }
  int calls() const { return calls_.load(); }
  uint32_t last_events() const { return last_events_.load(); }
  void set_drain(bool drain) { drain_ = drain; }

 private:
  int fd_;
  bool drain_ = true;
  std::atomic<int> calls_{0};
  std::atomic<uint32_t> last_events_{0};
};

// Watches `fd` on the loop thread; the registration is to be reset there too.
EventLoop::Registration WatchOnLoop(LoopThread& t, int fd, uint32_t events,
                                    EventLoop::Watcher* watcher) {
  EventLoop::Registration registration;
  t.RunOnLoop([&] {
    absl::StatusOr<EventLoop::Registration> r = t.loop().Watch(fd, events, watcher);
    ASSERT_TRUE(r.ok()) << r.status();
    registration = *std::move(r);
  });
  return registration;
}

TEST(EventLoopTest, WatchSetEventsResetDeliverPipeReadiness) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
  const int read_end = fds[0];
  const int write_end = fds[1];
  LoopThread t;
  RecordingWatcher reader(read_end);
  RecordingWatcher writer(write_end);

  // Nothing to read yet: no callback.
  EventLoop::Registration reading = WatchOnLoop(t, read_end, EPOLLIN, &reader);
  EXPECT_TRUE(reading.active());
  EXPECT_EQ(reading.fd(), read_end);
  t.RunOnLoop([] {});  // one more turn of the loop
  EXPECT_EQ(reader.calls(), 0);

  // A byte makes it readable; the watcher drains it.
  ASSERT_EQ(::write(write_end, "x", 1), 1);
  ASSERT_TRUE(testutil::WaitFor([&] { return reader.calls() >= 1; }));
  EXPECT_NE(reader.last_events() & EPOLLIN, 0u);

  // No interest: level-triggered readiness is no longer reported.
  t.RunOnLoop([&] { ASSERT_TRUE(reading.SetEvents(0).ok()); });
  EXPECT_EQ(reading.events(), 0u);
  const int before = reader.calls();
  ASSERT_EQ(::write(write_end, "y", 1), 1);
  absl::SleepFor(absl::Milliseconds(50));
  t.RunOnLoop([] {});
  EXPECT_EQ(reader.calls(), before);

  // Back to EPOLLIN: the pending byte is reported at once.
  t.RunOnLoop([&] { ASSERT_TRUE(reading.SetEvents(EPOLLIN).ok()); });
  ASSERT_TRUE(testutil::WaitFor([&] { return reader.calls() > before; }));

  // The write end of an empty pipe is writable straight away.
  EventLoop::Registration writing = WatchOnLoop(t, write_end, EPOLLOUT, &writer);
  ASSERT_TRUE(testutil::WaitFor([&] { return writer.calls() >= 1; }));
  EXPECT_NE(writer.last_events() & EPOLLOUT, 0u);
  // Destroying a registration unregisters.
  t.RunOnLoop([&] { EventLoop::Registration gone = std::move(writing); });
  EXPECT_FALSE(writing.active());

  // Reset: readable again, but nobody is told.
  t.RunOnLoop([&] { reading.Reset(); });
  EXPECT_FALSE(reading.active());
  const int after_unwatch = reader.calls();
  ASSERT_EQ(::write(write_end, "z", 1), 1);
  absl::SleepFor(absl::Milliseconds(50));
  t.RunOnLoop([] {});
  EXPECT_EQ(reader.calls(), after_unwatch);

  // Watching a descriptor twice, or changing a registration that is gone, fails
  // cleanly.
  t.RunOnLoop([&] {
    absl::StatusOr<EventLoop::Registration> first = t.loop().Watch(read_end, EPOLLIN, &reader);
    ASSERT_TRUE(first.ok()) << first.status();
    EXPECT_FALSE(t.loop().Watch(read_end, EPOLLIN, &reader).ok());
    first->Reset();
    EXPECT_FALSE(first->SetEvents(EPOLLIN).ok());
  });

  t.Stop();
  ::close(read_end);
  ::close(write_end);
}

TEST(EventLoopTest, PeerHangupIsReported) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
  LoopThread t;
  RecordingWatcher reader(fds[0]);
  EventLoop::Registration reading = WatchOnLoop(t, fds[0], EPOLLIN, &reader);
  ::close(fds[1]);
  ASSERT_TRUE(testutil::WaitFor([&] { return (reader.last_events() & EPOLLHUP) != 0; }));
  t.RunOnLoop([&] { reading.Reset(); });
  t.Stop();
  ::close(fds[0]);
}

// A connected TCP pair on loopback: {accepted, connecting}, both non-blocking.
// A half-closed peer is "ready" for EPOLLRDHUP forever; a watcher that asked only for
// the hang-up (a connection kept open for writing after the peer finished) must neither
// hear of it nor keep the loop turning. (io_uring reports EPOLLRDHUP whatever the mask:
// its backend must not spin on it.)
TEST(EventLoopTest, AHalfClosedPeerWatchedForHangUpLeavesTheLoopIdle) {
  auto [server, client] = TcpPair();
  LoopThread t;
  RecordingWatcher watcher(server);
  watcher.set_drain(false);
  ASSERT_EQ(::shutdown(client, SHUT_WR), 0);
  EventLoop::Registration hangup = WatchOnLoop(t, server, EPOLLHUP, &watcher);
  absl::SleepFor(absl::Milliseconds(50));  // lets the half-close be seen, if it were
  t.RunOnLoop([] {});
  const uint64_t turns = t.loop().iterations();
  absl::SleepFor(absl::Milliseconds(300));
  t.RunOnLoop([] {});
  // Idle: a few turns (the posted tasks, the odd wake-up), not thousands.
  EXPECT_LT(t.loop().iterations() - turns, 20u);
  EXPECT_EQ(watcher.calls(), 0);

  // The peer's reset is a hang-up, and is reported.
  linger abort = {1, 0};
  ASSERT_EQ(::setsockopt(client, SOL_SOCKET, SO_LINGER, &abort, sizeof(abort)), 0);
  ::close(client);
  ASSERT_TRUE(testutil::WaitFor([&] { return watcher.calls() > 0; }));
  EXPECT_NE(watcher.last_events() & (EPOLLHUP | EPOLLERR), 0u);
  t.RunOnLoop([&] { hangup.Reset(); });
  t.Stop();
  ::close(server);
}

// What the loop watched until Run returned is closed for real when the holder closes it
// afterwards (as Worker::Stop closes what is left): the peer sees the end at once.
// (io_uring's armed polls hold their sockets open until cancelled.)
TEST(EventLoopTest, ASocketClosedAfterRunReturnsReallyCloses) {
  auto [server, client] = TcpPair();
  LoopThread t;
  RecordingWatcher watcher(server);
  EventLoop::Registration reading = WatchOnLoop(t, server, EPOLLIN, &watcher);
  t.Stop();
  reading.Reset();
  ::close(server);
  ASSERT_TRUE(WaitForIo(client, IoInterest::kRead, MonotonicNow() + kWait, "test").ok());
  char byte;
  EXPECT_EQ(::recv(client, &byte, 1, 0), 0) << "errno " << errno;
  ::close(client);
}

// Making and destroying a loop leaves the calling thread's blocking calls alone. (The
// kernel interrupts every thread on an io_uring ring's list of users when the ring
// goes, so the ring must not count the caller among them.)
TEST(EventLoopTest, DestroyingALoopDoesNotInterruptTheCallersNextBlockingCall) {
  auto [server, client] = TcpPair();
  {
    LoopThread t;
    RecordingWatcher watcher(server);
    EventLoop::Registration reading = WatchOnLoop(t, server, EPOLLIN, &watcher);
    t.RunOnLoop([&] { reading.Reset(); });
  }
  timeval timeout = {0, 100 * 1000};
  ASSERT_EQ(::setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)), 0);
  ::fcntl(client, F_SETFL, ::fcntl(client, F_GETFL) & ~O_NONBLOCK);
  char byte;
  EXPECT_EQ(::recv(client, &byte, 1, 0), -1);
  EXPECT_EQ(errno, EAGAIN) << "recv: " << std::strerror(errno);
  ::close(server);
  ::close(client);
}

// Tasks one loop posts to another wake it (on io_uring, by a message from ring to ring),
// back and forth many times, while neither loop has a timer to wake it otherwise.
TEST(EventLoopTest, LoopsPostingToEachOtherWakeEachOther) {
  LoopThread a;
  LoopThread b;
  constexpr int kRounds = 2000;
  std::atomic<int> rounds{0};
  absl::Notification done;
  std::function<void(int)> bounce = [&](int n) {
    rounds.fetch_add(1);
    if (n == kRounds) {
      done.Notify();
      return;
    }
    EventLoop& next = n % 2 == 0 ? b.loop() : a.loop();
    next.Post([&bounce, n] { bounce(n + 1); });
  };
  a.loop().Post([&] { bounce(1); });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kWait)) << rounds.load() << " rounds";
  EXPECT_EQ(rounds.load(), kRounds);
  // Several at once from one loop's iteration, each to the other loop.
  std::atomic<int> arrived{0};
  a.RunOnLoop([&] {
    for (int i = 0; i < 100; ++i) b.loop().Post([&] { arrived.fetch_add(1); });
  });
  ASSERT_TRUE(testutil::WaitFor([&] { return arrived.load() == 100; }));
}

TEST(EventLoopTest, QuitMakesRunReturn) {
  absl::StatusOr<std::unique_ptr<EventLoop>> loop = EventLoop::Create();
  ASSERT_TRUE(loop.ok()) << loop.status();
  EventLoop& l = **loop;
  // A far timer must not keep Run from returning.
  std::atomic<bool> timer_ran{false};
  std::promise<void> returned;
  std::future<void> returned_future = returned.get_future();
  std::thread runner([&] {
    l.Run();
    returned.set_value();
  });
  absl::Notification scheduled;
  l.Post([&] {
    l.Schedule(MonotonicNow() + absl::Hours(1), [&] { timer_ran = true; });
    scheduled.Notify();
  });
  ASSERT_TRUE(scheduled.WaitForNotificationWithTimeout(kWait));
  std::atomic<bool> posted_before_quit_ran{false};
  l.Post([&] { posted_before_quit_ran = true; });
  l.Quit();
  ASSERT_EQ(returned_future.wait_for(std::chrono::seconds(20)), std::future_status::ready)
      << "Run did not return after Quit";
  runner.join();
  EXPECT_TRUE(posted_before_quit_ran.load());
  EXPECT_FALSE(timer_ran.load());
}

TEST(EventLoopTest, QuitBeforeRunMakesRunReturnAtOnce) {
  absl::StatusOr<std::unique_ptr<EventLoop>> loop = EventLoop::Create();
  ASSERT_TRUE(loop.ok()) << loop.status();
  (*loop)->Quit();
  std::promise<void> returned;
  std::future<void> returned_future = returned.get_future();
  std::thread runner([&] {
    (*loop)->Run();
    returned.set_value();
  });
  ASSERT_EQ(returned_future.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  runner.join();
}

TEST(EventLoopTest, InLoopThreadIsTrueOnlyOnTheLoop) {
  LoopThread t;
  std::atomic<bool> inside{false};
  t.RunOnLoop([&] { inside = t.loop().InLoopThread(); });
  EXPECT_TRUE(inside.load());
  EXPECT_FALSE(t.loop().InLoopThread());
}

// An urgent task runs before every ordinary task that has not started, even in the
// middle of a batch; ordinary tasks keep their order.
TEST(EventLoopTest, UrgentTasksGoAheadOfTheBacklog) {
  LoopThread t;
  testutil::EventRecorder log;
  absl::Notification first_running;
  absl::Notification go_on;
  t.loop().Post([&] {
    first_running.Notify();
    go_on.WaitForNotificationWithTimeout(kWait);
    log.Record("1");
  });
  for (int i = 2; i <= 4; ++i) t.loop().Post([&log, i] { log.Record(absl::StrCat(i)); });
  ASSERT_TRUE(first_running.WaitForNotificationWithTimeout(kWait));
  // Posted while task 1 runs, behind tasks 2 to 4 of the same batch.
  t.loop().PostUrgent([&] { log.Record("urgent"); });
  t.loop().PostUrgent([&] { log.Record("urgent too"); });
  go_on.Notify();
  t.RunOnLoop([] {});
  EXPECT_EQ(log.Events(), (std::vector<std::string>{"1", "urgent", "urgent too", "2", "3", "4"}));
}

// An urgent task posted from another thread while an earlier urgent task runs (with no
// ordinary task queued) still runs: nothing else will wake the loop for it. Server::Stop
// posts an acceptor's stop and then the worker's shutdown this way.
TEST(EventLoopTest, UrgentTaskPostedWhileAnUrgentTaskRunsIsNotLost) {
  LoopThread t;
  absl::Notification first_running;
  absl::Notification go_on;
  absl::Notification second_ran;
  t.loop().PostUrgent([&] {
    first_running.Notify();
    go_on.WaitForNotificationWithTimeout(kWait);
  });
  ASSERT_TRUE(first_running.WaitForNotificationWithTimeout(kWait));
  t.loop().PostUrgent([&] { second_ran.Notify(); });
  go_on.Notify();
  // The loop is idle from here: no descriptor, no timer, no ordinary task.
  EXPECT_TRUE(second_ran.WaitForNotificationWithTimeout(kWait));
}

}  // namespace
}  // namespace islet
