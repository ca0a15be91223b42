// The thread rule, checked: a loop-only call made from another thread while the loop
// runs dies with a message naming the call (debug builds; -c opt compiles the check
// out, and these tests skip there).
#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "server/connection.h"
#include "server/event_loop.h"
#include "server/handler.h"
#include "server/server.h"
#include "server/test_util.h"
#include "transport/io_wait.h"

namespace islet {
namespace {

using testutil::kWait;

#ifdef NDEBUG
constexpr bool kThreadChecks = false;
#else
constexpr bool kThreadChecks = true;
#endif

constexpr char kOffLoop[] = "called off its event loop's thread";

class LoopThreadDeathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!kThreadChecks) GTEST_SKIP() << "thread checks are compiled out (NDEBUG)";
    // The statement starts threads: run it in a fresh copy of the binary.
    GTEST_FLAG_SET(death_test_style, "threadsafe");
  }
};

TEST_F(LoopThreadDeathTest, SchedulingOnARunningLoopFromAnotherThreadDies) {
  EXPECT_DEATH(
      {
        absl::StatusOr<std::unique_ptr<EventLoop>> loop = EventLoop::Create();
        if (!loop.ok()) return;
        std::thread runner([&] { (*loop)->Run(); });
        absl::Notification running;
        (*loop)->Post([&] { running.Notify(); });
        running.WaitForNotification();
        (*loop)->Schedule(MonotonicNow(), [] {});  // not from the loop's thread
        (*loop)->Quit();
        runner.join();
      },
      kOffLoop);
}

TEST_F(LoopThreadDeathTest, TheSameCallOnTheLoopThreadIsFine) {
  absl::StatusOr<std::unique_ptr<EventLoop>> loop = EventLoop::Create();
  ASSERT_TRUE(loop.ok()) << loop.status();
  std::thread runner([&] { (*loop)->Run(); });
  absl::Notification fired;
  (*loop)->Post([&] { (*loop)->Schedule(MonotonicNow(), [&] { fired.Notify(); }); });
  EXPECT_TRUE(fired.WaitForNotificationWithTimeout(kWait));
  (*loop)->Quit();
  runner.join();
  // Once Run has returned, the thread that holds the loop may use it.
  EventLoop::TimerId id = (*loop)->Schedule(MonotonicNow() + absl::Hours(1), [] {});
  (*loop)->Cancel(id);
}

// Hands its Connection& out of the callback, as a handler must not.
class LeakingHandler : public Handler {
 public:
  static Connection* leaked;
  static absl::Notification* ready;
  HandlerResult HandleConnection(Connection& conn) override {
    leaked = &conn;
    ready->Notify();
    return HandlerResult::Continue();
  }
};
Connection* LeakingHandler::leaked = nullptr;
absl::Notification* LeakingHandler::ready = nullptr;

TEST_F(LoopThreadDeathTest, ConnectionCalledFromAnotherThreadDies) {
  EXPECT_DEATH(
      {
        absl::Notification ready;
        LeakingHandler::ready = &ready;
        std::unique_ptr<Server> server = testutil::MustStart(
            testutil::LoopbackOptions(HandlerFactoryOf<LeakingHandler>()));
        std::unique_ptr<TcpSocket> client = testutil::MustConnect(*server);
        if (!ready.WaitForNotificationWithTimeout(kWait)) return;
        LeakingHandler::leaked->Send("from the wrong thread").IgnoreError();
      },
      kOffLoop);
}

}  // namespace
}  // namespace islet
