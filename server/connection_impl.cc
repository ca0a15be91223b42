#include "server/connection_impl.h"

#include <sys/epoll.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "transport/errors.h"
#include "transport/io_wait.h"

namespace islet {
namespace {

// Reads handed to HandleData when the server stops (64 KiB each): what had arrived.
constexpr int kShutdownReads = 16;
// Reads per readiness event while lingering, each into the 64 KiB read buffer.
constexpr int kLingerReads = 4;

// connection.stop's detail: how the connection ended (telemetry.h lists the names).
absl::string_view EndingName(Ending ending, bool handshaking) {
  switch (ending) {
    case Ending::kLocalClose:
    case Ending::kPeerClose:
      return "close";
    case Ending::kShutdown:
      return "shutdown";
    case Ending::kTimeout:
    case Ending::kError:
    case Ending::kHandlerError:
      if (handshaking) return "handshake";
      return ending == Ending::kTimeout ? "timeout" : "error";
  }
  return "error";
}

}  // namespace

// ---- Set-up and the worker's side ----

ConnectionImpl::ConnectionImpl(ConnectionHost& host, uint64_t id, std::unique_ptr<Socket> socket,
                               std::shared_ptr<AcceptorSlot> acceptor,
                               std::unique_ptr<Handler> handler)
    : host_(host),
      loop_(host.loop()),
      options_(host.options()),
      id_(id),
      span_id_(Telemetry::NewSpanId()),
      socket_(std::move(socket)),
      acceptor_(std::move(acceptor)),
      handler_(std::move(handler)),
      started_(loop_.now()),
      read_timeout_(options_.read_timeout),
      out_(host.output_limits()) {
  // Now, while the peer is surely still there: asked later (only when telemetry first
  // wants it), a peer that has reset the connection no longer has an address to give.
  absl::StatusOr<SocketInfo> peer = socket_->PeerInfo();
  if (peer.ok()) remote_ = *std::move(peer);
}

ConnectionImpl::~ConnectionImpl() {
  if (timer_id_ != 0) loop_.Cancel(timer_id_);
  CancelAllTimers();
}

uint64_t ConnectionImpl::parent_span_id() const {
  if (outbound_ != nullptr) return outbound_->parent_span_id;
  return acceptor_ ? acceptor_->span_id : 0;
}

void ConnectionImpl::MakeOutbound(uint64_t parent_span_id, absl::Duration connect_timeout,
                                  std::shared_ptr<ConnectionInbox> inbox) {
  outbound_ = std::make_unique<Outbound>(Outbound{parent_span_id, connect_timeout});
  inbox_ = std::move(inbox);
}

ConnectionHandle ConnectionImpl::handle() const {
  AssertInLoopThread();
  if (inbox_ == nullptr) {
    inbox_ = std::make_shared<ConnectionInbox>(host_.mailbox(), options_.max_pending_messages);
  }
  return ConnectionHandle(inbox_, id_);
}

ConnectionSummary ConnectionImpl::Summary() const {
  AssertInLoopThread();
  return {id_, remote_, acceptor_ ? acceptor_->index : -1, host_.index(), loop_.now() - started_,
          handle()};
}

TelemetryEvent ConnectionImpl::NewEvent(TelemetryEventType type) const {
  TelemetryEvent e{type};
  // The span starts when the connection was made, so that the stop's duration is
  // exactly its monotonic_time minus the start's.
  e.monotonic_time = type == TelemetryEventType::kConnectionStart ? started_ : MonotonicNow();
  e.server = options_.name;
  e.span_id = span_id_;
  e.parent_span_id = parent_span_id();
  e.acceptor = acceptor_ ? acceptor_->index : -1;
  e.connection_id = id_;
  e.worker = host_.index();
  e.remote = &remote_;
  return e;
}

void ConnectionImpl::Emit(TelemetryEventType type, uint64_t bytes, const absl::Status* error,
                          absl::string_view detail) {
  if (!Telemetry::Enabled(type)) return;
  TelemetryEvent e = NewEvent(type);
  e.bytes = bytes;
  e.error = error;
  e.detail = detail;
  Telemetry::Emit(e);
}

void ConnectionImpl::Start() {
  AssertInLoopThread();
  Emit(TelemetryEventType::kConnectionStart);
  StartHandshakeClock();
  ContinueHandshake();
}

void ConnectionImpl::Deliver(PostedMessage message) {
  AssertInLoopThread();
  if (ended_ || phase_ == Phase::kClosed || phase_ == Phase::kDraining) return;
  if (phase_ == Phase::kHandshaking || phase_ == Phase::kSwitching) {
    // As a process's mailbox would: kept until the connection is ready, then delivered
    // in order after HandleConnection. Kept messages still count against
    // max_pending_messages, so a handshake that never ends cannot hoard them.
    early_messages_.push_back(std::move(message));
    return;
  }
  RunCallback([&] { return handler_->HandleMessage(message.message(), *this); },
              Source::kMessage);
}

void ConnectionImpl::RunDrained() {
  if (ended_ || phase_ == Phase::kClosed) return;
  if (phase_ != Phase::kOpen) {
    // Drained while a SwitchTransport runs (its clear-text output, then the new
    // handshake): the handler hears it once the switch is done, as it does messages.
    drained_after_switch_ = true;
    return;
  }
  RunCallback([this] { return handler_->HandleDrained(*this); }, Source::kMessage);
}

void ConnectionImpl::BeginShutdown(absl::Duration deadline) {
  AssertInLoopThread();
  if (phase_ == Phase::kClosed) return;
  stop_deadline_ = std::min(stop_deadline_, deadline);
  // What the peer sent before the stop is the peer's: it is handed to HandleData first
  // (a bounded amount), so that requests already here are answered, not dropped.
  for (int i = 0; i < kShutdownReads && phase_ == Phase::kOpen && !ended_; ++i) {
    if (!ReadAndDispatch()) break;
  }
  if (phase_ == Phase::kClosed) return;
  if (ended_) {
    // Already on its way out: it must still be gone by the server's deadline.
    phase_deadline_ = std::min(phase_deadline_, deadline);
    ArmTimer();
    return;
  }
  phase_deadline_ = deadline;
  if ((phase_ == Phase::kOpen || phase_ == Phase::kHandshaking) &&
      loop_.now() < host_.shutdown_grace_deadline()) {
    // Served a little longer (shutdown_grace), stopping() true: a request on its way
    // is answered. The timer ends it then. A connection still in its handshake (a TLS
    // or PROXY header not read yet, often with the request right behind it) gets the
    // grace too: accepted before the stop, its request is as much on its way.
    ArmTimer();
    return;
  }
  Close(Ending::kShutdown, CloseType::kFlushWrite);
}

void ConnectionImpl::Close(Ending ending, CloseType type, absl::Status error) {
  AssertInLoopThread();
  if (phase_ == Phase::kClosed) return;
  if (ended_) {
    // The final callback has run; only the descriptor is left to go.
    if (type == CloseType::kNoFlush) CloseSocket();
    return;
  }
  stop_ending_ = EndingName(ending, phase_ == Phase::kHandshaking);
  RunFinalCallback(ending, error);
  if (type == CloseType::kNoFlush || !pending_error_.ok() || socket_ == nullptr ||
      phase_ == Phase::kHandshaking) {
    CloseSocket();
    return;
  }
  if (!out_.empty() && !Flush().ok()) {
    CloseSocket();
    return;
  }
  if (phase_ == Phase::kClosed) return;
  if (AllSent()) {
    CloseSocketOrLinger();
    return;
  }
  // Let queued output reach the peer first, within the send timeout (or the server's
  // shutdown deadline, already in phase_deadline_).
  phase_ = Phase::kDraining;
  phase_deadline_ = std::min(phase_deadline_, loop_.now() + options_.send_timeout);
  UpdateInterest();
  ArmTimer();
}

void ConnectionImpl::RunFinalCallback(Ending ending, const absl::Status& error) {
  ended_ = true;
  waiting_since_ = absl::InfiniteDuration();
  in_callback_ = true;
  switch (ending) {
    case Ending::kLocalClose:
    case Ending::kPeerClose:
      handler_->HandleClose(*this);
      break;
    case Ending::kTimeout:
      handler_->HandleTimeout(*this);
      if (stop_error_.ok()) {
        stop_error_ = absl::DeadlineExceededError("recv: no data within the read timeout");
      }
      break;
    case Ending::kShutdown:
      handler_->HandleShutdown(*this);
      break;
    case Ending::kError:
      handler_->HandleError(error, *this);
      stop_error_ = error;
      break;
    case Ending::kHandlerError:
      handler_->HandleError(error, *this);
      if (!options_.silent_terminate_on_error) stop_error_ = error;
      break;
  }
  in_callback_ = false;
}

void ConnectionImpl::CloseSocketOrLinger() {
  // Input may be unread, or on its way: the peer has not closed its side. Input that
  // arrives after our close makes the kernel reset the connection as surely as input
  // still unread at the close.
  if (socket_ == nullptr || options_.linger_timeout <= absl::ZeroDuration() || peer_closed_) {
    CloseSocket();
    return;
  }
  // Half-close, so the peer sees the end of our output, and keep reading: the unread
  // input and what is still on its way are dropped instead of resetting the
  // connection. A transport with no room for its last bytes (TLS close_notify) closes
  // at once: its peer is not reading anyway.
  absl::StatusOr<IoInterest> half_closed = socket_->ShutdownStep(ShutdownWay::kWrite);
  if (half_closed.ok() && *half_closed == IoInterest::kWrite && socket_->HasPendingOutput()) {
    // What the transport sends last (a TLS close_notify) is staged for the loop to send
    // (io_uring): the half-close follows once it has gone out.
    phase_ = Phase::kDraining;
    phase_deadline_ = std::min(phase_deadline_, loop_.now() + options_.send_timeout);
    UpdateInterest();
    ArmTimer();
    return;
  }
  if (!half_closed.ok() || *half_closed != IoInterest::kNone) {
    CloseSocket();
    return;
  }
  // That was also any write shutdown the handler asked for (a close_notify waiting for
  // room): its deadline must not outlive it, or the timer, which ignores it while
  // lingering, would re-arm for it, already passed, again and again.
  write_shutdown_ = WriteShutdown::kNone;
  shutdown_deadline_ = absl::InfiniteDuration();
  phase_ = Phase::kLingering;
  // From now: not the drain's deadline (send_timeout, a different wait), only the
  // server's stop bounds it beyond linger_timeout.
  phase_deadline_ =
      std::min(stop_deadline_, loop_.now() + host_.ScaledTimeout(options_.linger_timeout));
  UpdateInterest();
  ArmTimer();
  DiscardInput();
}

void ConnectionImpl::DiscardInput() {
  absl::Span<char> buffer = host_.read_buffer();
  for (int i = 0; i < kLingerReads && phase_ == Phase::kLingering; ++i) {
    absl::StatusOr<size_t> got = socket_->ReadSome(buffer);
    if (got.ok()) continue;
    if (!IsWouldBlock(got.status())) CloseSocket();  // the peer's EOF, or its reset
    return;
  }
}

void ConnectionImpl::CloseSocket() {
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
  registration_.Reset();
  if (socket_ != nullptr) {
    if (report) {
      absl::StatusOr<SocketStats> s = socket_->GetStat();
      if (s.ok()) stats = *s;
    }
    socket_->Close();
  }
  channel_.reset();  // cancels its receive, gives its buffers back
  out_.Clear();
  CancelAllTimers();
  if (report) {
    TelemetryEvent e = NewEvent(TelemetryEventType::kConnectionStop);
    e.duration = e.monotonic_time - started_;
    e.stats = &stats;
    e.error = stop_error_.ok() ? nullptr : &stop_error_;
    e.detail = stop_ending_;
    Telemetry::Emit(e);
  }
  if (acceptor_) acceptor_->Release();
  peer_slot_.reset();
  host_.Retire(*this);
}

// ---- The state machine ----

void ConnectionImpl::ContinueHandshake() {
  absl::StatusOr<IoInterest> step = socket_->HandshakeStep();
  if (!step.ok()) {
    Close(Ending::kError, CloseType::kNoFlush, step.status());
    return;
  }
  if (*step != IoInterest::kNone) {
    handshake_wants_ = *step;
    UpdateInterest();
    ArmTimer();
    return;
  }
  const bool upgraded = std::exchange(upgrading_, false);
  if (!upgraded && (socket_->proxy_header() != nullptr || host_.peer_limiter().enabled()) &&
      !AdoptHandshakePeer()) {
    return;
  }
  phase_ = Phase::kOpen;
  AttachChannel();
  // Finished within a stop's grace: the stop's deadline still holds (BeginShutdown).
  if (!host_.shutting_down()) phase_deadline_ = absl::InfiniteDuration();
  if (Telemetry::Enabled(TelemetryEventType::kConnectionReady)) {
    TelemetryEvent e = NewEvent(TelemetryEventType::kConnectionReady);
    // Only a real handshake has a length: TCP's is done before it starts.
    if (socket_->Secure()) e.duration = e.monotonic_time - handshake_started_;
    Telemetry::Emit(e);
  }
  if (upgraded) {
    // A transport switch carries on where the handler left off: waiting for data.
    WaitForData(read_timeout_);
    if (std::exchange(drained_after_switch_, false)) {
      host_.RunLater(id_, [](ConnectionImpl& c) { c.RunDrained(); });
    }
  } else {
    RunCallback([this] { return handler_->HandleConnection(*this); });
  }
  if (!early_messages_.empty()) {
    std::vector<PostedMessage> messages = std::move(early_messages_);
    early_messages_.clear();
    for (PostedMessage& m : messages) Deliver(std::move(m));
  }
}

bool ConnectionImpl::AdoptHandshakePeer() {
  if (socket_->proxy_header() != nullptr) {
    absl::StatusOr<SocketInfo> peer = socket_->PeerInfo();
    if (peer.ok()) {
      remote_ = *std::move(peer);
      remote_.peer_certificate.reset();
    }
  }
  PeerLimiter& limiter = host_.peer_limiter();
  if (!limiter.enabled() || outbound_ != nullptr || options_.transport->PeerKnownAtAccept()) {
    return true;
  }
  PeerLimiter::Slot slot = limiter.TryTake(remote_.address);
  if (!slot) {
    Close(Ending::kError, CloseType::kNoFlush,
          absl::ResourceExhaustedError(absl::StrCat(
              "handshake: ", limiter.limit(), " connections from ", remote_.address,
              " already (max_connections_per_peer)")));
    return false;
  }
  peer_slot_ = std::make_unique<PeerLimiter::Slot>(std::move(slot));
  return true;
}

void ConnectionImpl::OnReady(uint32_t events) {
  if (phase_ == Phase::kClosed) return;
  if (phase_ == Phase::kHandshaking) {
    ContinueHandshake();
    return;
  }
  if (phase_ == Phase::kLingering) {
    DiscardInput();
    return;
  }
  const bool writable = (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) != 0;
  if (writable && write_shutdown_ == WriteShutdown::kSending) StepShutdown().IgnoreError();
  if (phase_ == Phase::kClosed) return;
  if (writable && !out_.empty()) {
    absl::Status flushed = Flush();
    if (!flushed.ok()) {
      Emit(TelemetryEventType::kConnectionSendError, 0, &flushed);
      Close(Ending::kError, CloseType::kNoFlush, flushed);
      return;
    }
    if (phase_ == Phase::kClosed) return;
  }
  if (phase_ == Phase::kDraining) {
    if (AllSent()) CloseSocketOrLinger();
    return;
  }
  if (phase_ == Phase::kSwitching) {
    if (AllSent()) Upgrade();
    return;
  }
  if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0 && ReadingAllowed()) {
    // A loop's channel hands over one receive buffer (16 KiB at most) a read: up to four
    // make the 64 KiB one read takes on epoll. Only while it holds more: a read that
    // finds none would cost a recv(2) that finds nothing either.
    const int reads = channel_ != nullptr ? 4 : 1;
    for (int i = 0; i < reads; ++i) {
      if (!ReadAndDispatch()) break;
      if (channel_ == nullptr || socket_ == nullptr || !socket_->HasBufferedInput()) break;
    }
    return;
  }
  // Half-closed by the peer and kept open by the handler: with nothing left to write, a
  // hang-up or an error (the peer's reset) means the connection is gone, and epoll
  // would keep reporting it.
  if (peer_closed_ && (events & (EPOLLHUP | EPOLLERR)) != 0 && phase_ == Phase::kOpen &&
      !ended_) {
    Close(Ending::kPeerClose, CloseType::kNoFlush);
  }
}

void ConnectionImpl::AttachChannel() {
  if (channel_ != nullptr || socket_ == nullptr) return;
  // After the handshake: a PROXY header is read by peeking at the descriptor.
  std::unique_ptr<EventLoop::SocketChannel> channel = loop_.MakeChannel(socket_->fd(), this);
  if (channel == nullptr || !socket_->AttachInput(channel.get())) return;
  if (!socket_->AttachOutput(channel.get())) {
    socket_->AttachInput(nullptr);
    return;
  }
  channel_ = std::move(channel);
}

bool ConnectionImpl::ReadAndDispatch() {
  AssertInLoopThread();
  if (phase_ != Phase::kOpen || ended_ || !ReadingAllowed()) return false;
  if (channel_ != nullptr) {
    // Straight from the loop's receive buffer, with no copy: HandleData's bytes are
    // valid only during the call, and the buffer goes back when it returns.
    const absl::string_view taken = socket_->TakeInput();
    if (!taken.empty()) {
      Emit(TelemetryEventType::kConnectionAsyncRecv, taken.size());
      waiting_since_ = absl::InfiniteDuration();
      RunCallback([&] { return handler_->HandleData(taken, *this); });
      if (channel_ != nullptr) channel_->ReleaseTaken();
      return true;
    }
  }
  absl::Span<char> buffer = host_.read_buffer();
  absl::StatusOr<size_t> got = socket_->ReadSome(buffer);
  if (!got.ok()) {
    if (IsWouldBlock(got.status())) return false;
    if (IsPeerClosed(got.status())) {
      peer_closed_ = true;
      RunCallback([&] { return handler_->HandlePeerFinished(*this); }, Source::kPeerFinished);
      return false;
    }
    Emit(TelemetryEventType::kConnectionRecvError, 0, &got.status());
    Close(Ending::kError, CloseType::kNoFlush, got.status());
    return false;
  }
  Emit(TelemetryEventType::kConnectionAsyncRecv, *got);
  waiting_since_ = absl::InfiniteDuration();  // not waiting while the handler works
  const absl::string_view data(buffer.data(), *got);
  RunCallback([&] { return handler_->HandleData(data, *this); });
  return true;
}

template <typename Callback>
void ConnectionImpl::RunCallback(Callback&& callback, Source source) {
  in_callback_ = true;
  HandlerResult result = callback();
  // ContinueThen loops here rather than recursing: a handler may chain many steps.
  while (result.kind() == HandlerResult::Kind::kContinueThen && pending_error_.ok() &&
         !close_requested_) {
    result = handler_->HandleContinue(*this);
  }
  in_callback_ = false;
  Apply(std::move(result), source);
}

void ConnectionImpl::Apply(HandlerResult result, Source source) {
  if (phase_ != Phase::kOpen || ended_) return;
  if (!pending_error_.ok()) {
    Close(Ending::kError, CloseType::kNoFlush, std::exchange(pending_error_, absl::OkStatus()));
    return;
  }
  if (close_requested_) {
    Close(Ending::kLocalClose, CloseType::kFlushWrite);
    return;
  }
  switch (result.kind()) {
    case HandlerResult::Kind::kContinue:
    case HandlerResult::Kind::kContinueThen:
      if (result.persistent()) read_timeout_ = result.timeout();
      if (source == Source::kMessage && !result.has_timeout()) {
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
      Close(source == Source::kPeerFinished ? Ending::kPeerClose : Ending::kLocalClose,
            CloseType::kFlushWrite);
      return;
    case HandlerResult::Kind::kError:
      Close(Ending::kHandlerError, CloseType::kFlushWrite, result.error());
      return;
    case HandlerResult::Kind::kSwitchTransport:
      SwitchTransport(result.transport());
      return;
  }
}

void ConnectionImpl::SwitchTransport(Transport* transport) {
  if (transport == nullptr) {
    Close(Ending::kHandlerError, CloseType::kFlushWrite,
          absl::InvalidArgumentError("switch_transport: no transport given"));
    return;
  }
  // What the handler queued before the switch ("ready to start TLS") goes out in the
  // clear, first: as output always does, on writability, bounded by send_timeout, and
  // reading nothing meanwhile (the next bytes belong to the new transport).
  switch_to_ = transport;
  phase_ = Phase::kSwitching;
  waiting_since_ = absl::InfiniteDuration();
  absl::Status flushed = out_.empty() ? absl::OkStatus() : Flush();
  if (!flushed.ok()) {
    Close(Ending::kError, CloseType::kNoFlush, flushed);
    return;
  }
  if (!AllSent()) {
    UpdateInterest();
    ArmTimer();
    return;
  }
  Upgrade();
}

void ConnectionImpl::Upgrade() {
  Transport* transport = std::exchange(switch_to_, nullptr);
  absl::StatusOr<std::unique_ptr<Socket>> upgraded = transport->Upgrade(std::move(socket_));
  if (!upgraded.ok()) {
    // The old socket went down with the failed upgrade.
    registration_.Reset();
    Close(Ending::kError, CloseType::kNoFlush, upgraded.status());
    return;
  }
  socket_ = *std::move(upgraded);
  if (socket_->fd() != registration_.fd()) registration_.Reset();
  upgrading_ = true;
  phase_ = Phase::kHandshaking;
  handshake_wants_ = IoInterest::kRead;
  waiting_since_ = absl::InfiniteDuration();
  StartHandshakeClock();
  ContinueHandshake();
}

void ConnectionImpl::WaitForData(absl::Duration timeout) {
  wait_timeout_ = timeout;
  // The wait starts now, when the callback returns: not at loop_.now(), the start of
  // this loop turn, which would count the callback's own run time (a slow callback,
  // or a blocking Recv) against the client.
  // A peer that finished sending keeps the clock running: it bounds the half-closed
  // connection's life (HandlePeerFinished).
  waiting_since_ = ReadingAllowed() || peer_closed_ ? MonotonicNow() : absl::InfiniteDuration();
  UpdateInterest();
  ArmTimer();
  PostReadIfBuffered();
}

void ConnectionImpl::PostReadIfBuffered() {
  // Bytes a transport already holds (TLS plaintext, or kept by a timed-out Recv) never
  // make the descriptor readable: read them on the next loop turn.
  if (phase_ != Phase::kOpen || !ReadingAllowed() || !socket_->HasBufferedInput()) return;
  host_.RunLater(id_, [](ConnectionImpl& c) { c.ReadBuffered(); });
}

// ---- Readiness and timers ----

void ConnectionImpl::UpdateInterest() {
  if (socket_ == nullptr || phase_ == Phase::kClosed) return;
  uint32_t want = 0;
  switch (phase_) {
    case Phase::kHandshaking:
      want = handshake_wants_ == IoInterest::kWrite ? EPOLLOUT : EPOLLIN;
      break;
    case Phase::kOpen:
      if (ReadingAllowed() && !ended_) want |= EPOLLIN;
      if (!out_.empty() || write_shutdown_ == WriteShutdown::kSending) want |= EPOLLOUT;
      // Half-closed by the peer and kept open (HandlePeerFinished): nothing to read, but
      // the peer's reset or hang-up must still be heard, or the connection would stay.
      if (want == 0 && peer_closed_) want = EPOLLHUP;
      break;
    case Phase::kSwitching:
    case Phase::kDraining:
      if (!AllSent()) want |= EPOLLOUT;
      break;
    case Phase::kLingering:
      want = EPOLLIN;
      break;
    case Phase::kClosed:
      return;
  }
  if (channel_ != nullptr) {
    // Input comes by the loop's receive, not by readiness; room for output, while the
    // loop holds staged bytes, by its sends (the descriptor's writability otherwise: a
    // sendfile's).
    channel_->SetReceiving((want & EPOLLIN) != 0);
    want &= ~static_cast<uint32_t>(EPOLLIN);
    const bool on_sends = (want & EPOLLOUT) != 0 && socket_->HasPendingOutput();
    channel_->SetNotifyWhenSent(on_sends);
    if (on_sends) want &= ~static_cast<uint32_t>(EPOLLOUT);
  }
  if (want == 0) {
    // epoll reports EPOLLERR and EPOLLHUP whatever the mask: a descriptor that wants
    // nothing (reading paused, nothing queued) leaves the set, or a peer's reset would
    // wake the loop on every turn until reading resumes.
    registration_.Reset();
    return;
  }
  if (registration_.active()) {
    registration_.SetEvents(want).IgnoreError();
    return;
  }
  absl::StatusOr<EventLoop::Registration> registered = loop_.Watch(socket_->fd(), want, this);
  if (!registered.ok()) {
    SetPendingError(registered.status());
    return;
  }
  registration_ = *std::move(registered);
}

absl::Duration ConnectionImpl::NextDeadline() const {
  // Exactly the deadlines OnTimer acts on in this phase: a passed deadline it ignored
  // would re-arm the timer in the past, and the loop would run it forever.
  switch (phase_) {
    case Phase::kHandshaking:
      return std::min(HandshakeDeadline(), GraceDeadline());
    case Phase::kLingering:
      return phase_deadline_;
    case Phase::kOpen:
    case Phase::kSwitching:
      return std::min({shutdown_deadline_, out_.send_deadline(), ReadDeadline(),
                       ended_ ? absl::InfiniteDuration() : HandlerDeadline(),
                       ended_ ? absl::InfiniteDuration() : GraceDeadline()});
    case Phase::kDraining:
      return std::min(phase_deadline_, out_.send_deadline());
    case Phase::kClosed:
      break;
  }
  return absl::InfiniteDuration();
}

absl::Duration ConnectionImpl::GraceDeadline() const {
  return host_.shutting_down() ? host_.shutdown_grace_deadline() : absl::InfiniteDuration();
}

void ConnectionImpl::ArmTimer() {
  if (phase_ == Phase::kClosed) return;
  const absl::Duration want = NextDeadline();
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

void ConnectionImpl::StartHandshakeClock() {
  handshake_started_ = loop_.now();
  phase_deadline_ = absl::InfiniteDuration();
}

absl::Duration ConnectionImpl::HandshakeDeadline() const {
  // An outbound connection's handshake is its connect, bounded by the opener's timeout.
  if (outbound_ != nullptr) return handshake_started_ + outbound_->connect_timeout;
  return handshake_started_ + host_.ScaledTimeout(options_.handshake_timeout);
}

absl::Duration ConnectionImpl::ReadDeadline() const {
  if (waiting_since_ == absl::InfiniteDuration()) return absl::InfiniteDuration();
  return waiting_since_ + host_.ScaledTimeout(wait_timeout_);
}

absl::Duration ConnectionImpl::HandlerDeadline() const {
  if (handler_deadline_set_ == absl::InfiniteDuration()) return absl::InfiniteDuration();
  return handler_deadline_set_ + (handler_deadline_scaling_ == TimeoutScaling::kFixed
                                      ? handler_deadline_length_
                                      : host_.ScaledTimeout(handler_deadline_length_));
}

void ConnectionImpl::OnTimer() {
  const absl::Duration now = loop_.now();
  switch (phase_) {
    case Phase::kHandshaking:
      if (const absl::Duration deadline = HandshakeDeadline(); now >= deadline) {
        const absl::Duration allowed = deadline - handshake_started_;
        if (outbound_ != nullptr) {
          Close(Ending::kError, CloseType::kNoFlush,
                absl::DeadlineExceededError(absl::StrCat(
                    "connect ", remote_.ToString(),
                    socket_->Secure() ? ": connect and TLS handshake not done within "
                                      : ": not connected within ",
                    absl::FormatDuration(allowed))));
          return;
        }
        Close(Ending::kError, CloseType::kNoFlush,
              absl::DeadlineExceededError(absl::StrCat(
                  "handshake: not done within ", absl::FormatDuration(allowed),
                  allowed < options_.handshake_timeout
                      ? " (handshake_timeout, shortened under overload)"
                      : "")));
        return;
      }
      if (now >= GraceDeadline()) {  // the stop's grace passed before the handshake ended
        Close(Ending::kShutdown, CloseType::kNoFlush);
        return;
      }
      break;
    case Phase::kOpen:
    case Phase::kSwitching:
      if (now >= shutdown_deadline_) {
        absl::Status stalled = absl::DeadlineExceededError(absl::StrCat(
            "shutdown: no room to send for ", absl::FormatDuration(options_.send_timeout)));
        Emit(TelemetryEventType::kConnectionSocketShutdown, 0, &stalled, "write");
        Close(Ending::kError, CloseType::kNoFlush, stalled);
        return;
      }
      if (now >= out_.send_deadline()) {
        absl::Status stalled = absl::DeadlineExceededError(absl::StrCat(
            "send: the peer took nothing for ", absl::FormatDuration(options_.send_timeout)));
        Emit(TelemetryEventType::kConnectionSendError, 0, &stalled);
        Close(Ending::kError, CloseType::kNoFlush, stalled);
        return;
      }
      if (now >= GraceDeadline() && !ended_) {
        Close(Ending::kShutdown, CloseType::kFlushWrite);
        return;
      }
      if (now >= ReadDeadline()) {
        Close(Ending::kTimeout, CloseType::kFlushWrite);
        return;
      }
      if (now >= HandlerDeadline() && !ended_) {
        stop_error_ = absl::DeadlineExceededError("deadline: the handler's deadline passed");
        Close(Ending::kTimeout, CloseType::kFlushWrite);
        return;
      }
      break;
    case Phase::kDraining:
      if (now >= phase_deadline_ || now >= out_.send_deadline()) {
        CloseSocket();
        return;
      }
      break;
    case Phase::kLingering:
      if (now >= phase_deadline_) {
        CloseSocket();
        return;
      }
      break;
    case Phase::kClosed:
      return;
  }
  ArmTimer();
}

}  // namespace islet
