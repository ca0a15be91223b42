// EventLoop::AcceptChannel: the io_uring loop accepting from a listening socket itself
// (one multishot accept), the acceptor taking the descriptors with Next. On epoll,
// MakeAcceptChannel is null: listeners there are accepted from on readiness.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "server/event_loop.h"
#include "server/loop_test_util.h"
#include "server/test_util.h"
#include "transport/io_wait.h"
#include "transport/unique_fd.h"

namespace islet {
namespace {

using testutil::LoopThread;

// A listening socket on 127.0.0.1 and its port.
struct TestListener {
  UniqueFd fd;
  sockaddr_in addr = {};
};

TestListener Listen(int backlog = 64) {
  TestListener l;
  l.fd.reset(testutil::LoopbackListener(backlog, l.addr, SOCK_NONBLOCK));
  return l;
}

// A blocking client connected to `l` (complete once in the backlog), having sent `hello`.
UniqueFd Connect(const TestListener& l, const std::string& hello = "") {
  UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_EQ(::connect(client.get(), reinterpret_cast<const sockaddr*>(&l.addr), sizeof(l.addr)),
            0);
  if (!hello.empty()) {
    EXPECT_EQ(::send(client.get(), hello.data(), hello.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(hello.size()));
  }
  return client;
}

// Takes every accepted descriptor on EPOLLIN while taking, and keeps them and the
// errors.
class AcceptingWatcher : public EventLoop::Watcher {
 public:
  void OnReady(uint32_t events) override {
    calls_.fetch_add(1);
    if (!taking_.load()) return;
    for (;;) {
      absl::StatusOr<UniqueFd> fd = channel->Next();
      absl::MutexLock lock(&mu_);
      if (fd.ok()) {
        accepted_.push_back(*std::move(fd));
        continue;
      }
      if (!absl::IsUnavailable(fd.status())) errors_.push_back(fd.status());
      return;
    }
  }

  // The first byte each connection taken so far sent, in the order taken (waiting for
  // each byte, which may arrive after its connection is accepted).
  std::string first_bytes() {
    absl::MutexLock lock(&mu_);
    for (size_t i = first_bytes_.size(); i < accepted_.size(); ++i) {
      char c = '?';
      if (WaitForIo(accepted_[i].get(), IoInterest::kRead, MonotonicNow() + testutil::kWait,
                    "test")
              .ok()) {
        ::recv(accepted_[i].get(), &c, 1, 0);
      }
      first_bytes_.push_back(c);
    }
    return first_bytes_;
  }
  size_t accepted() const {
    absl::MutexLock lock(&mu_);
    return accepted_.size();
  }
  std::vector<absl::Status> errors() const {
    absl::MutexLock lock(&mu_);
    return errors_;
  }
  int calls() const { return calls_.load(); }
  void set_taking(bool on) { taking_.store(on); }

  EventLoop::AcceptChannel* channel = nullptr;  // set on the loop thread

 private:
  mutable absl::Mutex mu_;
  std::string first_bytes_ ABSL_GUARDED_BY(mu_);
  std::vector<UniqueFd> accepted_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Status> errors_ ABSL_GUARDED_BY(mu_);
  std::atomic<int> calls_{0};
  std::atomic<bool> taking_{true};
};

// A channel for `fd` made on the loop, accepting (armed with the kernel once this
// returns: the loop has been round twice); null (and checked so) on epoll.
std::unique_ptr<EventLoop::AcceptChannel> StartAccepting(LoopThread& t, int fd,
                                                         AcceptingWatcher& watcher) {
  std::unique_ptr<EventLoop::AcceptChannel> channel;
  t.RunOnLoop([&] {
    channel = t.loop().MakeAcceptChannel(fd, &watcher);
    if (channel == nullptr) return;
    watcher.channel = channel.get();
    channel->SetAccepting(true);
  });
  t.RunOnLoop([] {});  // the accept is submitted by the Wait between the two
  if (t.loop().kind() == EventLoopKind::kEpoll) {
    EXPECT_EQ(channel, nullptr) << "epoll accepts on readiness";
  } else {
    EXPECT_NE(channel, nullptr) << t.loop().description();
  }
  return channel;
}

// Whether a connection waits in `l`'s backlog: accepted (and closed) here if so.
bool BacklogHoldsOne(const TestListener& l) {
  const int fd = ::accept4(l.fd.get(), nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) return false;
  ::close(fd);
  return true;
}

// One listener, one loop, one channel taking from it.
class AcceptChannelTest : public ::testing::Test {
 protected:
  // False on epoll (no channel, as checked): the test has nothing to do.
  bool StartAccepting(bool taking = true) {
    watcher_.set_taking(taking);
    channel_ = islet::StartAccepting(t_, l_.fd.get(), watcher_);
    return channel_ != nullptr;
  }
  void TearDown() override {
    if (channel_ != nullptr) t_.RunOnLoop([&] { channel_.reset(); });
    t_.Stop();
  }

  TestListener l_ = Listen();
  LoopThread t_;
  AcceptingWatcher watcher_;
  std::unique_ptr<EventLoop::AcceptChannel> channel_;
};

TEST_F(AcceptChannelTest, AcceptsEveryConnectionInOrder) {
  if (!StartAccepting()) return;
  std::vector<UniqueFd> clients;
  for (char c : std::string("abcdefgh")) clients.push_back(Connect(l_, std::string(1, c)));
  ASSERT_TRUE(testutil::WaitFor([&] { return watcher_.accepted() == 8; }))
      << watcher_.first_bytes();
  EXPECT_EQ(watcher_.first_bytes(), "abcdefgh");
  EXPECT_TRUE(watcher_.errors().empty());
  EXPECT_FALSE(BacklogHoldsOne(l_));
}

// Not accepting: new connections wait in the listener's backlog, not in the loop.
TEST_F(AcceptChannelTest, StoppedAcceptingLeavesConnectionsInTheBacklog) {
  if (!StartAccepting()) return;
  UniqueFd first = Connect(l_, "1");
  ASSERT_TRUE(testutil::WaitFor([&] { return watcher_.accepted() == 1; }));
  t_.RunOnLoop([&] { channel_->SetAccepting(false); });
  UniqueFd second = Connect(l_, "2");
  t_.RunOnLoop([] {});
  t_.RunOnLoop([] {});
  EXPECT_EQ(watcher_.accepted(), 1u);
  EXPECT_TRUE(BacklogHoldsOne(l_)) << "the loop accepted while told not to";
  // Accepting again takes what came meanwhile.
  UniqueFd third = Connect(l_, "3");
  t_.RunOnLoop([&] { channel_->SetAccepting(true); });
  ASSERT_TRUE(testutil::WaitFor([&] { return watcher_.accepted() == 2; }));
  EXPECT_EQ(watcher_.first_bytes(), "13");
}

// What was accepted stays for Next while the watcher does not take it (told again,
// level-triggered), and is closed with the channel: its client sees the end.
TEST_F(AcceptChannelTest, UntakenConnectionsWaitAndCloseWithTheChannel) {
  if (!StartAccepting(/*taking=*/false)) return;
  UniqueFd taken = Connect(l_, "t");
  ASSERT_TRUE(testutil::WaitFor([&] { return watcher_.calls() >= 3; }))
      << "told once, not again while untaken";
  EXPECT_FALSE(BacklogHoldsOne(l_));
  watcher_.set_taking(true);
  ASSERT_TRUE(testutil::WaitFor([&] { return watcher_.accepted() == 1; }));
  watcher_.set_taking(false);
  UniqueFd untaken = Connect(l_, "u");
  const int calls = watcher_.calls();
  ASSERT_TRUE(testutil::WaitFor([&] { return watcher_.calls() > calls; }));
  t_.RunOnLoop([&] { channel_.reset(); });
  char c = 0;
  const ssize_t n = ::recv(untaken.get(), &c, 1, 0);  // blocking: the end, or a reset
  EXPECT_TRUE(n == 0 || (n < 0 && errno == ECONNRESET)) << n << " " << errno;
  EXPECT_EQ(watcher_.accepted(), 1u);
}

// A watcher that does not take what was accepted stops the accept at a bound: 256,
// plus what the loop turn that reached it accepted (the kernel accepts all that waits
// at once). Connections after that wait in the listener's backlog, not in the loop, and
// are accepted once the watcher takes again. (The backlog is large enough for all: a
// full one would leave connections half-open, in neither.)
TEST_F(AcceptChannelTest, WhatIsNotTakenStopsTheAcceptAtABound) {
  constexpr int kFill = 300;  // past the bound
  constexpr int kLater = 300;
  l_ = Listen(/*backlog=*/1024);
  if (!StartAccepting(/*taking=*/false)) return;
  std::vector<UniqueFd> clients;
  for (int i = 0; i < kFill; ++i) clients.push_back(Connect(l_));
  t_.RunOnLoop([] {});
  t_.RunOnLoop([] {});
  for (int i = 0; i < kLater; ++i) clients.push_back(Connect(l_));
  t_.RunOnLoop([] {});
  t_.RunOnLoop([] {});
  // What the loop left in the backlog, taken here: at least every later one.
  int left = 0;
  while (BacklogHoldsOne(l_)) ++left;
  EXPECT_GE(left, kLater) << "the loop accepted " << kFill + kLater - left
                          << " it was not taking";
  watcher_.set_taking(true);
  const size_t expect = static_cast<size_t>(kFill + kLater - left);
  ASSERT_TRUE(testutil::WaitFor([&] { return watcher_.accepted() == expect; }))
      << watcher_.accepted() << " of " << expect;
}

// A listening socket shut down under the accept: Next says so, after what was
// accepted before.
TEST_F(AcceptChannelTest, AShutDownListenerIsReported) {
  if (!StartAccepting()) return;
  UniqueFd client = Connect(l_, "a");
  ASSERT_TRUE(testutil::WaitFor([&] { return watcher_.accepted() == 1; }));
  ASSERT_EQ(::shutdown(l_.fd.get(), SHUT_RDWR), 0);
  ASSERT_TRUE(testutil::WaitFor([&] { return !watcher_.errors().empty(); }));
  EXPECT_TRUE(absl::IsFailedPrecondition(watcher_.errors()[0])) << watcher_.errors()[0];
}

// An accept waits on the listening socket exclusively: the kernel wakes one waiter per
// connection. A loop that stops accepting must not take a wake-up meant for another
// loop accepting from the same socket (another acceptor; a successor after a
// hand-off), or that connection waits in the backlog unaccepted. Loop A arms first, so
// its wait comes first; it stops, and at once (before its loop waits again) a client
// connects: loop B accepts it.
TEST(AcceptChannelTwoLoopsTest, AnotherLoopGetsTheConnectionsOnceOneStops) {
  TestListener l = Listen();
  LoopThread a;
  LoopThread b;
  AcceptingWatcher a_watcher;
  AcceptingWatcher b_watcher;
  std::unique_ptr<EventLoop::AcceptChannel> a_channel = StartAccepting(a, l.fd.get(), a_watcher);
  std::unique_ptr<EventLoop::AcceptChannel> b_channel = StartAccepting(b, l.fd.get(), b_watcher);
  if (a_channel != nullptr && b_channel != nullptr) {
    UniqueFd client;
    a.RunOnLoop([&] {
      a_channel->SetAccepting(false);
      client = Connect(l, "x");
    });
    ASSERT_TRUE(testutil::WaitFor([&] { return b_watcher.accepted() == 1; }))
        << "the connection waits in the backlog: " << BacklogHoldsOne(l);
    EXPECT_EQ(b_watcher.first_bytes(), "x");
    EXPECT_EQ(a_watcher.accepted(), 0u);
    a.RunOnLoop([&] { a_channel.reset(); });
    b.RunOnLoop([&] { b_channel.reset(); });
  }
  a.Stop();
  b.Stop();
}

}  // namespace
}  // namespace islet
