#include "server/output_queue.h"

#include <algorithm>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "transport/buffer_views.h"
#include "transport/errors.h"

namespace islet {
namespace {

// Buffers gathered into one write.
constexpr size_t kMaxGather = 16;
// The least a chunk queued behind another is given: small pieces fill it.
constexpr size_t kBlockSize = 16 * 1024;
// One sendfile call's share of a file slice.
constexpr uint64_t kMaxSendfileChunk = 1 << 30;

}  // namespace

absl::StatusOr<size_t> OutputQueue::Write(Socket& socket,
                                          absl::Span<const absl::string_view> buffers,
                                          absl::Duration now) {
  if (buffers.size() == 1 && empty() && !buffers[0].empty()) {
    // The common reply: one buffer, nothing queued ahead of it, taken whole by the
    // kernel. Nothing to gather, count or copy.
    absl::StatusOr<size_t> wrote = socket.WriteSome(buffers);
    if (wrote.ok() && *wrote == buffers[0].size()) return 0;
    if (!wrote.ok() && !IsWouldBlock(wrote.status())) return wrote.status();
    const absl::string_view rest = buffers[0].substr(wrote.ok() ? *wrote : 0);
    return Queue(absl::MakeConstSpan(&rest, 1), now);
  }
  absl::InlinedVector<absl::string_view, kMaxGather> rest;
  for (absl::string_view b : buffers) {
    if (!b.empty()) rest.push_back(b);
  }
  absl::Span<absl::string_view> left = absl::MakeSpan(rest);
  if (empty()) {
    while (!left.empty()) {
      absl::StatusOr<size_t> wrote = socket.WriteSome(left);
      if (!wrote.ok()) {
        if (IsWouldBlock(wrote.status())) break;
        return wrote.status();
      }
      left = ConsumeBytes(left, *wrote);
    }
  }
  return Queue(left, now);
}

absl::StatusOr<size_t> OutputQueue::Queue(absl::Span<const absl::string_view> rest,
                                          absl::Duration now) {
  size_t left = 0;
  for (absl::string_view piece : rest) left += piece.size();
  if (left == 0) return 0;
  // Checked before copying, so the limit bounds the memory even against one huge write.
  if (bytes_ + left > limits_.limit) {
    // The peer's doing (it reads nothing), not the machine's: marked so.
    return MarkPeerCaused(absl::ResourceExhaustedError(absl::StrCat(
        "send: ", bytes_ + left, " bytes to queue for a peer that is not reading (limit ",
        limits_.limit, ")")));
  }
  for (absl::string_view piece : rest) {
    while (!piece.empty()) {
      if (!empty() && !chunks_->back().is_file()) {
        std::string& back = chunks_->back().data;
        if (const size_t spare = back.capacity() - back.size(); spare > 0) {
          const size_t n = std::min(spare, piece.size());
          back.append(piece.data(), n);  // within its capacity: never moved
          piece.remove_prefix(n);
          continue;
        }
      }
      Chunk chunk;
      // The first chunk holds just its piece (a reply the kernel could not take whole;
      // an idle connection keeps that small). Behind it the peer is slow, and pieces
      // fill blocks of at least kBlockSize, each allocated once and never grown: small
      // pieces cost one allocation per block, and a queue holds about what it counts.
      if (!empty()) chunk.data.reserve(std::max(kBlockSize, piece.size()));
      chunk.data.append(piece.data(), piece.size());
      piece = {};
      Push(std::move(chunk), now);
    }
  }
  bytes_ += left;
  Count(static_cast<int64_t>(left));
  return left;
}

void OutputQueue::QueueFile(UniqueFd file, uint64_t offset, uint64_t length,
                            absl::Duration now) {
  Chunk chunk;
  chunk.file = std::move(file);
  chunk.file_offset = offset;
  chunk.file_left = length;
  Push(std::move(chunk), now);
  ++files_;
}

void OutputQueue::Push(Chunk chunk, absl::Duration now) {
  if (chunks_ == nullptr) {
    chunks_ = std::make_unique<Chunks>();
    // The peer has send_timeout from now to take some of it.
    send_deadline_ = now + limits_.send_timeout;
  }
  chunks_->push_back(std::move(chunk));
}

void OutputQueue::PopFront() {
  if (chunks_->front().is_file()) --files_;
  chunks_->pop_front();
  if (chunks_->empty()) chunks_.reset();
}

absl::Status OutputQueue::Flush(Socket& socket, absl::Duration now) {
  size_t budget = limits_.flush_budget;
  while (!empty() && budget > 0) {
    absl::StatusOr<size_t> wrote = WriteFront(socket, budget);
    if (!wrote.ok()) {
      if (IsWouldBlock(wrote.status())) break;
      return wrote.status();
    }
    budget -= std::min(budget, *wrote);
    send_deadline_ = now + limits_.send_timeout;  // progress
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> OutputQueue::WriteFront(Socket& socket, size_t most) {
  Chunk& front = chunks_->front();
  if (front.is_file()) {
    absl::StatusOr<size_t> wrote = socket.SendfileSome(
        front.file.get(), front.file_offset,
        static_cast<size_t>(std::min({front.file_left, kMaxSendfileChunk, uint64_t{most}})));
    if (wrote.ok()) {
      front.file_offset += *wrote;
      front.file_left -= *wrote;
      if (front.file_left == 0) PopFront();
    }
    return wrote;
  }
  absl::InlinedVector<absl::string_view, kMaxGather> views;
  for (const Chunk& c : *chunks_) {
    if (c.is_file() || views.size() == kMaxGather || most == 0) break;
    views.push_back(absl::string_view(c.data).substr(c.sent, most));
    most -= views.back().size();
  }
  absl::StatusOr<size_t> wrote = socket.WriteSome(views);
  if (!wrote.ok()) return wrote;
  size_t n = *wrote;
  bytes_ -= n;
  Count(-static_cast<int64_t>(n));
  while (n > 0) {
    Chunk& c = chunks_->front();
    const size_t left = c.data.size() - c.sent;
    if (n < left) {
      c.sent += n;
      break;
    }
    n -= left;
    PopFront();
  }
  return wrote;
}

void OutputQueue::Clear() {
  chunks_.reset();
  Count(-static_cast<int64_t>(bytes_));
  bytes_ = 0;
  files_ = 0;
}

}  // namespace islet
