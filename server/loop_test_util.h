// Helpers for tests that drive an EventLoop directly: a loop on its own thread, and a
// connected pair of TCP sockets on loopback.
#ifndef ISLET_SERVER_LOOP_TEST_UTIL_H_
#define ISLET_SERVER_LOOP_TEST_UTIL_H_

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <thread>
#include <utility>

#include "absl/functional/any_invocable.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "server/event_loop.h"
#include "server/test_util.h"

namespace islet::testutil {

// Runs a loop on its own thread for the test's duration.
class LoopThread {
 public:
  LoopThread() {
    absl::StatusOr<std::unique_ptr<EventLoop>> loop = EventLoop::Create();
    EXPECT_TRUE(loop.ok()) << loop.status();
    loop_ = *std::move(loop);
    thread_ = std::thread([this] { loop_->Run(); });
  }
  ~LoopThread() { Stop(); }

  EventLoop& loop() { return *loop_; }

  // Runs `task` on the loop thread and waits for it.
  void RunOnLoop(absl::AnyInvocable<void() &&> task) {
    absl::Notification done;
    loop_->Post([&] {
      std::move(task)();
      done.Notify();
    });
    ASSERT_TRUE(done.WaitForNotificationWithTimeout(kWait));
  }

  void Stop() {
    if (!thread_.joinable()) return;
    loop_->Quit();
    thread_.join();
  }

 private:
  std::unique_ptr<EventLoop> loop_;
  std::thread thread_;
};

// A listening socket on 127.0.0.1 and an ephemeral port (its address in `addr`), with
// `flags` added to its type (SOCK_NONBLOCK).
inline int LoopbackListener(int backlog, sockaddr_in& addr, int flags = 0) {
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);
  addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  EXPECT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  EXPECT_EQ(::listen(listener, backlog), 0);
  EXPECT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  return listener;
}

// {server, client}: the server's end non-blocking as an accepted connection's is, the
// client's non-blocking too.
inline std::pair<int, int> TcpPair() {
  sockaddr_in addr;
  const int listener = LoopbackListener(1, addr);
  const int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  EXPECT_EQ(::connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const int server = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
  ::close(listener);
  ::fcntl(client, F_SETFL, ::fcntl(client, F_GETFL) | O_NONBLOCK);
  return {server, client};
}

}  // namespace islet::testutil

#endif  // ISLET_SERVER_LOOP_TEST_UTIL_H_
