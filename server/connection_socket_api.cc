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
  if (!AllSent()) {
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
  PauseForBackpressure();
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
  if (way == ShutdownWay::kReadWrite && !AllSent()) {
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

void ConnectionImpl::SetDeadline(absl::Duration from_now, TimeoutScaling scaling) {
  AssertInLoopThread();
  if (from_now == absl::InfiniteDuration()) {
    ClearDeadline();
    return;
  }
  handler_deadline_set_ = MonotonicNow();
  handler_deadline_length_ = from_now;
  handler_deadline_scaling_ = scaling;
  ArmTimer();
}

void ConnectionImpl::ClearDeadline() {
  AssertInLoopThread();
  handler_deadline_set_ = absl::InfiniteDuration();
}

// ---- Flow control ----

void ConnectionImpl::PauseReading() {
  AssertInLoopThread();
  if (handler_paused_) return;
  handler_paused_ = true;
  waiting_since_ = absl::InfiniteDuration();  // not the peer's idleness: ours
  UpdateInterest();
}

void ConnectionImpl::ResumeReading() {
  AssertInLoopThread();
  if (!handler_paused_) return;
  handler_paused_ = false;
  if (phase_ != Phase::kOpen || ended_ || !ReadingAllowed()) return;
  // A new wait for data starts now, whichever callback (if any) resumed it.
  waiting_since_ = MonotonicNow();
  UpdateInterest();
  ArmTimer();
  PostReadIfBuffered();
}

void ConnectionImpl::NotifyWhenDrained(size_t low_water) {
  AssertInLoopThread();
  drain_mark_ = low_water;
  CheckDrained();
}

void ConnectionImpl::CheckDrained() {
  if (drain_mark_ == kNoDrainMark || out_.bytes() > drain_mark_) return;
  drain_mark_ = kNoDrainMark;
  // Never from inside the flush or the callback that got here: on its own turn.
  host_.RunLater(id_, [](ConnectionImpl& c) { c.RunDrained(); });
}

// ---- Beyond this connection ----

absl::StatusOr<ConnectionHandle> ConnectionImpl::Open(OutboundOptions options) {
  AssertInLoopThread();
  if (phase_ == Phase::kClosed || ended_) return ClosedError("open");
  return host_.Open(std::move(options), span_id_);
}

Connection* ConnectionImpl::Sibling(const ConnectionHandle& handle) {
  AssertInLoopThread();
  // Ids are unique across the server: a connection of another worker is not found.
  return host_.Sibling(handle.id());
}

// ---- Timers ----

absl::StatusOr<Connection::TimerId> ConnectionImpl::SendAfter(absl::Duration delay,
                                                              std::any message) {
  AssertInLoopThread();
  if (phase_ == Phase::kClosed || ended_) return ClosedError("send_after");
  if (delay == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError("send_after: the delay must be finite");
  }
  handle();  // makes the inbox the timer's place is counted in
  absl::StatusOr<PostedMessage> reserved = inbox_->Reserve("send_after", id_, std::move(message));
  if (!reserved.ok()) return reserved.status();
  if (timers_ == nullptr) timers_ = std::make_unique<HandlerTimers>();
  const TimerId id = timers_->next_id++;
  // The connection cancels its timers when it closes, so `this` is alive when one fires.
  const EventLoop::TimerId loop_timer =
      loop_.Schedule(MonotonicNow() + std::max(delay, absl::ZeroDuration()),
                     [this, id] { FireTimer(id); });
  timers_->pending.emplace(id, HandlerTimers::Pending{loop_timer, *std::move(reserved)});
  return id;
}

bool ConnectionImpl::CancelTimer(TimerId id) {
  AssertInLoopThread();
  if (timers_ == nullptr) return false;
  auto it = timers_->pending.find(id);
  if (it == timers_->pending.end()) return false;
  loop_.Cancel(it->second.loop_timer);
  timers_->pending.erase(it);
  return true;
}

void ConnectionImpl::FireTimer(TimerId id) {
  auto it = timers_->pending.find(id);
  if (it == timers_->pending.end()) return;
  PostedMessage message = std::move(it->second.message);
  timers_->pending.erase(it);
  Deliver(std::move(message));
}

void ConnectionImpl::CancelAllTimers() {
  if (timers_ == nullptr) return;
  for (auto& [id, pending] : timers_->pending) loop_.Cancel(pending.loop_timer);
  timers_.reset();
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

absl::StatusOr<ProxyHeader> ConnectionImpl::GetProxyHeader() const {
  const ProxyHeader* header = socket_ != nullptr ? socket_->proxy_header() : nullptr;
  if (header == nullptr) return absl::NotFoundError("proxy_header: the connection had none");
  return *header;
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
