#include "server/acceptor.h"

#include <fcntl.h>
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"

#include "server/telemetry.h"
#include "transport/errors.h"
#include "transport/io_wait.h"

namespace islet {
namespace {

// Out of descriptors: wait this long before accepting again (Thousand Island's pause).
// Connections already open keep being served meanwhile, and as they close, descriptors
// come back and accepting resumes by itself.
constexpr absl::Duration kEmfileBackoff = absl::Milliseconds(100);
// Any other accept failure: a short pause so a persistent error cannot spin a core.
constexpr absl::Duration kAcceptErrorBackoff = absl::Milliseconds(10);
// Connections accepted per readiness event on a loop, before the loop's other work.
constexpr int kAcceptBatch = 64;

}  // namespace

std::shared_ptr<Listener> ListenerSet::WaitForListener(int index) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || !listeners_.empty();
  };
  mu_.Await(absl::Condition(&ready));
  if (stopping_) return nullptr;
  return listeners_[static_cast<size_t>(index) % listeners_.size()];
}

std::shared_ptr<Listener> ListenerSet::ListenerFor(int index) {
  absl::MutexLock lock(&mu_);
  if (stopping_ || listeners_.empty()) return nullptr;
  return listeners_[static_cast<size_t>(index) % listeners_.size()];
}

bool ListenerSet::Pollable() {
  absl::MutexLock lock(&mu_);
  if (listeners_.empty()) return false;
  for (const auto& l : listeners_) {
    if (l->fd() < 0) return false;
  }
  return true;
}

bool ListenerSet::IsInstalled(const std::shared_ptr<Listener>& listener) {
  absl::MutexLock lock(&mu_);
  for (const auto& l : listeners_) {
    if (l == listener) return true;
  }
  return false;
}

void ListenerSet::Install(std::vector<std::shared_ptr<Listener>> listeners) {
  absl::MutexLock lock(&mu_);
  listeners_ = std::move(listeners);
}

void ListenerSet::CloseAll(Then then) {
  absl::MutexLock lock(&mu_);
  for (const auto& l : listeners_) l->Close();
  listeners_.clear();
  if (then == Then::kStop) stopping_ = true;
}

void ListenerSet::ReleaseAll() {
  absl::MutexLock lock(&mu_);
  for (const auto& l : listeners_) l->Release();
  listeners_.clear();
}

std::vector<std::shared_ptr<Listener>> ListenerSet::Installed() {
  absl::MutexLock lock(&mu_);
  return listeners_;
}

bool ListenerSet::SleepUnlessStopping(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&stopping_), d);
  return !stopping_;
}

Acceptor::Acceptor(ServerContext& context, ListenerSet& listeners, std::vector<Worker*> workers,
                   int index)
    : context_(context),
      listeners_(listeners),
      workers_(std::move(workers)),
      slot_(std::make_shared<AcceptorSlot>()),
      next_worker_(static_cast<size_t>(index)) {
  // Acceptor j < index on the same loop with the same listener (see Start and
  // ListenerSet::ListenerFor) already watches the listener's own descriptor.
  const int loops = static_cast<int>(workers_.size());
  const int sockets = std::max(1, context.options.num_listen_sockets);
  for (int j = 0; j < index; ++j) {
    if (j % loops == index % loops && j % sockets == index % sockets) {
      shares_listener_fd_ = true;
    }
  }
  slot_->index = index;
  slot_->span_id = Telemetry::NewSpanId();
  slot_->server_admitted = &context_.admitted;
}

Acceptor::~Acceptor() { Join(); }

void Acceptor::Start(bool on_loop) {
  started_ = MonotonicNow();
  if (!on_loop) {
    thread_ = std::thread([this] { Run(); });
    return;
  }
  loop_ = &workers_[static_cast<size_t>(slot_->index) % workers_.size()]->loop();
  Emit(TelemetryEventType::kAcceptorStart);
  loop_->Post([this] { Arm(); });
}

void Acceptor::Rearm() {
  if (loop_ != nullptr) loop_->Post([this] { Arm(); });
}

void Acceptor::BeginStop() {
  if (loop_ == nullptr || stop_requested_) return;
  stop_requested_ = true;
  loop_->PostUrgent([this] {
    stopped_ = true;
    DropListener();
    if (timer_ != 0) loop_->Cancel(timer_);
    timer_ = 0;
    if (pending_ != nullptr) Refuse(std::move(pending_), FullError());
    Emit(TelemetryEventType::kAcceptorStop, nullptr, accepted_, MonotonicNow() - started_);
    stop_done_.Notify();
  });
}

void Acceptor::Join() {
  if (loop_ == nullptr) {
    if (thread_.joinable()) thread_.join();
    return;
  }
  BeginStop();
  stop_done_.WaitForNotification();
}

absl::Status Acceptor::FullError() {
  // Full for the whole retry window (or stopping): the client is turned away.
  return absl::ResourceExhaustedError("accept: too many connections (num_connections reached)");
}

void Acceptor::Emit(TelemetryEventType type, const absl::Status* error, uint64_t count,
                    absl::Duration duration, const SocketInfo* remote) {
  if (!Telemetry::Enabled(type)) return;
  TelemetryEvent e{type};
  e.monotonic_time = MonotonicNow();
  e.duration = duration;
  e.connections = count;
  e.server = context_.options.name;
  e.span_id = slot_->span_id;
  e.parent_span_id = context_.listener_span_id;
  e.acceptor = slot_->index;
  e.remote = remote;
  e.error = error;
  Telemetry::Emit(e);
}

bool Acceptor::Report(const absl::Status& error, absl::Duration* backoff) {
  if (absl::IsResourceExhausted(error)) {
    Emit(TelemetryEventType::kAcceptorEmfile, &error);
    *backoff = kEmfileBackoff;
    return false;
  }
  if (IsConnectionLost(error)) {
    Emit(TelemetryEventType::kAcceptorEconnaborted, &error);
    return true;
  }
  Emit(TelemetryEventType::kAcceptorAcceptError, &error);
  *backoff = kAcceptErrorBackoff;
  return false;
}

void Acceptor::HandOver(std::unique_ptr<Socket> socket) {
  PeerLimiter::Slot peer_slot;
  // A transport that learns the peer in its handshake (the PROXY protocol) has the
  // connection take its place under the limit then (ConnectionImpl::TakePeerSlot):
  // counted here, every client of a balancer would count as the balancer.
  if (context_.peer_limiter.enabled() && context_.options.transport->PeerKnownAtAccept()) {
    absl::StatusOr<SocketInfo> peer = socket->PeerInfo();
    if (peer.ok()) {
      peer_slot = context_.peer_limiter.TryTake(peer->address);
      if (!peer_slot) {
        Refuse(std::move(socket),
               absl::ResourceExhaustedError(absl::StrCat(
                   "accept: ", context_.peer_limiter.limit(), " connections from ",
                   peer->address, " already (max_connections_per_peer)")),
               &*peer);
        return;
      }
    }
  }
  slot_->Take();
  slot_->accepted.fetch_add(1, std::memory_order_relaxed);
  workers_[next_worker_++ % workers_.size()]->Adopt(std::move(socket), slot_,
                                                     std::move(peer_slot));
}

void Acceptor::Refuse(std::unique_ptr<Socket> socket, const absl::Status& why,
                      const SocketInfo* peer) {
  Emit(TelemetryEventType::kAcceptorSpawnError, &why, 0, absl::ZeroDuration(), peer);
  socket->Close();
}

// ---- On a thread of its own ----

bool Acceptor::HasRoom() const {
  const ServerOptions& o = context_.options;
  return (o.num_connections == ServerOptions::kUnlimited ||
          slot_->live.load(std::memory_order_acquire) < o.num_connections) &&
         (o.max_connections == ServerOptions::kUnlimited ||
          context_.admitted.load(std::memory_order_acquire) < o.max_connections);
}

int64_t Acceptor::LimitForChecks() const {
  return context_.options.descriptor_reserve > 0 || accept_channel_ != nullptr
             ? DescriptorLimit()
             : kNoDescriptorLimit;
}

bool Acceptor::RefusedForReserve(Socket& socket, absl::Duration* backoff, int64_t limit) {
  if (!InDescriptorReserve(socket.fd(), context_.options.descriptor_reserve, limit)) {
    return false;
  }
  // As out of descriptors: the rest of the table is for files, sendfile and logs.
  const absl::Status reserved = absl::ResourceExhaustedError(absl::StrCat(
      "accept: descriptor ", socket.fd(), " is within descriptor_reserve (",
      context_.options.descriptor_reserve, ") of RLIMIT_NOFILE; the connection was closed"));
  socket.Close();
  Report(reserved, backoff);
  return true;
}

bool Acceptor::WaitForBudget() {
  for (int attempt = 0; !HasRoom(); ++attempt) {
    if (attempt >= context_.options.max_connections_retry_count) return false;
    if (!listeners_.SleepUnlessStopping(context_.options.max_connections_retry_wait)) {
      return false;
    }
  }
  return true;
}

void Acceptor::Run() {
  Emit(TelemetryEventType::kAcceptorStart);
  while (std::shared_ptr<Listener> listener = listeners_.WaitForListener(slot_->index)) {
    absl::StatusOr<std::unique_ptr<Socket>> socket = listener->Accept();
    if (!socket.ok()) {
      const absl::Status& error = socket.status();
      if (IsClosed(error)) {
        // Suspended or stopping: WaitForListener decides. A listener that reports closed
        // while still installed (a custom transport's) must not spin this thread.
        if (listeners_.IsInstalled(listener)) {
          Emit(TelemetryEventType::kAcceptorAcceptError, &error);
          listeners_.SleepUnlessStopping(kEmfileBackoff);
        }
        continue;
      }
      absl::Duration backoff;
      if (!Report(error, &backoff)) listeners_.SleepUnlessStopping(backoff);
      continue;
    }
    ++accepted_;
    if (absl::Duration backoff; RefusedForReserve(**socket, &backoff, LimitForChecks())) {
      listeners_.SleepUnlessStopping(backoff);
      continue;
    }
    if (WaitForBudget()) {
      HandOver(*std::move(socket));
    } else {
      Refuse(*std::move(socket), FullError());
    }
  }
  Emit(TelemetryEventType::kAcceptorStop, nullptr, accepted_, MonotonicNow() - started_);
}

// ---- On a worker's loop ----

void Acceptor::Arm() {
  loop_->AssertInLoopThread();
  if (stopped_) return;
  std::shared_ptr<Listener> current = listeners_.ListenerFor(slot_->index);
  if (current == listener_) return;
  DropListener();
  listener_ = std::move(current);
  if (timer_ == 0) Watch();  // else the pause in progress watches when it ends
}

void Acceptor::Watch() {
  loop_->AssertInLoopThread();
  if (stopped_ || Watching() || listener_ == nullptr) return;
  if (accept_channel_ == nullptr && listener_->CanAdoptAccepted()) {
    accept_channel_ = loop_->MakeAcceptChannel(listener_->fd(), this);
  }
  if (accept_channel_ != nullptr) {
    if (!PlaceOverLimit()) return;
    if (Watching() || pending_ != nullptr) return;  // placing it paused, or resumed
    accepting_ = true;
    accept_channel_->SetAccepting(true);
    return;
  }
  int fd = listener_->fd();
  if (shares_listener_fd_) {
    // One epoll set cannot hold the same descriptor twice: the second acceptor of a
    // listener on this loop watches a duplicate of its own.
    if (!watch_fd_.valid()) watch_fd_.reset(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
    fd = watch_fd_.get();
  }
  absl::StatusOr<EventLoop::Registration> watched =
      fd >= 0 ? loop_->Watch(fd, EPOLLIN, this)
              : absl::StatusOr<EventLoop::Registration>(PosixError(errno, "accept: dup"));
  if (!watched.ok()) {
    absl::Duration backoff = kAcceptErrorBackoff;
    Report(watched.status(), &backoff);
    PauseFor(backoff, [this] { Watch(); });
    return;
  }
  registration_ = *std::move(watched);
}

void Acceptor::StopWatching() {
  registration_.Reset();
  if (accepting_) accept_channel_->SetAccepting(false);
  accepting_ = false;
}

void Acceptor::DropListener() {
  loop_->AssertInLoopThread();
  StopWatching();
  // What the loop accepted is this server's to serve, as a connection accept(2)
  // returned would be: at stop too, under the shutdown (Worker::Adopt). Closing it
  // would lose it where the listener was released to a successor, which would have
  // served it from the backlog (and stopping's SetAccepting(false) takes what the
  // accept may have been woken for out of that backlog).
  if (accept_channel_ != nullptr && listener_ != nullptr) TakeAcceptedBacklog();
  accept_channel_.reset();
  over_limit_.reset();  // no descriptor came free for it: its client sees the close
  watch_fd_.reset();
  listener_.reset();
}

absl::StatusOr<std::unique_ptr<Socket>> Acceptor::NextAccepted() {
  if (accept_channel_ == nullptr) return listener_->TryAccept();
  absl::StatusOr<UniqueFd> fd = accept_channel_->Next();
  if (!fd.ok()) return fd.status();
  // The loop's accept counts descriptors against RLIMIT_NOFILE as it was when the
  // accept was armed. Beyond the limit now (lowered since), every descriptor under it
  // is taken (the kernel hands out the lowest free one): accept(2) would have failed
  // with EMFILE and left the connection in the backlog, so it waits here instead.
  if (descriptor_limit_ != kNoDescriptorLimit && fd->get() >= descriptor_limit_) {
    const int number = fd->get();
    over_limit_ = *std::move(fd);
    return absl::ResourceExhaustedError(absl::StrCat(
        "accept: descriptor ", number, " is beyond RLIMIT_NOFILE (", descriptor_limit_,
        "), lowered since the loop's accept began; the connection waits for a free one"));
  }
  return listener_->AdoptAccepted(*std::move(fd));
}

bool Acceptor::PlaceOverLimit() {
  if (!over_limit_.valid()) return true;
  // The lowest free descriptor, if there is one under the limit now: the one accept(2)
  // would give it now.
  UniqueFd lower(::fcntl(over_limit_.get(), F_DUPFD_CLOEXEC, 0));
  if (!lower.valid()) {
    absl::Duration backoff;
    Report(absl::ResourceExhaustedError(PosixError(errno, "accept: dup").message()), &backoff);
    PauseFor(backoff, [this] { Watch(); });
    return false;
  }
  over_limit_.reset();
  absl::StatusOr<std::unique_ptr<Socket>> socket = listener_->AdoptAccepted(std::move(lower));
  if (!socket.ok()) return true;
  descriptor_limit_ = LimitForChecks();
  if (absl::Duration backoff; RefusedForReserve(**socket, &backoff, descriptor_limit_)) {
    PauseFor(backoff, [this] { Watch(); });
    return false;
  }
  Place(*std::move(socket));
  return true;
}

void Acceptor::TakeAcceptedBacklog() {
  descriptor_limit_ = LimitForChecks();
  for (;;) {
    absl::StatusOr<UniqueFd> fd = accept_channel_->Next();
    if (!fd.ok()) {
      if (IsWouldBlock(fd.status())) return;
      continue;  // the accept's end: the next Watch accepts again
    }
    ++accepted_;
    absl::StatusOr<std::unique_ptr<Socket>> socket = listener_->AdoptAccepted(*std::move(fd));
    if (!socket.ok()) continue;
    absl::Duration backoff;
    if (RefusedForReserve(**socket, &backoff, descriptor_limit_)) continue;
    if (pending_ == nullptr && HasRoom()) {
      HandOver(*std::move(socket));
    } else {
      Refuse(*std::move(socket), FullError());
    }
  }
}

void Acceptor::PauseFor(absl::Duration d, absl::AnyInvocable<void()> then) {
  StopWatching();
  timer_ = loop_->Schedule(MonotonicNow() + d, [this, then = std::move(then)]() mutable {
    timer_ = 0;
    then();
  });
}

void Acceptor::OnReady(uint32_t /*events*/) {
  // A bounded batch per readiness event: a flood of connections cannot starve the
  // connections this worker already serves.
  // RLIMIT_NOFILE is read once per batch, not once per connection.
  descriptor_limit_ = LimitForChecks();
  for (int i = 0; i < kAcceptBatch && Watching(); ++i) {
    absl::StatusOr<std::unique_ptr<Socket>> socket = NextAccepted();
    if (socket.ok()) {
      ++accepted_;
      if (absl::Duration backoff; RefusedForReserve(**socket, &backoff, descriptor_limit_)) {
        // The loop may have accepted more meanwhile (all of them in the reserve, or
        // close to it): they do not wait out the pause holding its descriptors.
        if (accept_channel_ != nullptr) TakeAcceptedBacklog();
        PauseFor(backoff, [this] { Watch(); });
        return;
      }
      Place(*std::move(socket));
      continue;
    }
    const absl::Status& error = socket.status();
    if (IsWouldBlock(error)) return;
    if (IsClosed(error)) {
      if (listeners_.IsInstalled(listener_)) {
        Emit(TelemetryEventType::kAcceptorAcceptError, &error);
        PauseFor(kEmfileBackoff, [this] { Watch(); });
      } else {
        DropListener();  // suspended or stopping: Rearm brings the next listener
      }
      return;
    }
    absl::Duration backoff;
    if (!Report(error, &backoff)) {
      PauseFor(backoff, [this] { Watch(); });
      return;
    }
  }
}

void Acceptor::Place(std::unique_ptr<Socket> socket) {
  if (HasRoom()) {
    HandOver(std::move(socket));
    return;
  }
  // Full: as the thread does, wait for room up to retry_count times retry_wait, and
  // accept nothing else meanwhile.
  pending_ = std::move(socket);
  pending_attempts_ = 0;
  StopWatching();
  PlacePending();
}

void Acceptor::PlacePending() {
  if (HasRoom()) {
    HandOver(std::move(pending_));
  } else if (pending_attempts_ >= context_.options.max_connections_retry_count) {
    Refuse(std::move(pending_), FullError());
  } else {
    ++pending_attempts_;
    PauseFor(context_.options.max_connections_retry_wait, [this] { PlacePending(); });
    return;
  }
  Watch();
}

}  // namespace islet
