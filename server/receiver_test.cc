// EventLoop::SocketChannel: the io_uring loop receiving for a socket into its shared buffers
// (multishot receive, provided-buffer ring). On epoll, MakeChannel is null: sockets
// there are read on readiness.
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/event_loop.h"
#include "server/loop_test_util.h"
#include "server/test_util.h"
#include "transport/io_wait.h"

namespace islet {
namespace {

using testutil::LoopThread;
using testutil::TcpPair;

// The loop's receive buffers (io_uring_backend.cc): 256 of 16 KiB.
constexpr size_t kAllBuffers = 256 * 16 * 1024;

// Hears a Receiver's readiness; while consuming, reads everything it holds.
class ReceivingWatcher : public EventLoop::Watcher {
 public:
  void OnReady(uint32_t events) override {
    calls_.fetch_add(1);
    if (!consuming_.load()) return;
    absl::MutexLock lock(&mu_);
    ReadAll();
  }

  // Loop thread.
  void ReadAll() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (absl::string_view front = receiver->Front(); !front.empty();
         front = receiver->Front()) {
      got_.append(front.data(), front.size());
      receiver->Consume(front.size());
    }
    end_ = receiver->end();
  }

  std::string got() const {
    absl::MutexLock lock(&mu_);
    return got_;
  }
  size_t got_size() const {
    absl::MutexLock lock(&mu_);
    return got_.size();
  }
  size_t got_size_locked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return got_.size(); }
  absl::Status end() const {
    absl::MutexLock lock(&mu_);
    return end_;
  }
  int calls() const { return calls_.load(); }
  absl::Mutex& mu() ABSL_LOCK_RETURNED(mu_) { return mu_; }
  void set_consuming(bool on) { consuming_.store(on); }

  EventLoop::SocketChannel* receiver = nullptr;  // set on the loop thread

 private:
  mutable absl::Mutex mu_;
  std::string got_ ABSL_GUARDED_BY(mu_);
  absl::Status end_ ABSL_GUARDED_BY(mu_);
  std::atomic<int> calls_{0};
  std::atomic<bool> consuming_{true};
};

// A receiver for `fd` made on the loop, receiving; null (and checked so) on epoll.
std::unique_ptr<EventLoop::SocketChannel> StartReceiving(LoopThread& t, int fd,
                                                    ReceivingWatcher& watcher) {
  std::unique_ptr<EventLoop::SocketChannel> receiver;
  t.RunOnLoop([&] {
    receiver = t.loop().MakeChannel(fd, &watcher);
    if (receiver == nullptr) return;
    watcher.receiver = receiver.get();
    receiver->SetReceiving(true);
  });
  if (t.loop().kind() == EventLoopKind::kEpoll) {
    EXPECT_EQ(receiver, nullptr) << "epoll reads on readiness";
  } else {
    EXPECT_NE(receiver, nullptr) << t.loop().description();
  }
  return receiver;
}

// Writes all of `data` from a non-blocking socket, waiting for room.
void WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    ASSERT_EQ(errno, EAGAIN) << std::strerror(errno);
    ASSERT_TRUE(WaitForIo(fd, IoInterest::kWrite, MonotonicNow() + testutil::kWait, "test").ok());
  }
}

// A pattern whose every byte depends on its offset: reordered or lost bytes show.
std::string Pattern(size_t size) {
  std::string s(size, '\0');
  for (size_t i = 0; i < size; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 4093) % 26);
  return s;
}

TEST(ReceiverTest, ReceivesArrivalsInOrderThenThePeersEnd) {
  auto [server, client] = TcpPair();
  LoopThread t;
  ReceivingWatcher watcher;
  std::unique_ptr<EventLoop::SocketChannel> receiver = StartReceiving(t, server, watcher);
  if (receiver != nullptr) {
    WriteAll(client, "hello ");
    ASSERT_TRUE(testutil::WaitFor([&] { return watcher.got() == "hello "; }));
    WriteAll(client, "world");
    ASSERT_TRUE(testutil::WaitFor([&] { return watcher.got() == "hello world"; }))
        << watcher.got();
    EXPECT_TRUE(watcher.end().ok());
    ASSERT_EQ(::shutdown(client, SHUT_WR), 0);
    ASSERT_TRUE(testutil::WaitFor([&] { return absl::IsOutOfRange(watcher.end()); }))
        << watcher.end();
    t.RunOnLoop([&] { receiver.reset(); });
  }
  t.Stop();
  ::close(server);
  ::close(client);
}

// Stopped, a receiver keeps what arrived before; what comes after stays in the socket,
// behind it: the stream is read in order, part from the receiver, part from the socket.
TEST(ReceiverTest, AStoppedReceiverKeepsWhatArrivedAheadOfTheDescriptor) {
  auto [server, client] = TcpPair();
  LoopThread t;
  ReceivingWatcher watcher;
  watcher.set_consuming(false);
  std::unique_ptr<EventLoop::SocketChannel> receiver = StartReceiving(t, server, watcher);
  if (receiver != nullptr) {
    WriteAll(client, "first,");
    ASSERT_TRUE(testutil::WaitFor([&] { return watcher.calls() > 0; }));
    t.RunOnLoop([&] { receiver->SetReceiving(false); });
    WriteAll(client, "second,");
    ASSERT_TRUE(WaitForIo(server, IoInterest::kRead, MonotonicNow() + testutil::kWait, "test").ok());
    absl::SleepFor(absl::Milliseconds(20));
    t.RunOnLoop([] {});  // a turn of the loop: a receive still armed would take it
    std::string front;
    t.RunOnLoop([&] { front = std::string(receiver->Front()); });
    EXPECT_EQ(front, "first,");
    char buf[64];
    const ssize_t n = ::recv(server, buf, sizeof(buf), 0);
    ASSERT_GT(n, 0) << std::strerror(errno);
    EXPECT_EQ(absl::string_view(buf, static_cast<size_t>(n)), "second,");

    // Receiving again: the next bytes arrive behind the ones held.
    watcher.set_consuming(true);
    t.RunOnLoop([&] { receiver->SetReceiving(true); });
    WriteAll(client, "third");
    ASSERT_TRUE(testutil::WaitFor([&] { return watcher.got() == "first,third"; }))
        << watcher.got();
    t.RunOnLoop([&] { receiver.reset(); });
  }
  t.Stop();
  ::close(server);
  ::close(client);
}

// A receiver whose bytes are not read takes the loop's buffers until none is left; its
// receive then stops (the rest waits in the socket, the peer's window closes), and goes
// on once buffers come back. Nothing is lost or reordered.
TEST(ReceiverTest, AReceiverOutOfBuffersGoesOnOnceTheyComeBack) {
  auto [server, client] = TcpPair();
  LoopThread t;
  ReceivingWatcher watcher;
  watcher.set_consuming(false);
  std::unique_ptr<EventLoop::SocketChannel> receiver = StartReceiving(t, server, watcher);
  if (receiver != nullptr) {
    const std::string data = Pattern(kAllBuffers + kAllBuffers / 2);
    std::thread writer([&] { WriteAll(client, data); });
    // Out of buffers: bytes stay in the socket, unreceived, and stop coming.
    int queued = 0;
    ASSERT_TRUE(testutil::WaitFor([&] {
      return ::ioctl(server, FIONREAD, &queued) == 0 && queued > 0 && watcher.calls() > 0;
    })) << queued << " bytes queued, " << watcher.calls() << " arrivals";
    // (The watcher hears of the held input on every turn meanwhile: readiness is
    // level-triggered, and it reads nothing.)
    absl::SleepFor(absl::Milliseconds(50));
    int before = 0;
    ASSERT_EQ(::ioctl(server, FIONREAD, &before), 0);
    absl::SleepFor(absl::Milliseconds(100));
    int after = 0;
    ASSERT_EQ(::ioctl(server, FIONREAD, &after), 0);
    EXPECT_GT(after, 0);
    EXPECT_EQ(after, before) << "the receive went on without buffers";
    size_t held = 0;
    t.RunOnLoop([&] {
      absl::MutexLock lock(&watcher.mu());
      watcher.ReadAll();
      held = watcher.got_size_locked();
      watcher.set_consuming(true);
    });
    EXPECT_GT(held, 0u);
    EXPECT_LE(held, kAllBuffers);
    ASSERT_TRUE(testutil::WaitFor([&] { return watcher.got_size() == data.size(); }))
        << watcher.got_size() << " of " << data.size();
    writer.join();
    EXPECT_TRUE(watcher.got() == data) << "reordered or corrupted";
    t.RunOnLoop([&] { receiver.reset(); });
  }
  t.Stop();
  ::close(server);
  ::close(client);
}

// A receiver destroyed while holding buffers gives them back: another socket's receiver
// can receive after it.
TEST(ReceiverTest, DestroyingAReceiverGivesItsBuffersBack) {
  auto [server, client] = TcpPair();
  auto [server2, client2] = TcpPair();
  LoopThread t;
  ReceivingWatcher hoarder;
  hoarder.set_consuming(false);
  std::unique_ptr<EventLoop::SocketChannel> receiver = StartReceiving(t, server, hoarder);
  if (receiver != nullptr) {
    const std::string data = Pattern(kAllBuffers + 64 * 1024);
    std::thread writer([&] {
      absl::string_view rest = data;
      while (!rest.empty()) {
        const ssize_t n = ::send(client, rest.data(), rest.size(), MSG_NOSIGNAL);
        if (n > 0) {
          rest.remove_prefix(static_cast<size_t>(n));
        } else if (errno != EAGAIN ||
                   !WaitForIo(client, IoInterest::kWrite,
                              MonotonicNow() + absl::Milliseconds(500), "test")
                        .ok()) {
          return;  // the server closed, or stopped reading for good
        }
      }
    });
    int queued = 0;
    ASSERT_TRUE(testutil::WaitFor([&] {
      return ::ioctl(server, FIONREAD, &queued) == 0 && queued > 0 && hoarder.calls() > 0;
    })) << queued << " bytes queued, " << hoarder.calls() << " arrivals";
    absl::SleepFor(absl::Milliseconds(150));  // the rest of the buffers fill
    t.RunOnLoop([&] { receiver.reset(); });

    ReceivingWatcher watcher;
    std::unique_ptr<EventLoop::SocketChannel> second = StartReceiving(t, server2, watcher);
    ASSERT_NE(second, nullptr);
    const std::string small = Pattern(100 * 1024);
    WriteAll(client2, small);
    ASSERT_TRUE(testutil::WaitFor([&] { return watcher.got_size() == small.size(); }))
        << watcher.got_size();
    EXPECT_TRUE(watcher.got() == small);
    t.RunOnLoop([&] { second.reset(); });
    ::shutdown(server, SHUT_RDWR);
    writer.join();
  }
  t.Stop();
  for (int fd : {server, client, server2, client2}) ::close(fd);
}

}  // namespace
}  // namespace islet
