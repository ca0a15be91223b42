// The flood client against the harness, small: each mode's lines and counts, the
// reconnecting trickler, a reset storm the server survives, a port where nothing
// listens (counted and retried, never a hang), and a target off loopback (refused).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tools/abuse/abuse_test_util.h"
#include "tools/harness/harness_test_util.h"

namespace islet::abuse {
namespace {

using harness::Describe;
using harness::Harness;
using harness::StartHarness;
using harness::StopAndExpectExit0;

constexpr absl::Duration kBound = absl::Seconds(30);

// Runs the flood to its end (--duration) and returns its summary.
FloodLine RunToEnd(uint16_t port, const std::vector<std::string>& flags) {
  absl::StatusOr<std::unique_ptr<Subprocess>> flood = StartFlood(port, flags);
  EXPECT_TRUE(flood.ok()) << flood.status();
  if (!flood.ok()) return {};
  absl::StatusOr<FloodLine> summary = WaitForFloodLine(**flood, "summary", kBound);
  EXPECT_TRUE(summary.ok()) << summary.status();
  std::optional<Subprocess::Exit> exit = (*flood)->Wait(kBound);
  EXPECT_TRUE(exit.has_value() && exit->ExitedWith(0)) << Describe(**flood);
  return summary.ok() ? *summary : FloodLine{};
}

TEST(FloodClientTest, ParsesItsLines) {
  std::vector<FloodLine> lines = ParseFloodLines(
      "noise\nflood: ready connected=3 of=3 elapsed_ms=5\nflood: summary eof=1 reset=x\n");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].what, "ready");
  EXPECT_EQ(lines[0].Get("connected"), 3);
  EXPECT_EQ(lines[1].Get("eof"), 1);
  EXPECT_EQ(lines[1].Get("reset"), -1);
  EXPECT_EQ(lines[1].Get("absent"), -1);
}

TEST(FloodClientTest, TricklersStayConnectedAndSendOnTheirInterval) {
  Harness server;
  ASSERT_NO_FATAL_FAILURE(StartHarness({"--handler=echo", "--port=0", "--log=warning"}, &server));
  absl::StatusOr<std::unique_ptr<Subprocess>> flood =
      StartFlood(server.port, {"--mode=trickle", "--connections=50", "--interval=50ms",
                               "--duration=1500ms"});
  ASSERT_TRUE(flood.ok()) << flood.status();
  absl::StatusOr<FloodLine> ready = WaitForFloodLine(**flood, "ready", kBound);
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_EQ(ready->Get("connected"), 50);
  EXPECT_EQ(ready->Get("of"), 50);
  absl::StatusOr<FloodLine> summary = WaitForFloodLine(**flood, "summary", kBound);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->Get("open"), 50) << summary->text;
  EXPECT_EQ(summary->Get("eof") + summary->Get("reset"), 0) << summary->text;
  // A byte per connection at once, then one per 50 ms: about 30 each in 1.5 s; echo
  // returns them.
  EXPECT_GE(summary->Get("bytes_sent"), 50 * 10) << summary->text;
  EXPECT_LE(summary->Get("bytes_sent"), 50 * 40) << summary->text;
  EXPECT_GT(summary->Get("bytes_received"), 0) << summary->text;
  StopAndExpectExit0(*server.process);
}

TEST(FloodClientTest, TricklersCutOffByTheHeadDeadlineReconnect) {
  Harness server;
  ASSERT_NO_FATAL_FAILURE(StartHarness(
      {"--handler=http_hello", "--port=0", "--head_timeout=300ms", "--log=warning"}, &server));
  FloodLine summary = RunToEnd(server.port, {"--mode=trickle", "--reconnect", "--connections=20",
                                             "--interval=50ms", "--duration=2s"});
  EXPECT_GT(summary.Get("eof"), 0) << summary.text;
  EXPECT_GT(summary.Get("reconnects"), 0) << summary.text;
  EXPECT_EQ(summary.Get("connected"), 20 + summary.Get("reconnects")) << summary.text;
  StopAndExpectExit0(*server.process);
}

TEST(FloodClientTest, NonReadersSendAndNeverRead) {
  Harness server;
  ASSERT_NO_FATAL_FAILURE(StartHarness({"--handler=echo", "--port=0", "--log=warning",
                                        "--shutdown_timeout=1s"},
                                       &server));
  FloodLine summary = RunToEnd(server.port, {"--mode=noread", "--payload=bytes",
                                             "--connections=20", "--duration=1s"});
  EXPECT_EQ(summary.Get("open"), 20) << summary.text;
  EXPECT_GT(summary.Get("bytes_sent"), 1 << 20) << summary.text;
  EXPECT_EQ(summary.Get("bytes_received"), 0) << summary.text;
  StopAndExpectExit0(*server.process);
}

TEST(FloodClientTest, SilentConnectionsSendNothingAndSeeTheServerClose) {
  Harness server;
  ASSERT_NO_FATAL_FAILURE(StartHarness(
      {"--handler=echo", "--port=0", "--read_timeout=300ms", "--log=warning"}, &server));
  FloodLine summary =
      RunToEnd(server.port, {"--mode=silent", "--connections=10", "--duration=2s"});
  EXPECT_EQ(summary.Get("bytes_sent"), 0) << summary.text;
  // The read timeout closes each; without --reconnect they stay closed.
  EXPECT_EQ(summary.Get("eof"), 10) << summary.text;
  EXPECT_EQ(summary.Get("open"), 0) << summary.text;
  StopAndExpectExit0(*server.process);
}

TEST(FloodClientTest, ResetStormSendsEveryResetAndTheServerStillServes) {
  Harness server;
  ASSERT_NO_FATAL_FAILURE(
      StartHarness({"--handler=http_hello", "--port=0", "--log=warning"}, &server));
  const absl::Time start = absl::Now();
  FloodLine summary = RunToEnd(server.port, {"--mode=reset", "--connections=300",
                                             "--concurrency=50", "--duration=20s"});
  EXPECT_EQ(summary.Get("rst_sent"), 300) << summary.text;
  EXPECT_EQ(summary.Get("connected"), 300) << summary.text;
  EXPECT_LT(absl::Now() - start, absl::Seconds(20)) << "it stops once every reset is sent";
  absl::StatusOr<std::string> status = GetOnNewConnection(server.port, absl::Now() + kBound);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(*status, "HTTP/1.1 200 OK");
  StopAndExpectExit0(*server.process);
}

TEST(FloodClientTest, NothingListeningIsCountedAndRetriedWithinTheDuration) {
  // A port that was just free: bound, never listened on, closed.
  UniqueFd probe(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::bind(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::getsockname(probe.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const uint16_t port = ntohs(addr.sin_port);
  probe.reset();
  const absl::Time start = absl::Now();
  FloodLine summary = RunToEnd(port, {"--mode=trickle", "--connections=5", "--duration=1s",
                                      "--ready_timeout=500ms"});
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_EQ(summary.Get("connected"), 0) << summary.text;
  EXPECT_GT(summary.Get("refused"), 5) << "refused connects are retried: " << summary.text;
}

TEST(FloodClientTest, RefusesATargetOffLoopback) {
  for (const char* target : {"--target=10.0.0.1:80", "--target=localhost:80", "--target="}) {
    absl::StatusOr<std::unique_ptr<Subprocess>> flood =
        Subprocess::Start({harness::RunfilePath("tools/abuse/flood_client"), target},
                          SubprocessOptions{});
    ASSERT_TRUE(flood.ok()) << flood.status();
    std::optional<Subprocess::Exit> exit = (*flood)->Wait(kBound);
    ASSERT_TRUE(exit.has_value()) << Describe(**flood);
    EXPECT_TRUE(exit->ExitedWith(2)) << target << Describe(**flood);
    EXPECT_EQ((*flood)->Stdout(), "") << target;
    harness::ExpectOneLine((*flood)->Stderr());
    EXPECT_TRUE(absl::StartsWith((*flood)->Stderr(), "flood_client: --target")) << target;
  }
}

}  // namespace
}  // namespace islet::abuse
