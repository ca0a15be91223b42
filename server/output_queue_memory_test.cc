// What OutputQueue allocates while a peer reads nothing: every operator new of this
// binary is counted, so the test sees the queue's own allocations (its chunks and
// their growth), not only the bytes it reports.
//
// A slow reader's output arrives in pieces (on io_uring, one receive buffer of at most
// 16 KiB per read; a handler's small replies), and the server's output budget counts
// the bytes queued. A queue that joined pieces by growing a string allocated about
// twice what it held, freeing each smaller step behind it: under 1,000 slow readers that
// churn left the harness's resident memory far above the budget (tools/abuse's
// slow-reader flood failed 4 runs in 10 on io_uring).
#include <malloc.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/output_queue.h"
#include "testing/fake_socket.h"
#include "testing/status_matchers.h"

namespace {

std::atomic<int64_t> allocated_bytes{0};  // every allocation's usable size, summed
std::atomic<int64_t> live_bytes{0};

void* Allocate(size_t n) {
  void* p = std::malloc(n == 0 ? 1 : n);
  if (p == nullptr) throw std::bad_alloc();
  const auto usable = static_cast<int64_t>(malloc_usable_size(p));
  allocated_bytes.fetch_add(usable, std::memory_order_relaxed);
  live_bytes.fetch_add(usable, std::memory_order_relaxed);
  return p;
}

void Free(void* p) {
  if (p == nullptr) return;
  live_bytes.fetch_sub(static_cast<int64_t>(malloc_usable_size(p)), std::memory_order_relaxed);
  std::free(p);
}

}  // namespace

void* operator new(size_t n) { return Allocate(n); }
void* operator new[](size_t n) { return Allocate(n); }
void operator delete(void* p) noexcept { Free(p); }
void operator delete[](void* p) noexcept { Free(p); }
void operator delete(void* p, size_t) noexcept { Free(p); }
void operator delete[](void* p, size_t) noexcept { Free(p); }

namespace islet {
namespace {


const absl::Duration kNow = absl::Seconds(1000);

struct Usage {
  int64_t allocated = 0;  // bytes allocated while queueing, freed or not
  int64_t live = 0;       // bytes still held once queued
};

// Queues `total` bytes in pieces of `piece` bytes to a socket that takes nothing, and
// checks they leave whole and in order once it does.
Usage QueuePieces(size_t piece, size_t total) {
  std::string data;
  for (size_t i = 0; data.size() < total; ++i) data += static_cast<char>('a' + i % 23);
  FakeSocket socket;
  socket.writes_always_blocked = true;
  const OutputQueue::Limits limits{.high_water = 1 << 20, .limit = 64 << 20};
  Usage usage;
  {
    OutputQueue out(limits);
    const int64_t allocated_before = allocated_bytes.load();
    const int64_t live_before = live_bytes.load();
    for (size_t at = 0; at < data.size(); at += piece) {
      const absl::string_view view = absl::string_view(data).substr(at, piece);
      EXPECT_TRUE(out.Write(socket, absl::MakeConstSpan(&view, 1), kNow).ok());
    }
    usage.allocated = allocated_bytes.load() - allocated_before;
    usage.live = live_bytes.load() - live_before;
    EXPECT_EQ(out.bytes(), data.size());
    socket.writes_always_blocked = false;
    while (!out.empty()) EXPECT_THAT(out.Flush(socket, kNow), IsOk());
    EXPECT_TRUE(socket.written == data) << "the bytes left out of order or changed";
  }
  return usage;
}

TEST(OutputQueueMemoryTest, PiecesBehindASlowPeerAreCopiedOnceIntoBlocks) {
  constexpr size_t kTotal = 8 << 20;
  // A read of the loop's receive buffers, a TCP segment, a small reply, and sizes that
  // straddle the queue's blocks.
  for (const size_t piece : {size_t{16384}, size_t{536}, size_t{100}, size_t{9000},
                             size_t{20000}, size_t{65536}}) {
    SCOPED_TRACE(::testing::Message() << "pieces of " << piece << " bytes");
    const Usage usage = QueuePieces(piece, kTotal);
    // Held: the bytes, plus at most one partly filled block and the chunks' bookkeeping.
    EXPECT_LE(usage.live, kTotal * 21 / 20 + (64 << 10)) << usage.live;
    // Allocated: each byte copied into a block once, not again as a chunk grows.
    EXPECT_LE(usage.allocated, kTotal * 21 / 20 + (64 << 10)) << usage.allocated;
  }
}

}  // namespace
}  // namespace islet
