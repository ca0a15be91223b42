// ConnectionImpl's Connection methods: the Socket API a handler calls from its
// callbacks (ThousandIsland.Socket). The state machine is in connection_impl.cc.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/connection_impl.h"
#include "transport/errors.h"
#include "transport/io_wait.h"
#include "transport/regular_file.h"

namespace islet {

absl::StatusOr<std::string> ConnectionImpl::Recv(size_t n, std::optional<absl::Duration> timeout) {
  AssertInLoopThread();
  if (socket_ == nullptr || phase_ == Phase::kClosed) return ClosedError("recv");
  if (!out_.empty()) {
    absl::Status flushed = FlushBlocking(MonotonicNow() + options_.send_timeout);
    if (!flushed.ok()) {
      SetPendingError(flushed);
      return flushed;
    }
  }
  absl::StatusOr<std::string> got = socket_->Recv(n, timeout.value_or(read_timeout_));
  if (got.ok()) {
    Emit(TelemetryEventType::kConnectionRecv, got->size());
  } else {
    Emit(TelemetryEventType::kConnectionRecvError, 0, &got.status());
  }
  return got;
}

absl::Status ConnectionImpl::Send(absl::string_view data) {
  return Send(absl::MakeConstSpan(&data, 1));
}

absl::Status ConnectionImpl::Send(absl::Span<const absl::string_view> buffers) {
  AssertInLoopThread();
  if (socket_ == nullptr || phase_ == Phase::kClosed) return ClosedError("send");
  if (!pending_error_.ok()) return pending_error_;
  size_t total = 0;
  for (absl::string_view b : buffers) total += b.size();
  if (total == 0) return absl::OkStatus();
  absl::StatusOr<size_t> queued = out_.Write(*socket_, buffers, loop_.now());
  if (!queued.ok()) return FailSend(queued.status());
  Emit(TelemetryEventType::kConnectionSend, total);
  if (*queued == 0) return absl::OkStatus();
  absl::Status budget = CheckOutputBudget();
  OnQueued();
  return budget;
}

absl::StatusOr<uint64_t> ConnectionImpl::Sendfile(const std::string& path, uint64_t offset,
                                                  uint64_t length) {
  AssertInLoopThread();
  if (socket_ == nullptr || phase_ == Phase::kClosed) return ClosedError("sendfile");
  if (!pending_error_.ok()) return pending_error_;
  auto fail = [&](absl::Status error) {
    Emit(TelemetryEventType::kConnectionSendfileError, 0, &error, path);
    return error;
  };
  absl::StatusOr<RegularFile> file = OpenRegularFile(path, "sendfile: open");
  if (!file.ok()) return fail(file.status());
  absl::StatusOr<uint64_t> length_to_send = SendfileLength(file->size, offset, length, path);
  if (!length_to_send.ok()) return fail(length_to_send.status());
  const uint64_t total = *length_to_send;
  if (total == 0) return 0;
  out_.QueueFile(std::move(file->fd), offset, total, loop_.now());
  // A queued file holds a descriptor: stop taking requests until it has gone out.
  PauseReading();
  absl::Status flushed = Flush();
  if (!flushed.ok()) {
    SetPendingError(flushed);
    return fail(flushed);
  }
  Emit(TelemetryEventType::kConnectionSendfile, total, nullptr, path);
  return total;
}

absl::Status ConnectionImpl::Shutdown(ShutdownWay way) {
  AssertInLoopThread();
  if (socket_ == nullptr || phase_ == Phase::kClosed) return ClosedError("shutdown");
  if (way == ShutdownWay::kRead) {
    absl::Status s = socket_->Shutdown(way);  // never waits
    Emit(TelemetryEventType::kConnectionSocketShutdown, 0, s.ok() ? nullptr : &s, "read");
    return s;
  }
  if (write_shutdown_ != WriteShutdown::kNone) return absl::OkStatus();  // under way
  if (way == ShutdownWay::kReadWrite && !out_.empty()) {
    absl::Status s = socket_->Shutdown(ShutdownWay::kRead);
    if (!s.ok()) return s;
  }
  write_shutdown_way_ = way;
  write_shutdown_ = WriteShutdown::kAfterOutput;
  if (!out_.empty()) return absl::OkStatus();  // once queued output has gone out
  // Nothing queued: now, but without waiting. A transport that must first send
  // something (a TLS close_notify) finishes when there is room.
  return StepShutdown();
}

void ConnectionImpl::Close() {
  AssertInLoopThread();
  close_requested_ = true;
  if (!in_callback_) Close(Ending::kLocalClose, CloseType::kFlushWrite);
}

void ConnectionImpl::SetDeadline(absl::Duration from_now) {
  AssertInLoopThread();
  handler_deadline_ = from_now == absl::InfiniteDuration() ? absl::InfiniteDuration()
                                                            : MonotonicNow() + from_now;
  ArmTimer();
}

void ConnectionImpl::ClearDeadline() {
  AssertInLoopThread();
  handler_deadline_ = absl::InfiniteDuration();
}

bool ConnectionImpl::stopping() const {
  AssertInLoopThread();
  // The worker's flag, set before any of its connections hears of the stop: a
  // connection costs nothing for it.
  return host_.shutting_down();
}

absl::Status ConnectionImpl::SetOptions(absl::Span<const SocketOption> options) {
  AssertInLoopThread();
  if (socket_ == nullptr) return ClosedError("setopts");
  return socket_->SetOptions(options);
}

absl::StatusOr<std::vector<SocketOption>> ConnectionImpl::GetOptions(
    absl::Span<const SocketOptionName> names) {
  AssertInLoopThread();
  if (socket_ == nullptr) return ClosedError("getopts");
  return socket_->GetOptions(names);
}

absl::StatusOr<SocketInfo> ConnectionImpl::LocalInfo() const {
  if (socket_ == nullptr) return ClosedError("local_info");
  return socket_->LocalInfo();
}

absl::StatusOr<SocketInfo> ConnectionImpl::PeerInfo() const {
  if (socket_ == nullptr) return ClosedError("peer_info");
  return socket_->PeerInfo();
}

std::optional<std::string> ConnectionImpl::PeerCertificate() const {
  if (socket_ == nullptr) return std::nullopt;
  absl::StatusOr<SocketInfo> peer = socket_->PeerInfo();
  if (!peer.ok()) return std::nullopt;
  return peer->peer_certificate;
}

bool ConnectionImpl::Secure() const { return socket_ != nullptr && socket_->Secure(); }

absl::StatusOr<SocketStats> ConnectionImpl::GetStat() const {
  if (socket_ == nullptr) return ClosedError("getstat");
  return socket_->GetStat();
}

absl::StatusOr<std::string> ConnectionImpl::NegotiatedProtocol() const {
  if (socket_ == nullptr) return ClosedError("negotiated_protocol");
  return socket_->NegotiatedProtocol();
}

absl::StatusOr<ConnectionInformation> ConnectionImpl::GetConnectionInformation() const {
  if (socket_ == nullptr) return ClosedError("connection_information");
  return socket_->GetConnectionInformation();
}

}  // namespace islet
