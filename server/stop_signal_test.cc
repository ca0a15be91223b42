// RunUntilStopSignal, in a forked child that is a whole server process: SIGTERM drains
// and returns Stop's status; a second signal during the drain exits 1 at once.
#include "server/stop_signal.h"

#include <signal.h>
#include <sys/wait.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "server/test_util.h"
#include "testing/subprocess.h"

namespace islet {
namespace {

// The child: a server whose connections hold a long shutdown (HandleShutdown answers,
// and the client reads nothing, so with `stall` the drain lasts the whole timeout).
class Goodbye : public Handler {
 public:
  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    absl::Status sent = conn.Send(data);  // "served": the test waits for this echo
    return sent.ok() ? HandlerResult::Continue() : HandlerResult::Error(sent);
  }
  void HandleShutdown(Connection& conn) override {
    conn.Send(std::string(stall ? 64 << 20 : 3, 'g')).IgnoreError();
  }
  static bool stall;
};
bool Goodbye::stall = false;

// Forks the server process; sends its port up the pipe, then runs until a signal.
// Exits 0 when Stop returned OK, 2 when it did not, 3 when it could not start.
std::unique_ptr<ChildProcess> ForkServer(bool stall, uint16_t* port) {
  Goodbye::stall = stall;
  std::unique_ptr<ChildProcess> child = ChildProcess::Fork([](int to_parent, int) -> int {
    BlockStopSignals();
    ServerOptions options = testutil::LoopbackOptions(HandlerFactoryOf<Goodbye>());
    options.shutdown_timeout = absl::Seconds(20);
    options.send_queue_limit = 128 << 20;
    options.send_queue_high_water = 128 << 20;
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(std::move(options));
    if (!server.ok()) return 3;
    const uint16_t p = (*server)->ListenerInfo()->port;
    if (!WriteAll(to_parent, &p, sizeof(p))) return 3;
    return RunUntilStopSignal(**server).ok() ? 0 : 2;
  });
  if (child != nullptr && !child->Read(port, sizeof(*port), testutil::kWait)) child.reset();
  return child;
}

TEST(StopSignalTest, SigtermDrainsTheServerAndReturns) {
  uint16_t port = 0;
  std::unique_ptr<ChildProcess> child = ForkServer(/*stall=*/false, &port);
  ASSERT_NE(child, nullptr);
  UniqueFd client = testutil::RawConnect(port);
  ASSERT_TRUE(client.valid());
  // Served (accepted and echoed) before the signal: one still in the listen backlog
  // would be refused by the stop instead.
  char echo;
  ASSERT_TRUE(testutil::WriteAll(client.get(), "x", 1));
  ASSERT_TRUE(testutil::ReadAll(client.get(), &echo, 1, testutil::kWait));
  ASSERT_TRUE(child->Signal(SIGTERM));
  // The drain ran: HandleShutdown's goodbye came, then the end.
  char bye[3];
  ASSERT_TRUE(testutil::ReadAll(client.get(), bye, sizeof(bye), testutil::kWait));
  EXPECT_EQ(std::string(bye, 3), "ggg");
  std::optional<int> status = child->Wait(testutil::kWait);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
      << (WIFEXITED(*status) ? "exit " : "signal ")
      << (WIFEXITED(*status) ? WEXITSTATUS(*status) : WTERMSIG(*status));
}

TEST(StopSignalTest, ASecondSignalDuringTheDrainExitsOneAtOnce) {
  uint16_t port = 0;
  std::unique_ptr<ChildProcess> child = ForkServer(/*stall=*/true, &port);
  ASSERT_NE(child, nullptr);
  UniqueFd client = testutil::RawConnect(port, /*recv_buffer=*/4096);
  ASSERT_TRUE(client.valid());
  char echo;
  ASSERT_TRUE(testutil::WriteAll(client.get(), "x", 1));
  ASSERT_TRUE(testutil::ReadAll(client.get(), &echo, 1, testutil::kWait));
  ASSERT_TRUE(child->Signal(SIGINT));
  // Draining for up to 20 s: 64 MiB to a client that reads nothing.
  if (std::optional<int> early = child->Wait(absl::Milliseconds(300))) {
    FAIL() << "did not drain; ended with status " << *early
           << (WIFEXITED(*early) ? " (exit " : " (signal ")
           << (WIFEXITED(*early) ? WEXITSTATUS(*early) : WTERMSIG(*early)) << ")";
  }
  ASSERT_TRUE(child->Signal(SIGTERM));
  std::optional<int> status = child->Wait(testutil::kWait);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1) << *status;
}

TEST(StopSignalTest, WaitForSignalTakesTheSignalOrSeesTheDescriptorReadable) {
  // The child blocks SIGHUP, waits on it and on a pipe from us, and reports each wake-up.
  std::unique_ptr<ChildProcess> child = ChildProcess::Fork([](int to_parent, int from_parent) {
    BlockStopSignals();
    BlockSignals({SIGHUP});
    if (!WriteAll(to_parent, "R", 1)) return 3;
    for (int i = 0; i < 2; ++i) {
      const SignalWait w = WaitForSignal({SIGHUP, SIGTERM}, from_parent);
      const char report = w.signal == SIGHUP ? 'H' : w.fd_readable ? 'F' : '?';
      if (w.fd_readable) {
        char drained;
        if (::read(from_parent, &drained, 1) != 1) return 4;
      }
      if (!WriteAll(to_parent, &report, 1)) return 3;
    }
    return 0;
  });
  ASSERT_NE(child, nullptr);
  char got = 0;
  ASSERT_TRUE(child->Read(&got, 1, testutil::kWait));
  ASSERT_TRUE(child->Signal(SIGHUP));
  ASSERT_TRUE(child->Read(&got, 1, testutil::kWait));
  EXPECT_EQ(got, 'H');
  ASSERT_TRUE(child->Write("x", 1));
  ASSERT_TRUE(child->Read(&got, 1, testutil::kWait));
  EXPECT_EQ(got, 'F');
  std::optional<int> status = child->Wait(testutil::kWait);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status;
}

}  // namespace
}  // namespace islet
