// OutputQueue alone, over a scripted socket: what goes straight to the kernel, what is
// queued and in which order it leaves, the limit, the water marks, the send deadline,
// file slices, and the socket's errors.
#include "server/output_queue.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/fake_socket.h"
#include "testing/status_matchers.h"
#include "testing/temp_file.h"
#include "transport/errors.h"
#include "transport/regular_file.h"

namespace islet {
namespace {


constexpr absl::Duration kSendTimeout = absl::Seconds(30);
const absl::Duration kStart = absl::Seconds(1000);

OutputQueue::Limits SmallLimits() {
  return {.high_water = 8, .limit = 20, .send_timeout = kSendTimeout};
}

absl::StatusOr<size_t> Write(OutputQueue& out, FakeSocket& socket, absl::string_view data,
                             absl::Duration now = kStart) {
  return out.Write(socket, absl::MakeConstSpan(&data, 1), now);
}

TEST(OutputQueueTest, WhatTheKernelTakesIsNotQueued) {
  FakeSocket socket;
  const OutputQueue::Limits limits = SmallLimits();
  OutputQueue out(limits);
  EXPECT_THAT(Write(out, socket, "hello"), IsOkAndHolds(0u));
  EXPECT_EQ(socket.written, "hello");
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(out.bytes(), 0u);
  EXPECT_EQ(out.send_deadline(), absl::InfiniteDuration());
}

TEST(OutputQueueTest, TheRestOfAPartialWriteIsQueuedAndFlushedInOrder) {
  FakeSocket socket;
  socket.write_script = {size_t{3}, WouldBlockError("send")};
  const OutputQueue::Limits limits;
  OutputQueue out(limits);
  EXPECT_THAT(Write(out, socket, "hello world"), IsOkAndHolds(8u));
  EXPECT_EQ(socket.written, "hel");
  EXPECT_EQ(out.bytes(), 8u);

  // While something is queued, new output goes behind it, not to the kernel.
  const int calls = socket.write_calls;
  EXPECT_THAT(Write(out, socket, "!"), IsOkAndHolds(1u));
  EXPECT_EQ(socket.write_calls, calls);
  EXPECT_EQ(out.bytes(), 9u);

  // The kernel is still full (the script's would-block): nothing moves.
  ASSERT_THAT(out.Flush(socket, kStart), IsOk());
  EXPECT_EQ(socket.written, "hel");
  EXPECT_EQ(out.bytes(), 9u);
  // Now it takes everything.
  ASSERT_THAT(out.Flush(socket, kStart), IsOk());
  EXPECT_EQ(socket.written, "hello world!");
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(out.bytes(), 0u);
}

TEST(OutputQueueTest, GatheredBuffersArriveOnceAndInOrderThroughShortWrites) {
  FakeSocket socket;
  socket.max_write = 3;  // every write takes at most 3 bytes
  socket.writes_blocked = 0;
  std::vector<std::string> pieces;
  std::string expected;
  for (int i = 0; i < 40; ++i) {
    pieces.push_back(std::string(static_cast<size_t>(i % 5), static_cast<char>('a' + i % 26)));
    expected += pieces.back();
  }
  std::vector<absl::string_view> views(pieces.begin(), pieces.end());
  const OutputQueue::Limits limits;
  OutputQueue out(limits);
  // Short writes keep going until the kernel refuses: here it never does.
  EXPECT_THAT(out.Write(socket, views, kStart), IsOkAndHolds(0u));
  EXPECT_EQ(socket.written, expected);
  EXPECT_FALSE(socket.saw_empty_buffer);
}

TEST(OutputQueueTest, AWriteOverTheLimitIsRefusedWholeAndNothingIsCopied) {
  FakeSocket socket;
  socket.writes_always_blocked = true;
  const OutputQueue::Limits limits = SmallLimits();
  OutputQueue out(limits);  // limit 20
  EXPECT_THAT(Write(out, socket, std::string(21, 'x')),
              StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_TRUE(out.empty());
  EXPECT_THAT(Write(out, socket, std::string(12, 'a')), IsOkAndHolds(12u));
  EXPECT_THAT(Write(out, socket, std::string(9, 'b')),
              StatusIs(absl::StatusCode::kResourceExhausted, "21 bytes to queue"));
  EXPECT_EQ(out.bytes(), 12u);
  EXPECT_THAT(Write(out, socket, std::string(8, 'c')), IsOkAndHolds(8u));
  EXPECT_EQ(out.bytes(), 20u);
}

TEST(OutputQueueTest, WaterMarks) {
  FakeSocket socket;
  socket.writes_always_blocked = true;
  const OutputQueue::Limits limits = SmallLimits();
  OutputQueue out(limits);  // high water 8: low water is 2
  ASSERT_THAT(Write(out, socket, "12345678"), IsOkAndHolds(8u));
  EXPECT_FALSE(out.AboveHighWater());
  ASSERT_THAT(Write(out, socket, "9"), IsOkAndHolds(1u));
  EXPECT_TRUE(out.AboveHighWater());
  EXPECT_FALSE(out.DrainedToLowWater());

  socket.writes_always_blocked = false;
  socket.write_script = {size_t{6}, WouldBlockError("send")};  // 3 left
  ASSERT_THAT(out.Flush(socket, kStart), IsOk());
  EXPECT_EQ(out.bytes(), 3u);
  EXPECT_FALSE(out.AboveHighWater());
  EXPECT_FALSE(out.DrainedToLowWater());
  socket.write_script = {size_t{1}, WouldBlockError("send")};  // 2 left
  ASSERT_THAT(out.Flush(socket, kStart), IsOk());
  EXPECT_TRUE(out.DrainedToLowWater());
}

TEST(OutputQueueTest, TheSendDeadlineMovesOnlyWithProgress) {
  FakeSocket socket;
  socket.writes_always_blocked = true;
  const OutputQueue::Limits limits = SmallLimits();
  OutputQueue out(limits);
  ASSERT_THAT(Write(out, socket, "abc", kStart), IsOkAndHolds(3u));
  EXPECT_EQ(out.send_deadline(), kStart + kSendTimeout);
  // More output later does not give the peer more time.
  ASSERT_THAT(Write(out, socket, "def", kStart + absl::Seconds(5)), IsOkAndHolds(3u));
  EXPECT_EQ(out.send_deadline(), kStart + kSendTimeout);
  // Nor does a flush that moves nothing.
  ASSERT_THAT(out.Flush(socket, kStart + absl::Seconds(6)), IsOk());
  EXPECT_EQ(out.send_deadline(), kStart + kSendTimeout);
  // Progress does.
  socket.writes_always_blocked = false;
  socket.write_script = {size_t{1}, WouldBlockError("send")};
  ASSERT_THAT(out.Flush(socket, kStart + absl::Seconds(7)), IsOk());
  EXPECT_EQ(out.send_deadline(), kStart + absl::Seconds(7) + kSendTimeout);
  // Empty again: no deadline.
  ASSERT_THAT(out.Flush(socket, kStart + absl::Seconds(8)), IsOk());
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(out.send_deadline(), absl::InfiniteDuration());
}

TEST(OutputQueueTest, FileSlicesGoOutInTurnAndHoldReadingBack) {
  const std::string path = WriteTestFile("output_queue_slice", "0123456789");
  absl::StatusOr<RegularFile> file = OpenRegularFile(path, "test: open");
  ASSERT_THAT(file, IsOk());

  FakeSocket socket;
  socket.writes_always_blocked = true;
  const OutputQueue::Limits limits = SmallLimits();
  OutputQueue out(limits);
  ASSERT_THAT(Write(out, socket, "head:"), IsOkAndHolds(5u));
  out.QueueFile(std::move(file->fd), 2, 5, kStart);
  ASSERT_THAT(Write(out, socket, ":tail"), IsOkAndHolds(5u));
  EXPECT_EQ(out.files(), 1u);
  EXPECT_EQ(out.bytes(), 10u);  // a file slice holds a descriptor, not memory
  EXPECT_FALSE(out.DrainedToLowWater());

  socket.writes_always_blocked = false;
  ASSERT_THAT(out.Flush(socket, kStart), IsOk());
  EXPECT_EQ(socket.written, "head:23456:tail");
  EXPECT_EQ(out.files(), 0u);
  EXPECT_TRUE(out.empty());
  EXPECT_TRUE(out.DrainedToLowWater());
}

TEST(OutputQueueTest, TheSocketsErrorsComeBackAndQueueNothing) {
  FakeSocket socket;
  socket.write_script = {absl::AbortedError("send: connection reset by peer")};
  const OutputQueue::Limits limits = SmallLimits();
  OutputQueue out(limits);
  EXPECT_THAT(Write(out, socket, "abc"), StatusIs(absl::StatusCode::kAborted));
  EXPECT_TRUE(out.empty());

  socket.write_script = {WouldBlockError("send"), absl::AbortedError("send: reset")};
  ASSERT_THAT(Write(out, socket, "abc"), IsOkAndHolds(3u));
  EXPECT_THAT(out.Flush(socket, kStart), StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(out.bytes(), 3u);  // still there: the caller decides what to do
}

TEST(OutputQueueTest, ClearDropsEverything) {
  FakeSocket socket;
  socket.writes_always_blocked = true;
  const OutputQueue::Limits limits = SmallLimits();
  OutputQueue out(limits);
  ASSERT_THAT(Write(out, socket, "abc"), IsOkAndHolds(3u));
  out.Clear();
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(out.bytes(), 0u);
  EXPECT_EQ(out.send_deadline(), absl::InfiniteDuration());
}

// Fairness: one Flush moves at most flush_budget bytes even to a peer that takes all
// it is given, so a fast reader of a large response cannot hold its worker's loop; the
// rest goes out on later calls (the loop's next turns). Before the budget, one Flush
// wrote until the kernel refused.
TEST(OutputQueueTest, OneFlushWritesAtMostItsBudget) {
  FakeSocket socket;
  socket.writes_always_blocked = true;
  const OutputQueue::Limits limits{.high_water = 1 << 20, .limit = 8 << 20,
                                   .send_timeout = kSendTimeout, .flush_budget = 100 << 10};
  OutputQueue out(limits);
  const std::string big(300 << 10, 'b');
  ASSERT_THAT(Write(out, socket, big), IsOkAndHolds(big.size()));
  const std::string path = WriteTestFile("output_queue_budget", std::string(250 << 10, 'f'));
  absl::StatusOr<RegularFile> file = OpenRegularFile(path, "test: open");
  ASSERT_THAT(file, IsOk());
  out.QueueFile(std::move(file->fd), 0, 250 << 10, kStart);

  socket.writes_always_blocked = false;  // from here the peer takes everything
  std::vector<size_t> per_flush;
  while (!out.empty() && per_flush.size() < 20) {
    const size_t before = socket.written.size();
    ASSERT_THAT(out.Flush(socket, kStart), IsOk());
    per_flush.push_back(socket.written.size() - before);
  }
  EXPECT_TRUE(out.empty());
  for (size_t n : per_flush) EXPECT_LE(n, size_t{100} << 10);
  EXPECT_EQ(per_flush.size(), 6u);  // 550 KiB in flushes of at most 100 KiB
  EXPECT_EQ(socket.written, big + std::string(250 << 10, 'f'));
}

}  // namespace
}  // namespace islet
