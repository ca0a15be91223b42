#include "server/acceptor.h"

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

void ListenerSet::CloseAll(bool stopping) {
  absl::MutexLock lock(&mu_);
  for (const auto& l : listeners_) l->Close();
  listeners_.clear();
  if (stopping) stopping_ = true;
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
      slot_(std::make_shared<AcceptorSlot>()) {
  slot_->index = index;
  slot_->span_id = Telemetry::NewSpanId();
}

Acceptor::~Acceptor() { Join(); }

void Acceptor::Start() {
  thread_ = std::thread([this] { Run(); });
}

void Acceptor::Join() {
  if (thread_.joinable()) thread_.join();
}

void Acceptor::Emit(TelemetryEventType type, const absl::Status* error, uint64_t count,
                    absl::Duration duration) {
  if (!Telemetry::Enabled(type)) return;
  TelemetryEvent e{type};
  e.monotonic_time = MonotonicNow();
  e.duration = duration;
  e.connections = count;
  e.server = context_.options.name;
  e.span_id = slot_->span_id;
  e.parent_span_id = context_.listener_span_id;
  e.acceptor = slot_->index;
  e.error = error;
  Telemetry::Emit(e);
}

bool Acceptor::WaitForBudget() {
  const int limit = context_.options.num_connections;
  if (limit == ServerOptions::kUnlimited) return true;
  for (int attempt = 0; slot_->live.load(std::memory_order_acquire) >= limit; ++attempt) {
    if (attempt >= context_.options.max_connections_retry_count) return false;
    if (!listeners_.SleepUnlessStopping(context_.options.max_connections_retry_wait)) {
      return false;
    }
  }
  return true;
}

void Acceptor::Run() {
  const absl::Duration started = MonotonicNow();
  Emit(TelemetryEventType::kAcceptorStart);
  uint64_t accepted = 0;
  size_t next_worker = static_cast<size_t>(slot_->index);
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
      if (absl::IsResourceExhausted(error)) {
        Emit(TelemetryEventType::kAcceptorEmfile, &error);
        listeners_.SleepUnlessStopping(kEmfileBackoff);
      } else if (IsConnectionLost(error)) {
        Emit(TelemetryEventType::kAcceptorEconnaborted, &error);
      } else {
        Emit(TelemetryEventType::kAcceptorAcceptError, &error);
        listeners_.SleepUnlessStopping(kAcceptErrorBackoff);
      }
      continue;
    }
    ++accepted;
    if (!WaitForBudget()) {
      // Full for the whole retry window (or stopping): turn the client away.
      const absl::Status full = absl::ResourceExhaustedError(
          "accept: too many connections (num_connections reached)");
      Emit(TelemetryEventType::kAcceptorSpawnError, &full);
      (*socket)->Close();
      continue;
    }
    slot_->live.fetch_add(1, std::memory_order_acq_rel);
    slot_->accepted.fetch_add(1, std::memory_order_relaxed);
    workers_[next_worker++ % workers_.size()]->Adopt(*std::move(socket), slot_);
  }
  Emit(TelemetryEventType::kAcceptorStop, nullptr, accepted, MonotonicNow() - started);
}

}  // namespace islet
