// Issue 12, test c: 1,000 connections that send and never read, against echo with an
// explicit --output_budget of 64 MiB. Each could make the server queue its high water
// (1 MiB) of answers, 1 GiB in all; the budget holds the harness's peak resident memory
// (VmHWM) to its baseline before the flood, plus the budget, plus a stated margin.
//
// The flood makes the kernel hold little: each connection announces a small MSS and a
// small receive buffer, so the server's socket buffers stay small and what the readers
// refuse piles up in the server's own queues, where the budget applies.
//
// The control runs the same flood with a budget of 16 GiB and expects the peak to pass
// the bound: the flood is heavy enough that only the budget keeps memory under it.
//
// Under a sanitizer resident memory counts shadow memory and the allocator's
// quarantine (ASan keeps up to 256 MiB of freed blocks), so no bound on it means what
// it means here: there the flood is 200 connections, the test checks only that they
// are shed and the server stops cleanly, and the control is skipped.
#include <cstdint>
#include <cstdio>
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

constexpr int64_t kBudget = int64_t{64} << 20;
// Past the budget a connection stops reading, but what it read last (one read, at most
// the worker's 64 KiB read buffer) is still echoed and queued: that much per
// connection, plus 16 MiB for the allocator's slack. (On io_uring a read is one 16 KiB
// receive buffer, and the loop stages up to 16 KiB more per socket, outside the
// budget; with the queue's last, partly filled, 16 KiB block that is 48 KiB.)
constexpr int64_t kPerConnectionMargin = int64_t{64} << 10;
constexpr int64_t kSlack = int64_t{16} << 20;

struct FloodResult {
  int64_t baseline_kb = 0;  // VmRSS before the flood
  int64_t peak_kb = 0;      // VmHWM at the end
  FloodLine summary;
};

// Starts echo with `budget` and floods it with `readers` that never read, for `length`
// or until the peak has grown past `stop_above_kb`; then stops both.
void RunFlood(int64_t budget, int readers, absl::Duration length, int64_t stop_above_kb,
              FloodResult* out) {
  Harness server;
  ASSERT_NO_FATAL_FAILURE(StartHarness({"--handler=echo", "--port=0", "--num_workers=2",
                                        absl::StrCat("--output_budget=", budget),
                                        "--shutdown_timeout=1s", "--log=warning"},
                                       &server));
  const pid_t pid = server.process->pid();
  out->baseline_kb = ProcStatusKb(pid, "VmRSS");
  ASSERT_GT(out->baseline_kb, 0);
  absl::StatusOr<std::unique_ptr<Subprocess>> flood = StartFlood(
      server.port, {"--mode=noread", "--payload=bytes", absl::StrCat("--connections=", readers),
                    "--rcvbuf=4096", "--sndbuf=65536", "--mss=536", "--duration=60s",
                    "--ready_timeout=20s"});
  ASSERT_TRUE(flood.ok()) << flood.status();
  absl::StatusOr<FloodLine> ready = WaitForFloodLine(**flood, "ready", absl::Seconds(30));
  ASSERT_TRUE(ready.ok()) << ready.status();
  const absl::Time end = absl::Now() + length;
  while (absl::Now() < end &&
         ProcStatusKb(pid, "VmHWM") - out->baseline_kb <= stop_above_kb) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  out->peak_kb = ProcStatusKb(pid, "VmHWM");
  std::printf("budget %lld kB: baseline %lld kB, peak %lld kB (growth %lld kB)\n",
              static_cast<long long>(budget >> 10), static_cast<long long>(out->baseline_kb),
              static_cast<long long>(out->peak_kb),
              static_cast<long long>(out->peak_kb - out->baseline_kb));
  absl::StatusOr<FloodLine> summary = StopFlood(**flood, absl::Seconds(20));
  ASSERT_TRUE(summary.ok()) << summary.status();
  out->summary = *summary;
  StopAndExpectExit0(*server.process, SIGTERM, absl::Seconds(20));
}

int64_t BoundKb(int readers) {
  return (kBudget + readers * kPerConnectionMargin + kSlack) >> 10;
}

TEST(SlowReaderFloodTest, OutputBudgetBoundsPeakMemory) {
  const int readers = Scaled(1000, 200);
  FloodResult result;
  // Three seconds: the peak comes within the first (the readers' queues fill, the
  // budget is passed, the largest holders are shed).
  ASSERT_NO_FATAL_FAILURE(RunFlood(kBudget, readers, absl::Seconds(3),
                                   /*stop_above_kb=*/INT64_MAX, &result));
  // The budget was reached: connections over their share were shed.
  EXPECT_GT(result.summary.Get("eof") + result.summary.Get("reset"), 0) << result.summary.text;
  EXPECT_GT(result.summary.Get("bytes_sent"), kBudget) << result.summary.text;
  if (!Sanitizer().empty()) return;
  EXPECT_LE(result.peak_kb - result.baseline_kb, BoundKb(readers))
      << "peak " << result.peak_kb << " kB, baseline " << result.baseline_kb << " kB, budget "
      << (kBudget >> 10) << " kB; " << result.summary.text;
}

TEST(SlowReaderFloodTest, ControlWithAHugeBudgetPeakMemoryPassesTheBound) {
  if (!Sanitizer().empty()) GTEST_SKIP() << "resident memory is not comparable under " << Sanitizer();
  const int readers = 1000;
  FloodResult result;
  ASSERT_NO_FATAL_FAILURE(RunFlood(int64_t{16} << 30, readers, absl::Seconds(15),
                                   /*stop_above_kb=*/BoundKb(readers), &result));
  EXPECT_GT(result.peak_kb - result.baseline_kb, BoundKb(readers))
      << "the flood is too light to test the budget: peak " << result.peak_kb
      << " kB, baseline " << result.baseline_kb << " kB; " << result.summary.text;
}

}  // namespace
}  // namespace islet::abuse
