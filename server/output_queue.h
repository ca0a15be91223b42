// OutputQueue: what a connection has for its peer that the kernel has not taken yet,
// and the rules around it: a bound on the memory it holds, high and low water marks
// for backpressure, and a send deadline that moves only with progress.
//
// It knows nothing of event loops or handlers: the caller passes the socket and the
// time, and reacts to what the calls return (watch for writability while !empty(),
// stop reading while AboveHighWater(), resume once DrainedToLowWater()). So it is
// tested alone, over a scripted socket.
//
//   const OutputQueue::Limits limits{.high_water = 1 << 20, .limit = 16 << 20};
//   OutputQueue out(limits);
//   absl::StatusOr<size_t> queued = out.Write(socket, {reply}, now);  // 0: all sent
//   ... on writability: out.Flush(socket, now);
#ifndef ISLET_SERVER_OUTPUT_QUEUE_H_
#define ISLET_SERVER_OUTPUT_QUEUE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "transport/transport.h"
#include "transport/unique_fd.h"

namespace islet {

class OutputQueue {
 public:
  struct Limits {
    size_t high_water = 1 << 20;   // above it, the connection should stop reading
    size_t limit = 16 << 20;       // a write that would queue more is refused whole
    absl::Duration send_timeout = absl::Seconds(30);  // longest wait for progress
    // The most one Flush writes: a peer that drains as fast as we write must not hold
    // the worker's loop (every other connection waits meanwhile). What is left goes out
    // on the loop's next turn.
    size_t flush_budget = 256 << 10;
    // Where the bytes held are also counted, over many queues (the server's output
    // budget); none when null.
    std::atomic<int64_t>* shared_bytes = nullptr;
  };

  // `limits` must outlive the queue: one Limits serves every connection of a server,
  // so an idle connection does not carry a copy.
  explicit OutputQueue(const Limits& limits) : limits_(limits) {}
  explicit OutputQueue(Limits&&) = delete;  // a temporary would not outlive the queue
  OutputQueue(const OutputQueue&) = delete;
  OutputQueue& operator=(const OutputQueue&) = delete;

  bool empty() const { return chunks_ == nullptr; }
  // Bytes held in memory; file slices are not counted (they hold a descriptor).
  size_t bytes() const { return bytes_; }
  // File slices waiting.
  size_t files() const { return files_; }
  // When some queued output must have gone out by; infinite while empty.
  absl::Duration send_deadline() const {
    return empty() ? absl::InfiniteDuration() : send_deadline_;
  }
  bool AboveHighWater() const { return bytes_ > limits_.high_water; }
  // No file waiting and at most a quarter of the high water mark held: reading that
  // paused for backpressure may resume.
  bool DrainedToLowWater() const { return files_ == 0 && bytes_ <= limits_.high_water / 4; }

  // Writes `buffers` straight to `socket` when nothing is queued ahead of them (nothing
  // is copied unless the kernel refuses), and queues what it did not take. Returns the
  // bytes left queued: 0 when the kernel took everything. Errors: the socket's (not
  // would-block), or ResourceExhausted when the rest would take the queue over its
  // limit; then nothing of the rest is queued, whatever its size.
  absl::StatusOr<size_t> Write(Socket& socket, absl::Span<const absl::string_view> buffers,
                               absl::Duration now);
  // Queues `length` bytes of `file` from `offset`, after what is queued.
  void QueueFile(UniqueFd file, uint64_t offset, uint64_t length, absl::Duration now);
  // Writes queued output until the queue is empty, the socket would block, or
  // flush_budget bytes have gone; each bit of progress moves the send deadline. Errors
  // are the socket's.
  absl::Status Flush(Socket& socket, absl::Duration now);
  // Drops everything queued.
  void Clear();

 private:
  // A piece of output: bytes, or a slice of a file.
  struct Chunk {
    std::string data;
    size_t sent = 0;
    UniqueFd file;
    uint64_t file_offset = 0;
    uint64_t file_left = 0;
    bool is_file() const { return file.valid(); }
  };
  using Chunks = std::deque<Chunk>;

  absl::StatusOr<size_t> Queue(absl::Span<const absl::string_view> rest, absl::Duration now);
  void Push(Chunk chunk, absl::Duration now);
  void PopFront();
  // Writes at most `most` bytes from the front chunk (a file slice) or from the run of
  // byte chunks there.
  absl::StatusOr<size_t> WriteFront(Socket& socket, size_t most);
  void Count(int64_t delta) {
    if (limits_.shared_bytes != nullptr) {
      limits_.shared_bytes->fetch_add(delta, std::memory_order_relaxed);
    }
  }

  const Limits& limits_;
  // std::deque allocates its map and a first node on construction (576 bytes here),
  // which would be most of an idle connection's memory: this holds nothing until
  // output is queued, and gives the memory back once drained.
  std::unique_ptr<Chunks> chunks_;
  size_t bytes_ = 0;
  size_t files_ = 0;
  absl::Duration send_deadline_ = absl::InfiniteDuration();
};

}  // namespace islet

#endif  // ISLET_SERVER_OUTPUT_QUEUE_H_
