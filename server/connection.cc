#include "server/connection.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "server/worker.h"
#include "transport/errors.h"
#include "transport/io_wait.h"

namespace islet {
namespace {

// Buffers gathered into one write.
constexpr size_t kMaxGather = 16;

}  // namespace

// ---- ConnectionHandle ----

absl::Status ConnectionHandle::Post(std::any message) const {
  if (!mailbox_) return absl::FailedPreconditionError("post: empty connection handle");
  absl::MutexLock lock(&mailbox_->mu);
  Worker* worker = mailbox_->worker;
  if (worker == nullptr) return absl::FailedPreconditionError("post: the server has stopped");
  worker->loop().Post([worker, id = id_, message = std::move(message)]() mutable {
    worker->DeliverMessage(id, std::move(message));
  });
  return absl::OkStatus();
}

absl::Status ConnectionHandle::Close() const {
  if (!mailbox_) return absl::FailedPreconditionError("close: empty connection handle");
  absl::MutexLock lock(&mailbox_->mu);
  Worker* worker = mailbox_->worker;
  if (worker == nullptr) return absl::FailedPreconditionError("close: the server has stopped");
  worker->loop().Post([worker, id = id_] { worker->CloseConnection(id); });
  return absl::OkStatus();
}

// ---- Connection: set-up and the worker's entry points ----

Connection::Connection(Worker& worker, uint64_t id, std::unique_ptr<Socket> socket,
                       std::shared_ptr<AcceptorSlot> acceptor, std::unique_ptr<Handler> handler)
    : worker_(worker),
      loop_(worker.loop()),
      id_(id),
      span_id_(Telemetry::NewSpanId()),
      socket_(std::move(socket)),
      acceptor_(std::move(acceptor)),
      handler_(std::move(handler)),
      started_(worker.loop().now()),
      fd_(socket_->fd()),
      read_timeout_(worker.context().options.read_timeout) {
  // Now, while the peer is surely still there: asked later (only when telemetry first
  // wants it), a peer that has reset the connection no longer has an address to give.
  absl::StatusOr<SocketInfo> peer = socket_->PeerInfo();
  if (peer.ok()) remote_ = *std::move(peer);
}

Connection::~Connection() {
  if (timer_id_ != 0) loop_.Cancel(timer_id_);
}

uint64_t Connection::parent_span_id() const { return acceptor_ ? acceptor_->span_id : 0; }

ConnectionHandle Connection::handle() const { return ConnectionHandle(worker_.mailbox(), id_); }

ConnectionSummary Connection::Summary() const {
  return {id_, remote_, acceptor_ ? acceptor_->index : -1, worker_.index(),
          loop_.now() - started_, handle()};
}

void Connection::Emit(TelemetryEventType type, uint64_t bytes, const absl::Status* error,
                      absl::string_view detail) {
  if (!Telemetry::Enabled(type)) return;
  TelemetryEvent e{type};
  // The span starts when the connection was made, so that the stop's duration is
  // exactly its monotonic_time minus the start's.
  e.monotonic_time = type == TelemetryEventType::kConnectionStart ? started_ : MonotonicNow();
  e.bytes = bytes;
  e.server = worker_.context().options.name;
  e.span_id = span_id_;
  e.parent_span_id = parent_span_id();
  e.acceptor = acceptor_ ? acceptor_->index : -1;
  e.connection_id = id_;
  e.remote = &remote_;
  e.error = error;
  e.detail = detail;
  Telemetry::Emit(e);
}

void Connection::Start() {
  Emit(TelemetryEventType::kConnectionStart);
  phase_deadline_ = loop_.now() + worker_.context().options.handshake_timeout;
  ContinueHandshake();
}

void Connection::ContinueHandshake() {
  absl::StatusOr<IoInterest> step = socket_->HandshakeStep();
  if (!step.ok()) {
    Finish(Ending::kError, step.status(), /*from_handler=*/false, /*drain=*/false);
    return;
  }
  if (*step != IoInterest::kNone) {
    handshake_wants_ = *step;
    UpdateInterest();
    ArmTimer();
    return;
  }
  phase_ = Phase::kOpen;
  phase_deadline_ = absl::InfiniteDuration();
  const bool upgraded = std::exchange(upgrading_, false);
  Emit(TelemetryEventType::kConnectionReady);
  if (upgraded) {
    // A transport switch carries on where the handler left off: waiting for data.
    WaitForData(read_timeout_);
  } else {
    RunCallback([this] { return handler_->HandleConnection(*this); });
  }
  if (!early_messages_.empty()) DeliverEarlyMessages();
}

void Connection::Deliver(std::any& message) {
  if (ended_ || phase_ == Phase::kClosed || phase_ == Phase::kDraining) return;
  if (phase_ == Phase::kHandshaking) {
    // As a process's mailbox would: kept until the connection is ready, then delivered
    // in order after HandleConnection.
    early_messages_.push_back(std::move(message));
    return;
  }
  RunCallback([&] { return handler_->HandleMessage(message, *this); }, /*local_message=*/true);
}

void Connection::DeliverEarlyMessages() {
  std::vector<std::any> messages = std::move(early_messages_);
  early_messages_.clear();
  for (std::any& m : messages) Deliver(m);
}

void Connection::RequestClose() {
  if (phase_ == Phase::kClosed || ended_) return;
  Finish(Ending::kLocalClose);
}

void Connection::BeginShutdown(absl::Duration deadline) {
  if (phase_ == Phase::kClosed) return;
  if (ended_) {
    // Already on its way out: it must still be gone by the server's deadline.
    phase_deadline_ = std::min(phase_deadline_, deadline);
    ArmTimer();
    return;
  }
  phase_deadline_ = deadline;
  Finish(Ending::kShutdown);
}

// ---- The state machine ----

void Connection::OnReady(uint32_t events) {
  if (phase_ == Phase::kClosed) return;
  if (phase_ == Phase::kHandshaking) {
    ContinueHandshake();
    return;
  }
  if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) != 0 && !out_.empty()) {
    absl::Status flushed = Flush();
    if (!flushed.ok()) {
      Emit(TelemetryEventType::kConnectionSendError, 0, &flushed);
      if (ended_) {
        CloseNow();
      } else {
        Finish(Ending::kError, flushed, /*from_handler=*/false, /*drain=*/false);
      }
      return;
    }
    if (phase_ == Phase::kClosed) return;
  }
  if (phase_ == Phase::kDraining) {
    if (out_.empty()) CloseNow();
    return;
  }
  if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0 && !reading_paused_) ReadAndDispatch();
}

void Connection::ReadAndDispatch() {
  if (phase_ != Phase::kOpen || ended_ || reading_paused_) return;
  absl::Span<char> buffer = worker_.read_buffer();
  absl::StatusOr<size_t> got = socket_->ReadSome(buffer);
  if (!got.ok()) {
    if (IsWouldBlock(got.status())) return;
    if (IsPeerClosed(got.status())) {
      Finish(Ending::kPeerClose);
      return;
    }
    Emit(TelemetryEventType::kConnectionRecvError, 0, &got.status());
    Finish(Ending::kError, got.status(), /*from_handler=*/false, /*drain=*/false);
    return;
  }
  Emit(TelemetryEventType::kConnectionAsyncRecv, *got);
  read_deadline_ = absl::InfiniteDuration();  // not waiting while the handler works
  const absl::string_view data(buffer.data(), *got);
  RunCallback([&] { return handler_->HandleData(data, *this); });
}

template <typename Callback>
void Connection::RunCallback(Callback&& callback, bool local_message) {
  in_callback_ = true;
  HandlerResult result = callback();
  // ContinueThen loops here rather than recursing: a handler may chain many steps.
  while (result.kind() == HandlerResult::Kind::kContinueThen && pending_error_.ok() &&
         !close_requested_) {
    result = handler_->HandleContinue(*this);
  }
  in_callback_ = false;
  Apply(std::move(result), local_message);
}

void Connection::Apply(HandlerResult result, bool local_message) {
  if (phase_ != Phase::kOpen || ended_) return;
  if (!pending_error_.ok()) {
    Finish(Ending::kError, std::exchange(pending_error_, absl::OkStatus()),
           /*from_handler=*/false, /*drain=*/false);
    return;
  }
  if (close_requested_) {
    Finish(Ending::kLocalClose);
    return;
  }
  switch (result.kind()) {
    case HandlerResult::Kind::kContinue:
    case HandlerResult::Kind::kContinueThen:
      if (result.persistent()) read_timeout_ = result.timeout();
      if (local_message && !result.has_timeout()) {
        // A posted message is not client activity: a plain Continue keeps waiting
        // under the deadline already running (only client data, or an explicit
        // timeout, moves it), so messages cannot keep an idle client alive.
        UpdateInterest();
        ArmTimer();
        PostReadIfBuffered();
        return;
      }
      WaitForData(result.has_timeout() ? result.timeout() : read_timeout_);
      return;
    case HandlerResult::Kind::kClose:
      Finish(Ending::kLocalClose);
      return;
    case HandlerResult::Kind::kError:
      Finish(Ending::kError, result.error(), /*from_handler=*/true);
      return;
    case HandlerResult::Kind::kSwitchTransport:
      break;
  }
  Transport* transport = result.transport();
  if (transport == nullptr) {
    Finish(Ending::kError, absl::InvalidArgumentError("switch_transport: no transport given"),
           /*from_handler=*/true);
    return;
  }
  // What the handler queued before the switch ("ready to start TLS") goes out in the
  // clear, first.
  absl::Status flushed =
      FlushBlocking(loop_.now() + worker_.context().options.send_timeout);
  if (!flushed.ok()) {
    Finish(Ending::kError, flushed, /*from_handler=*/false, /*drain=*/false);
    return;
  }
  absl::StatusOr<std::unique_ptr<Socket>> upgraded = transport->Upgrade(std::move(socket_));
  if (!upgraded.ok()) {
    // The old socket went down with the failed upgrade.
    if (watching_) loop_.Unwatch(fd_);
    watching_ = false;
    Finish(Ending::kError, upgraded.status(), /*from_handler=*/false, /*drain=*/false);
    return;
  }
  socket_ = *std::move(upgraded);
  if (socket_->fd() != fd_) {
    if (watching_) loop_.Unwatch(fd_);
    watching_ = false;
    fd_ = socket_->fd();
  }
  upgrading_ = true;
  phase_ = Phase::kHandshaking;
  handshake_wants_ = IoInterest::kRead;
  read_deadline_ = absl::InfiniteDuration();
  phase_deadline_ = loop_.now() + worker_.context().options.handshake_timeout;
  ContinueHandshake();
}

void Connection::WaitForData(absl::Duration timeout) {
  wait_timeout_ = timeout;
  // The wait starts now, when the callback returns: not at loop_.now(), the start of
  // this loop turn, which would count the callback's own run time (a slow callback,
  // or a blocking Recv) against the client.
  read_deadline_ = reading_paused_ || timeout == absl::InfiniteDuration()
                       ? absl::InfiniteDuration()
                       : MonotonicNow() + timeout;
  UpdateInterest();
  ArmTimer();
  PostReadIfBuffered();
}

void Connection::PostReadIfBuffered() {
  // Bytes a transport already holds (TLS plaintext, or kept by a timed-out Recv) never
  // make the descriptor readable: read them on the next loop turn.
  if (phase_ != Phase::kOpen || reading_paused_ || !socket_->HasBufferedInput()) return;
  loop_.Post([worker = &worker_, id = id_] { worker->ReadBuffered(id); });
}

void Connection::Finish(Ending ending, absl::Status error, bool from_handler, bool drain) {
  if (ended_) return;
  ended_ = true;
  read_deadline_ = absl::InfiniteDuration();
  in_callback_ = true;
  switch (ending) {
    case Ending::kLocalClose:
    case Ending::kPeerClose:
      handler_->HandleClose(*this);
      break;
    case Ending::kTimeout:
      handler_->HandleTimeout(*this);
      break;
    case Ending::kShutdown:
      handler_->HandleShutdown(*this);
      break;
    case Ending::kError:
      handler_->HandleError(error, *this);
      break;
  }
  in_callback_ = false;
  if (ending == Ending::kError &&
      !(from_handler && worker_.context().options.silent_terminate_on_error)) {
    stop_error_ = error;
  } else if (ending == Ending::kTimeout) {
    stop_error_ = absl::DeadlineExceededError("recv: no data within the read timeout");
  }
  if (!drain || !pending_error_.ok() || socket_ == nullptr || phase_ == Phase::kHandshaking) {
    CloseNow();
    return;
  }
  if (!out_.empty() && !Flush().ok()) {
    CloseNow();
    return;
  }
  if (phase_ == Phase::kClosed) return;
  if (out_.empty()) {
    CloseNow();
    return;
  }
  // Let queued output reach the peer first, within the send timeout (or the server's
  // shutdown deadline, already in phase_deadline_).
  phase_ = Phase::kDraining;
  phase_deadline_ =
      std::min(phase_deadline_, loop_.now() + worker_.context().options.send_timeout);
  UpdateInterest();
  ArmTimer();
}

void Connection::CloseNow() {
  if (phase_ == Phase::kClosed) return;
  phase_ = Phase::kClosed;
  ended_ = true;
  if (timer_id_ != 0) {
    loop_.Cancel(timer_id_);
    timer_id_ = 0;
    timer_at_ = absl::InfiniteDuration();
  }
  const bool report = Telemetry::Enabled(TelemetryEventType::kConnectionStop);
  SocketStats stats;
  if (socket_ != nullptr) {
    if (report) {
      absl::StatusOr<SocketStats> s = socket_->GetStat();
      if (s.ok()) stats = *s;
    }
    if (watching_) loop_.Unwatch(fd_);
    socket_->Close();
  }
  watching_ = false;
  out_.clear();
  queued_bytes_ = 0;
  queued_files_ = 0;
  if (report) {
    TelemetryEvent e{TelemetryEventType::kConnectionStop};
    e.monotonic_time = MonotonicNow();
    e.duration = e.monotonic_time - started_;
    e.stats = &stats;
    e.server = worker_.context().options.name;
    e.span_id = span_id_;
    e.parent_span_id = parent_span_id();
    e.acceptor = acceptor_ ? acceptor_->index : -1;
    e.connection_id = id_;
    e.remote = &remote_;
    e.error = stop_error_.ok() ? nullptr : &stop_error_;
    Telemetry::Emit(e);
  }
  if (acceptor_) acceptor_->live.fetch_sub(1, std::memory_order_acq_rel);
  worker_.Retire(this);
}

// ---- Output ----

absl::Status Connection::QueueOrWrite(absl::Span<const absl::string_view> buffers) {
  if (socket_ == nullptr || phase_ == Phase::kClosed) return ClosedError("send");
  if (!pending_error_.ok()) return pending_error_;
  if (buffers.size() == 1 && out_.empty() && !buffers[0].empty()) {
    // The common reply: one buffer, nothing queued ahead of it, taken whole by the
    // kernel. Nothing to gather, count or copy.
    absl::StatusOr<size_t> wrote = socket_->WriteSome(buffers);
    if (wrote.ok() && *wrote == buffers[0].size()) {
      Emit(TelemetryEventType::kConnectionSend, *wrote);
      return absl::OkStatus();
    }
    if (!wrote.ok() && !IsWouldBlock(wrote.status())) return FailSend(wrote.status());
    const absl::string_view rest = buffers[0].substr(wrote.ok() ? *wrote : 0);
    return Queue(absl::MakeConstSpan(&rest, 1), buffers[0].size());
  }
  absl::InlinedVector<absl::string_view, kMaxGather> rest;
  size_t total = 0;
  for (absl::string_view b : buffers) {
    if (b.empty()) continue;
    rest.push_back(b);
    total += b.size();
  }
  if (total == 0) return absl::OkStatus();
  size_t first = 0;
  if (out_.empty()) {
    // Straight to the kernel, nothing copied unless it refuses.
    while (first < rest.size()) {
      absl::StatusOr<size_t> wrote = socket_->WriteSome(absl::MakeConstSpan(rest).subspan(first));
      if (!wrote.ok()) {
        if (IsWouldBlock(wrote.status())) break;
        return FailSend(wrote.status());
      }
      size_t n = *wrote;
      while (n > 0) {
        const size_t take = std::min(n, rest[first].size());
        rest[first].remove_prefix(take);
        n -= take;
        if (rest[first].empty()) ++first;
      }
    }
  }
  return Queue(absl::MakeConstSpan(rest).subspan(first), total);
}

absl::Status Connection::FailSend(absl::Status error) {
  Emit(TelemetryEventType::kConnectionSendError, 0, &error);
  SetPendingError(error);
  return error;
}

absl::Status Connection::Queue(absl::Span<const absl::string_view> rest, size_t total) {
  // What the kernel did not take is refused whole unless it fits under the limit:
  // checked before copying, so the limit bounds the memory even against one huge Send.
  const ServerOptions& options = worker_.context().options;
  size_t left = 0;
  for (absl::string_view piece : rest) left += piece.size();
  if (left > 0 && queued_bytes_ + left > options.send_queue_limit) {
    return FailSend(absl::ResourceExhaustedError(absl::StrCat(
        "send: ", queued_bytes_ + left, " bytes to queue for a peer that is not reading (limit ",
        options.send_queue_limit, ")")));
  }
  for (absl::string_view piece : rest) {
    if (piece.empty()) continue;
    // Small pieces join the last queued chunk: one allocation, not one per piece.
    if (!out_.empty() && !out_.back().is_file() && out_.back().data.size() < 64 * 1024) {
      out_.back().data.append(piece.data(), piece.size());
    } else {
      OutChunk chunk;
      chunk.data.assign(piece.data(), piece.size());
      out_.push_back(std::move(chunk));
    }
  }
  Emit(TelemetryEventType::kConnectionSend, total);
  if (left == 0) return absl::OkStatus();
  queued_bytes_ += left;
  if (send_deadline_ == absl::InfiniteDuration()) {
    send_deadline_ = loop_.now() + options.send_timeout;
  }
  if (!reading_paused_ && queued_bytes_ > options.send_queue_high_water) {
    reading_paused_ = true;
    read_deadline_ = absl::InfiniteDuration();
  }
  UpdateInterest();
  ArmTimer();
  return absl::OkStatus();
}

absl::Status Connection::Flush() {
  const absl::Duration send_timeout = worker_.context().options.send_timeout;
  while (!out_.empty()) {
    OutChunk& front = out_.front();
    absl::StatusOr<size_t> wrote;
    if (front.is_file()) {
      wrote = socket_->SendfileSome(front.file.get(), front.file_offset,
                                    static_cast<size_t>(std::min<uint64_t>(front.file_left, 1 << 30)));
      if (wrote.ok()) {
        front.file_offset += *wrote;
        front.file_left -= *wrote;
        if (front.file_left == 0) {
          out_.pop_front();
          --queued_files_;
        }
      }
    } else {
      absl::InlinedVector<absl::string_view, kMaxGather> views;
      for (const OutChunk& c : out_) {
        if (c.is_file() || views.size() == kMaxGather) break;
        views.push_back(absl::string_view(c.data).substr(c.sent));
      }
      wrote = socket_->WriteSome(views);
      if (wrote.ok()) {
        size_t n = *wrote;
        queued_bytes_ -= n;
        while (n > 0) {
          OutChunk& c = out_.front();
          const size_t left = c.data.size() - c.sent;
          if (n >= left) {
            n -= left;
            out_.pop_front();
          } else {
            c.sent += n;
            n = 0;
          }
        }
      }
    }
    if (!wrote.ok()) {
      if (IsWouldBlock(wrote.status())) break;
      return wrote.status();
    }
    send_deadline_ = loop_.now() + send_timeout;  // progress
  }
  if (out_.empty()) {
    OnOutputDrained();
  } else {
    ResumeReadingIfDrained();
    UpdateInterest();
    ArmTimer();
  }
  return absl::OkStatus();
}

absl::Status Connection::FlushBlocking(absl::Duration deadline) {
  for (;;) {
    absl::Status flushed = Flush();
    if (!flushed.ok()) return flushed;
    if (out_.empty() || phase_ == Phase::kClosed) return absl::OkStatus();
    absl::Status ready = WaitForIo(fd_, IoInterest::kWrite, deadline, "send");
    if (!ready.ok()) return ready;
  }
}

void Connection::OnOutputDrained() {
  send_deadline_ = absl::InfiniteDuration();
  if (shutdown_write_pending_ && socket_ != nullptr) {
    shutdown_write_pending_ = false;
    absl::Status s = socket_->Shutdown(pending_shutdown_way_);
    Emit(TelemetryEventType::kConnectionSocketShutdown, 0, s.ok() ? nullptr : &s,
         pending_shutdown_way_ == ShutdownWay::kWrite ? "write" : "read_write");
  }
  if (phase_ == Phase::kDraining) {
    CloseNow();
    return;
  }
  ResumeReadingIfDrained();
  UpdateInterest();
  ArmTimer();
}

void Connection::ResumeReadingIfDrained() {
  if (!reading_paused_ || queued_files_ > 0 ||
      queued_bytes_ > worker_.context().options.send_queue_high_water / 4) {
    return;
  }
  reading_paused_ = false;
  if (phase_ == Phase::kOpen && !ended_) {
    read_deadline_ = wait_timeout_ == absl::InfiniteDuration()
                         ? absl::InfiniteDuration()
                         : loop_.now() + wait_timeout_;
    PostReadIfBuffered();
  }
}

void Connection::SetPendingError(absl::Status error) {
  if (pending_error_.ok()) pending_error_ = std::move(error);
}

// ---- Readiness and timers ----

void Connection::UpdateInterest() {
  if (socket_ == nullptr || phase_ == Phase::kClosed) return;
  uint32_t want = 0;
  switch (phase_) {
    case Phase::kHandshaking:
      want = handshake_wants_ == IoInterest::kWrite ? EPOLLOUT : EPOLLIN;
      break;
    case Phase::kOpen:
      if (!reading_paused_ && !ended_) want |= EPOLLIN;
      if (!out_.empty()) want |= EPOLLOUT;
      break;
    case Phase::kDraining:
      if (!out_.empty()) want |= EPOLLOUT;
      break;
    case Phase::kClosed:
      return;
  }
  if (!watching_) {
    absl::Status s = loop_.Watch(fd_, want, this);
    if (!s.ok()) {
      SetPendingError(s);
      return;
    }
    watching_ = true;
    registered_events_ = want;
  } else if (want != registered_events_) {
    loop_.Modify(fd_, want, this).IgnoreError();
    registered_events_ = want;
  }
}

void Connection::ArmTimer() {
  if (phase_ == Phase::kClosed) return;
  const absl::Duration want = std::min({read_deadline_, send_deadline_, phase_deadline_});
  if (want == absl::InfiniteDuration()) return;  // a timer still armed re-checks then
  if (timer_id_ != 0 && timer_at_ <= want) return;  // fires sooner and re-arms
  if (timer_id_ != 0) loop_.Cancel(timer_id_);
  timer_at_ = want;
  timer_id_ = loop_.Schedule(want, [this] {
    timer_id_ = 0;
    timer_at_ = absl::InfiniteDuration();
    OnTimer();
  });
}

void Connection::OnTimer() {
  const absl::Duration now = loop_.now();
  const ServerOptions& options = worker_.context().options;
  switch (phase_) {
    case Phase::kHandshaking:
      if (now >= phase_deadline_) {
        Finish(Ending::kError,
               absl::DeadlineExceededError(absl::StrCat(
                   "handshake: not done within ", absl::FormatDuration(options.handshake_timeout))),
               /*from_handler=*/false, /*drain=*/false);
        return;
      }
      break;
    case Phase::kOpen:
      if (now >= send_deadline_) {
        absl::Status stalled = absl::DeadlineExceededError(absl::StrCat(
            "send: the peer took nothing for ", absl::FormatDuration(options.send_timeout)));
        Emit(TelemetryEventType::kConnectionSendError, 0, &stalled);
        Finish(Ending::kError, stalled, /*from_handler=*/false, /*drain=*/false);
        return;
      }
      if (now >= read_deadline_) {
        Finish(Ending::kTimeout);
        return;
      }
      break;
    case Phase::kDraining:
      if (now >= phase_deadline_ || now >= send_deadline_) {
        CloseNow();
        return;
      }
      break;
    case Phase::kClosed:
      return;
  }
  ArmTimer();
}

// ---- The Socket API ----

absl::StatusOr<std::string> Connection::Recv(size_t n, std::optional<absl::Duration> timeout) {
  if (socket_ == nullptr || phase_ == Phase::kClosed) return ClosedError("recv");
  if (!out_.empty()) {
    absl::Status flushed = FlushBlocking(MonotonicNow() + worker_.context().options.send_timeout);
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

absl::Status Connection::Send(absl::string_view data) {
  return QueueOrWrite(absl::MakeConstSpan(&data, 1));
}

absl::Status Connection::Send(absl::Span<const absl::string_view> buffers) {
  return QueueOrWrite(buffers);
}

absl::StatusOr<uint64_t> Connection::Sendfile(const std::string& path, uint64_t offset,
                                              uint64_t length) {
  if (socket_ == nullptr || phase_ == Phase::kClosed) return ClosedError("sendfile");
  if (!pending_error_.ok()) return pending_error_;
  auto fail = [&](absl::Status error) {
    Emit(TelemetryEventType::kConnectionSendfileError, 0, &error, path);
    return error;
  };
  UniqueFd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!file) return fail(PosixError(errno, absl::StrCat("sendfile: open ", path)));
  struct stat st;
  if (::fstat(file.get(), &st) != 0) return fail(PosixError(errno, "sendfile: fstat"));
  if (!S_ISREG(st.st_mode)) {
    return fail(absl::InvalidArgumentError(absl::StrCat("sendfile: ", path, " is not a regular file")));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (offset > size) {
    return fail(absl::InvalidArgumentError(
        absl::StrCat("sendfile: offset ", offset, " is past the end of ", path)));
  }
  const uint64_t total = length == 0 ? size - offset : std::min(length, size - offset);
  if (total == 0) return 0;
  OutChunk chunk;
  chunk.file = std::move(file);
  chunk.file_offset = offset;
  chunk.file_left = total;
  out_.push_back(std::move(chunk));
  ++queued_files_;
  if (send_deadline_ == absl::InfiniteDuration()) {
    send_deadline_ = loop_.now() + worker_.context().options.send_timeout;
  }
  // A queued file holds a descriptor: stop taking requests until it has gone out.
  reading_paused_ = true;
  read_deadline_ = absl::InfiniteDuration();
  absl::Status flushed = Flush();
  if (!flushed.ok()) {
    SetPendingError(flushed);
    return fail(flushed);
  }
  Emit(TelemetryEventType::kConnectionSendfile, total, nullptr, path);
  return total;
}

absl::Status Connection::Shutdown(ShutdownWay way) {
  if (socket_ == nullptr || phase_ == Phase::kClosed) return ClosedError("shutdown");
  if (way == ShutdownWay::kRead || out_.empty()) {
    absl::Status s = socket_->Shutdown(way);
    Emit(TelemetryEventType::kConnectionSocketShutdown, 0, s.ok() ? nullptr : &s,
         way == ShutdownWay::kRead    ? "read"
         : way == ShutdownWay::kWrite ? "write"
                                      : "read_write");
    return s;
  }
  if (way == ShutdownWay::kReadWrite) {
    absl::Status s = socket_->Shutdown(ShutdownWay::kRead);
    if (!s.ok()) return s;
  }
  shutdown_write_pending_ = true;
  pending_shutdown_way_ = way;
  return absl::OkStatus();
}

void Connection::Close() {
  close_requested_ = true;
  if (!in_callback_) RequestClose();
}

absl::Status Connection::SetOptions(absl::Span<const SocketOption> options) {
  if (socket_ == nullptr) return ClosedError("setopts");
  return socket_->SetOptions(options);
}

absl::StatusOr<std::vector<SocketOption>> Connection::GetOptions(
    absl::Span<const SocketOptionName> names) {
  if (socket_ == nullptr) return ClosedError("getopts");
  return socket_->GetOptions(names);
}

absl::StatusOr<SocketInfo> Connection::LocalInfo() const {
  if (socket_ == nullptr) return ClosedError("local_info");
  return socket_->LocalInfo();
}

absl::StatusOr<SocketInfo> Connection::PeerInfo() const {
  if (socket_ == nullptr) return ClosedError("peer_info");
  return socket_->PeerInfo();
}

std::optional<std::string> Connection::PeerCertificate() const {
  if (socket_ == nullptr) return std::nullopt;
  absl::StatusOr<SocketInfo> peer = socket_->PeerInfo();
  if (!peer.ok()) return std::nullopt;
  return peer->peer_certificate;
}

bool Connection::Secure() const { return socket_ != nullptr && socket_->Secure(); }

absl::StatusOr<SocketStats> Connection::GetStat() const {
  if (socket_ == nullptr) return ClosedError("getstat");
  return socket_->GetStat();
}

absl::StatusOr<std::string> Connection::NegotiatedProtocol() const {
  if (socket_ == nullptr) return ClosedError("negotiated_protocol");
  return socket_->NegotiatedProtocol();
}

absl::StatusOr<ConnectionInformation> Connection::GetConnectionInformation() const {
  if (socket_ == nullptr) return ClosedError("connection_information");
  return socket_->GetConnectionInformation();
}

}  // namespace islet
