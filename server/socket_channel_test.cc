// EventLoop::SocketChannel: the io_uring loop receiving for a socket into its shared
// buffers (multishot receive, provided-buffer ring), and sending what the socket staged
// (one send per loop turn). On epoll, MakeChannel is null: sockets there are read and
// written on readiness.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <cerrno>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/event_loop.h"
#include "server/loop_test_util.h"
#include "server/server.h"
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

TEST(SocketChannelTest, ReceivesArrivalsInOrderThenThePeersEnd) {
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
TEST(SocketChannelTest, AStoppedReceiverKeepsWhatArrivedAheadOfTheDescriptor) {
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

// A channel whose bytes are not read stops receiving at its share of the loop's
// buffers (the rest waits in the socket, the peer's window closes), and goes on once
// it reads. Nothing is lost or reordered.
TEST(SocketChannelTest, AChannelThatReadsNothingStopsAtItsShareAndGoesOnOnceItReads) {
  auto [server, client] = TcpPair();
  LoopThread t;
  ReceivingWatcher watcher;
  watcher.set_consuming(false);
  std::unique_ptr<EventLoop::SocketChannel> receiver = StartReceiving(t, server, watcher);
  if (receiver != nullptr) {
    const std::string data = Pattern(kAllBuffers + kAllBuffers / 2);
    std::thread writer([&] { WriteAll(client, data); });
    int queued = 0;
    ASSERT_TRUE(testutil::WaitFor([&] {
      return ::ioctl(server, FIONREAD, &queued) == 0 && queued > 0 && watcher.calls() > 0;
    })) << queued << " bytes queued, " << watcher.calls() << " arrivals";
    // Receiving has stopped: what waits in the socket stays there, and grows only while
    // the writer fills the socket's window (slowly under a sanitizer and a loaded
    // machine: a fixed pause was not enough in CI), so wait for it to settle. (The
    // watcher hears of the held input on every turn meanwhile: readiness is
    // level-triggered.)
    int before = -1;
    int after = 0;
    ASSERT_TRUE(testutil::WaitFor([&] {
      before = after;
      absl::SleepFor(absl::Milliseconds(100));
      return ::ioctl(server, FIONREAD, &after) == 0 && after > 0 && after == before;
    })) << "the socket's queue went from " << before << " to " << after
        << " bytes: the receive went on, or the writer never stopped";
    size_t held = 0;
    t.RunOnLoop([&] {
      absl::MutexLock lock(&watcher.mu());
      watcher.ReadAll();
      held = watcher.got_size_locked();
      watcher.set_consuming(true);
    });
    EXPECT_GT(held, 0u);
    EXPECT_LE(held, kAllBuffers / 4) << "one connection took most of the loop's buffers";
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

// Many connections that read nothing take every buffer between them; a receive that
// finds none stops (-ENOBUFS) and goes on once buffers come back (here: the channels
// holding them are destroyed), so its input arrives.
TEST(SocketChannelTest, AReceiveOutOfBuffersGoesOnOnceBuffersComeBack) {
  LoopThread t;
  constexpr int kHoarders = 48;  // 48 x 8 held buffers > the 256 the loop has
  std::vector<std::pair<int, int>> pairs;
  std::vector<std::unique_ptr<ReceivingWatcher>> hoarders;
  std::vector<std::unique_ptr<EventLoop::SocketChannel>> channels;
  const std::string chunk = Pattern(256 * 1024);
  for (int i = 0; i < kHoarders; ++i) {
    pairs.push_back(TcpPair());
    hoarders.push_back(std::make_unique<ReceivingWatcher>());
    hoarders.back()->set_consuming(false);
    channels.push_back(StartReceiving(t, pairs.back().first, *hoarders.back()));
    if (channels.back() == nullptr) break;  // epoll: checked by StartReceiving
    // Whatever the kernel takes at once; the receive takes 8 buffers' worth of it.
    const ssize_t n = ::send(pairs.back().second, chunk.data(), chunk.size(),
                             MSG_NOSIGNAL | MSG_DONTWAIT);
    ASSERT_GT(n, 16 * 8 * 1024) << std::strerror(errno);
  }
  if (channels.back() != nullptr) {
    auto [server, client] = TcpPair();
    ReceivingWatcher watcher;
    std::unique_ptr<EventLoop::SocketChannel> late = StartReceiving(t, server, watcher);
    ASSERT_NE(late, nullptr);
    absl::SleepFor(absl::Milliseconds(100));  // the hoarders' receives fill the ring
    WriteAll(client, "hello?");
    absl::SleepFor(absl::Milliseconds(100));
    EXPECT_EQ(watcher.got(), "") << "the ring still had buffers: the test proves nothing";
    t.RunOnLoop([&] { channels.clear(); });
    ASSERT_TRUE(testutil::WaitFor([&] { return watcher.got() == "hello?"; })) << watcher.got();
    t.RunOnLoop([&] { late.reset(); });
    ::close(server);
    ::close(client);
  }
  t.RunOnLoop([&] { channels.clear(); });
  t.Stop();
  for (auto [server, client] : pairs) {
    ::close(server);
    ::close(client);
  }
}

// Reads from a non-blocking socket until `size` bytes came, the peer closed, or the
// deadline: what came.
std::string ReadUpTo(int fd, size_t size) {
  std::string got;
  char buf[16384];
  const absl::Duration deadline = MonotonicNow() + testutil::kWait;
  while (got.size() < size) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) {
      got.append(buf, static_cast<size_t>(n));
    } else if (n == 0 || errno != EAGAIN ||
               !WaitForIo(fd, IoInterest::kRead, deadline, "test").ok()) {
      break;
    }
  }
  return got;
}

// Staged bytes go out on the loop's next turn, in order, and a watcher that asked is
// told (EPOLLOUT) when the kernel has taken them.
TEST(SocketChannelTest, StagedBytesGoOutInOrderAndTheWatcherIsToldWhenSent) {
  auto [server, client] = TcpPair();
  LoopThread t;
  ReceivingWatcher watcher;
  std::unique_ptr<EventLoop::SocketChannel> channel = StartReceiving(t, server, watcher);
  if (channel != nullptr) {
    const absl::string_view parts[] = {"one,", "two,", "three"};
    t.RunOnLoop([&] {
      ASSERT_EQ(channel->Stage(absl::MakeConstSpan(parts)).value_or(0), 13u);
      EXPECT_EQ(channel->unsent(), 13u) << "nothing goes before the loop's next turn";
      channel->SetNotifyWhenSent(true);
    });
    EXPECT_EQ(ReadUpTo(client, 13), "one,two,three");
    ASSERT_TRUE(testutil::WaitFor([&] { return watcher.calls() > 0; }));
    size_t unsent = 1;
    t.RunOnLoop([&] { unsent = channel->unsent(); });
    EXPECT_EQ(unsent, 0u);
    t.RunOnLoop([&] { channel.reset(); });
  }
  t.Stop();
  ::close(server);
  ::close(client);
}

// The channel holds a bounded amount: beyond it Stage says Unavailable, as a full socket
// would; a blocking sender's wait is bounded by its deadline; once the peer reads,
// everything arrives.
TEST(SocketChannelTest, StagingIsBoundedAndABlockedSendWaitsUntilItsDeadline) {
  auto [server, client] = TcpPair();
  const int small = 4096;
  ASSERT_EQ(::setsockopt(server, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
  ASSERT_EQ(::setsockopt(client, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
  LoopThread t;
  ReceivingWatcher watcher;
  std::unique_ptr<EventLoop::SocketChannel> channel = StartReceiving(t, server, watcher);
  if (channel != nullptr) {
    const std::string data = Pattern(1 << 20);
    size_t staged = 0;
    absl::Status refused;
    absl::Status waited;
    t.RunOnLoop([&] {
      for (;;) {
        absl::string_view rest = absl::string_view(data).substr(staged);
        absl::StatusOr<size_t> n = channel->Stage(absl::MakeConstSpan(&rest, 1));
        if (n.ok()) {
          staged += *n;
          continue;
        }
        refused = n.status();
        // The peer reads nothing: the kernel takes some, then nothing more.
        waited = channel->WaitForSent(MonotonicNow() + absl::Milliseconds(100));
        if (!waited.ok()) break;
      }
    });
    EXPECT_TRUE(absl::IsUnavailable(refused)) << refused;
    EXPECT_TRUE(absl::IsDeadlineExceeded(waited)) << waited;
    EXPECT_LT(staged, data.size());
    // Reading makes room: what was staged arrives, in order.
    EXPECT_TRUE(ReadUpTo(client, staged) == data.substr(0, staged));
    t.RunOnLoop([&] { channel.reset(); });
  }
  t.Stop();
  ::close(server);
  ::close(client);
}

// A send the peer's reset fails is reported by the next Stage, and to a watcher waiting
// for room.
TEST(SocketChannelTest, ASendThatFailsIsReportedByTheNextStage) {
  auto [server, client] = TcpPair();
  LoopThread t;
  ReceivingWatcher watcher;
  watcher.set_consuming(false);
  std::unique_ptr<EventLoop::SocketChannel> channel = StartReceiving(t, server, watcher);
  if (channel != nullptr) {
    linger abort = {1, 0};
    ASSERT_EQ(::setsockopt(client, SOL_SOCKET, SO_LINGER, &abort, sizeof(abort)), 0);
    ::close(client);
    client = -1;
    absl::Status failed;
    const absl::Duration deadline = MonotonicNow() + testutil::kWait;
    while (failed.ok() && MonotonicNow() < deadline) {
      t.RunOnLoop([&] {
        const absl::string_view bytes = "are you there?";
        absl::StatusOr<size_t> n = channel->Stage(absl::MakeConstSpan(&bytes, 1));
        if (!n.ok()) failed = n.status();
      });
      absl::SleepFor(absl::Milliseconds(5));
    }
    EXPECT_FALSE(failed.ok());
    EXPECT_FALSE(absl::IsUnavailable(failed)) << failed;
    t.RunOnLoop([&] { channel.reset(); });
  }
  t.Stop();
  ::close(server);
  if (client >= 0) ::close(client);
}

// Staged bytes handed over just before the descriptor closes (Socket::Close does it)
// still reach the peer, then its end of stream.
TEST(SocketChannelTest, BytesSentBeforeCloseArriveThenTheEnd) {
  auto [server, client] = TcpPair();
  LoopThread t;
  ReceivingWatcher watcher;
  std::unique_ptr<EventLoop::SocketChannel> channel = StartReceiving(t, server, watcher);
  if (channel != nullptr) {
    t.RunOnLoop([&] {
      const absl::string_view bytes = "last words";
      ASSERT_TRUE(channel->Stage(absl::MakeConstSpan(&bytes, 1)).ok());
      channel->SendBeforeClose();
      ::close(server);
      channel.reset();
    });
    EXPECT_EQ(ReadUpTo(client, 100), "last words");
    char byte;
    EXPECT_EQ(::recv(client, &byte, 1, 0), 0) << "an orderly end: " << std::strerror(errno);
  } else {
    ::close(server);
  }
  t.Stop();
  ::close(client);
}

// A send still waiting for room when Run returns is cancelled with everything else: the
// descriptor closed afterwards (as Worker::Stop closes what is left) really closes.
TEST(SocketChannelTest, ASocketWithASendWaitingClosesForRealAfterRun) {
  auto [server, client] = TcpPair();
  const int small = 4096;
  ASSERT_EQ(::setsockopt(client, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
  LoopThread t;
  ReceivingWatcher watcher;
  std::unique_ptr<EventLoop::SocketChannel> channel = StartReceiving(t, server, watcher);
  if (channel != nullptr) {
    const std::string data(4 << 20, 'z');
    t.RunOnLoop([&] {
      absl::string_view rest = data;
      while (!rest.empty()) {
        absl::StatusOr<size_t> n = channel->Stage(absl::MakeConstSpan(&rest, 1));
        if (!n.ok()) break;
        rest.remove_prefix(*n);
      }
    });
    absl::SleepFor(absl::Milliseconds(50));  // the send goes, and waits for room
    t.Stop();
    channel.reset();
    ::close(server);
    // The peer reads what was sent, then the end (the close drops the unsent rest).
    std::string got = ReadUpTo(client, data.size());
    EXPECT_LT(got.size(), data.size());
    char byte;
    const ssize_t n = ::recv(client, &byte, 1, MSG_DONTWAIT);
    EXPECT_TRUE(n == 0 || (n < 0 && errno == ECONNRESET)) << n << " " << std::strerror(errno);
  } else {
    ::close(server);
  }
  ::close(client);
}

// A tiny server on a loop, for many short connections: accepts on readiness, receives
// each connection on a channel, and closes it once its end is read. Loop thread only,
// but ended(), which any thread may read.
class EndCountingServer : public EventLoop::Watcher {
 public:
  EndCountingServer(EventLoop& loop, int listener) : loop_(loop), listener_(listener) {}

  void OnReady(uint32_t) override {
    for (;;) {
      const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) return;
      auto connection = std::make_unique<Connection>(*this, fd);
      connection->channel = loop_.MakeChannel(fd, connection.get());
      if (connection->channel == nullptr) {
        ::close(fd);
        continue;
      }
      connection->channel->SetReceiving(true);
      connections_.emplace(fd, std::move(connection));
    }
  }

  int ended() const { return ended_.load(); }
  void CloseAll() { connections_.clear(); }

 private:
  struct Connection : EventLoop::Watcher {
    Connection(EndCountingServer& server, int fd) : server(server), fd(fd) {}
    ~Connection() override {
      channel.reset();
      ::close(fd);
    }
    void OnReady(uint32_t) override {
      for (absl::string_view front = channel->Front(); !front.empty();
           front = channel->Front()) {
        channel->Consume(front.size());
      }
      if (channel->end().ok()) return;
      server.ended_.fetch_add(1);
      server.connections_.erase(fd);  // destroys this
    }
    EndCountingServer& server;
    const int fd;
    std::unique_ptr<EventLoop::SocketChannel> channel;
  };

  EventLoop& loop_;
  const int listener_;
  absl::flat_hash_map<int, std::unique_ptr<Connection>> connections_;
  std::atomic<int> ended_{0};
};

// A peer that sends a byte and then resets, just as the loop reads the byte: every
// channel hears its end. This kernel (6.18) can lose the reset's wake-up of a multishot
// receive that has just read its socket empty (9 in 100,000 such connections in a bare
// liburing program here, when the reset is processed on another CPU than the loop's),
// and the receive then never ends; the loop looks again at such receives
// (CheckQuietReceives). Without that, this test failed 2 runs of 3 here (after 54,000
// and 56,000 connections). One connection at a time, with varying pauses so that across
// connections the reset lands anywhere in the receive's read of the byte; bounded by
// count and by time (fewer connections under a sanitizer).
TEST(SocketChannelTest, APeerThatSendsThenResetsIsAlwaysHeardToEnd) {
  LoopThread t;
  if (t.loop().kind() == EventLoopKind::kEpoll) return;  // epoll reads on readiness
  sockaddr_in addr;
  const int listener = testutil::LoopbackListener(64, addr, SOCK_NONBLOCK);
  ASSERT_GE(listener, 0);
  EndCountingServer server(t.loop(), listener);
  EventLoop::Registration registration;
  t.RunOnLoop([&] {
    absl::StatusOr<EventLoop::Registration> r = t.loop().Watch(listener, EPOLLIN, &server);
    ASSERT_TRUE(r.ok()) << r.status();
    registration = *std::move(r);
  });

  constexpr int kConnections = 300000;
  const absl::Time give_up = absl::Now() + absl::Seconds(15);
  uint32_t seed = 1;
  auto spin = [&seed](uint32_t most) {
    seed = seed * 1103515245 + 12345;
    for (uint32_t k = (seed >> 8) % most; k > 0; --k) asm volatile("" ::: "memory");
  };
  const linger reset = {1, 0};
  int tried = 0;
  bool all_heard = true;
  while (tried < kConnections && absl::Now() < give_up) {
    UniqueFd fd = testutil::RawConnect(ntohs(addr.sin_port));
    ASSERT_TRUE(fd) << std::strerror(errno);
    ++tried;
    seed = seed * 1103515245 + 12345;
    switch ((seed >> 16) % 3) {
      case 0: break;
      case 1: std::this_thread::yield(); break;
      default: spin(20000); break;
    }
    ASSERT_EQ(::send(fd.get(), "x", 1, MSG_NOSIGNAL), 1);
    spin(2000);
    ASSERT_EQ(::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &reset, sizeof(reset)), 0);
    fd.reset();
    const absl::Time deadline = absl::Now() + absl::Seconds(2);
    while (server.ended() < tried && absl::Now() < deadline) std::this_thread::yield();
    if (server.ended() < tried) {
      all_heard = false;
      break;
    }
  }
  t.RunOnLoop([&] {
    registration.Reset();
    server.CloseAll();
  });
  ::close(listener);
  EXPECT_TRUE(all_heard) << "a channel never heard its peer's reset, after " << tried
                         << " connections";
  EXPECT_GE(tried, 1000);
}

// An echo handler whose HandleConnection, on the second connection of the server (the
// first one the acceptor hands to the second worker), blocks that worker's loop until
// released.
struct StallState {
  std::atomic<int> connections{0};
  absl::Notification stalled;
  absl::Notification release;
};

class StallingEcho : public testutil::EchoHandler {
 public:
  explicit StallingEcho(const std::shared_ptr<StallState>& state) : state_(state) {}
  HandlerResult HandleConnection(Connection&) override {
    if (state_->connections.fetch_add(1) == 1) {
      state_->stalled.Notify();
      state_->release.WaitForNotificationWithTimeout(testutil::kWait);
    }
    return HandlerResult::Continue();
  }

 private:
  std::shared_ptr<StallState> state_;
};

// A loop handed more connections at once than its ring has submission entries (512):
// arming their receives submits in the middle of the walk, and what that submit
// collects (connections whose input and end were already there) queues more receives
// and readiness while the walk goes on. Every connection is still served: its echo, then
// the end. (Before the walks took their lists first, they went on over a vector that had
// grown under them.)
TEST(SocketChannelTest, ALoopHandedMoreConnectionsThanItsRingHasEntriesServesThemAll) {
  auto state = std::make_shared<StallState>();
  ServerOptions options =
      testutil::LoopbackOptions(HandlerFactoryOf<StallingEcho>(state));  // 2 workers
  std::unique_ptr<Server> server = testutil::MustStart(std::move(options));
  ASSERT_NE(server, nullptr);
  const uint16_t port = server->ListenerInfo()->port;
  UniqueFd first = testutil::RawConnect(port);
  ASSERT_TRUE(first);
  ASSERT_TRUE(testutil::WaitFor([&] { return state->connections.load() == 1; }));
  UniqueFd second = testutil::RawConnect(port);  // stalls the second worker
  ASSERT_TRUE(second);
  ASSERT_TRUE(state->stalled.WaitForNotificationWithTimeout(testutil::kWait));

  // Half of these go to the stalled worker, which starts them all in one turn.
  constexpr int kClients = 1300;
  std::vector<UniqueFd> clients;
  for (int i = 0; i < kClients; ++i) {
    UniqueFd fd = testutil::RawConnect(port);
    ASSERT_TRUE(fd) << i << ": " << std::strerror(errno);
    ASSERT_EQ(::send(fd.get(), "ping", 4, MSG_NOSIGNAL), 4);
    ASSERT_EQ(::shutdown(fd.get(), SHUT_WR), 0);
    clients.push_back(std::move(fd));
  }
  // The other worker has started its half: the stalled one has the rest waiting.
  ASSERT_TRUE(testutil::WaitFor([&] { return state->connections.load() >= 2 + kClients / 2; }))
      << state->connections.load();
  state->release.Notify();

  int answered = 0;
  for (UniqueFd& fd : clients) {
    const timeval timeout = {10, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    std::string got;
    char buf[16];
    ssize_t n;
    while ((n = ::recv(fd.get(), buf, sizeof(buf), 0)) > 0) got.append(buf, n);
    if (n == 0 && got == "ping") ++answered;
  }
  EXPECT_EQ(answered, kClients);
  first.reset();
  second.reset();
  EXPECT_TRUE(server->Stop().ok());
}

}  // namespace
}  // namespace islet
