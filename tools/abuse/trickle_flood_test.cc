// Issue 12, test a: 10,000 connections trickling one byte of a request head a second
// at the harness (http_hello) while a good client is served. The tricklers run in
// //tools/abuse:flood_client, a process of their own (the descriptor limit); the good
// client, in this process, makes 100 requests, half on new connections and half on one
// keep-alive connection, and every one must get its 200. The flood's own line and the
// harness's descriptor count show that the 10,000 really were connected throughout.
// Under a sanitizer the flood is 2,000 connections (the harness runs several times
// slower there).
#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
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

constexpr absl::Duration kRequestDeadline = absl::Seconds(10);

TEST(TrickleFloodTest, GoodClientIsServedWhileTenThousandConnectionsTrickle) {
  const int tricklers = Scaled(10000, 2000);
  Harness server;
  // The head deadline and the read timeout (60 s) outlast the test: nothing sheds the
  // tricklers, so they all stay connected while the good client is served.
  ASSERT_NO_FATAL_FAILURE(StartHarness({"--handler=http_hello", "--port=0", "--num_workers=2",
                                        "--head_timeout=60s", "--read_timeout=60s",
                                        "--shutdown_timeout=1s", "--log=warning"},
                                       &server));
  absl::StatusOr<std::unique_ptr<Subprocess>> flood =
      StartFlood(server.port, {"--mode=trickle", absl::StrCat("--connections=", tricklers),
                               "--interval=1s", "--duration=90s", "--ready_timeout=30s"});
  ASSERT_TRUE(flood.ok()) << flood.status();
  absl::StatusOr<FloodLine> ready = WaitForFloodLine(**flood, "ready", absl::Seconds(40));
  ASSERT_TRUE(ready.ok()) << ready.status();
  ASSERT_EQ(ready->Get("connected"), tricklers) << ready->text;
  // The harness holds one descriptor per trickler (and a few of its own), once it has
  // accepted them all: "connected" counts connects the kernel completed, some of which
  // may still wait in the listen backlog (a while, under a sanitizer).
  const absl::Time accepted_by = absl::Now() + absl::Seconds(30);
  int open = 0;
  while ((open = OpenDescriptors(server.process->pid())) < tricklers &&
         absl::Now() < accepted_by) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_GE(open, tricklers) << Describe(*server.process);

  // The requests are spread over three of the tricklers' intervals, so they meet the
  // flood's sends rather than slipping in between two of them.
  constexpr absl::Duration kPause = absl::Milliseconds(30);
  for (int i = 0; i < 50; ++i) {
    absl::SleepFor(kPause);
    absl::StatusOr<std::string> status =
        GetOnNewConnection(server.port, absl::Now() + kRequestDeadline);
    ASSERT_TRUE(status.ok()) << "request " << i << " on a new connection: " << status.status();
    EXPECT_EQ(*status, "HTTP/1.1 200 OK") << "request " << i;
  }
  absl::StatusOr<UniqueFd> keep_alive =
      ConnectLoopback(server.port, absl::Now() + kRequestDeadline);
  ASSERT_TRUE(keep_alive.ok()) << keep_alive.status();
  std::string buffer;
  for (int i = 0; i < 50; ++i) {
    absl::SleepFor(kPause);
    const absl::Time deadline = absl::Now() + kRequestDeadline;
    ASSERT_TRUE(SendAll(keep_alive->get(), kGet, deadline).ok()) << "keep-alive request " << i;
    absl::StatusOr<std::string> status = ReadHttpResponse(keep_alive->get(), buffer, deadline);
    ASSERT_TRUE(status.ok()) << "keep-alive request " << i << ": " << status.status();
    EXPECT_EQ(*status, "HTTP/1.1 200 OK") << "keep-alive request " << i;
  }

  // The tricklers were there all along: none was closed, and they kept sending (two
  // bytes each at least: the first at once, the next an interval later).
  absl::StatusOr<FloodLine> summary = StopFlood(**flood, absl::Seconds(20));
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->Get("open"), tricklers) << summary->text;
  EXPECT_EQ(summary->Get("eof") + summary->Get("reset"), 0) << summary->text;
  EXPECT_GE(summary->Get("bytes_sent"), 2 * tricklers) << summary->text;
  StopAndExpectExit0(*server.process, SIGTERM, absl::Seconds(20));
}

}  // namespace
}  // namespace islet::abuse
