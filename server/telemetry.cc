#include "server/telemetry.h"

#include <memory>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace islet {
namespace {

struct Attached {
  uint64_t id;
  TelemetryMask interest;
  TelemetrySink sink;
};
using SinkList = std::vector<Attached>;

// Copy-on-write: Emit takes a reference to the current list and runs the sinks without
// holding the lock, so a sink may attach or detach others.
struct Registry {
  absl::Mutex mu;
  std::shared_ptr<const SinkList> sinks ABSL_GUARDED_BY(mu) = std::make_shared<SinkList>();
  uint64_t next_id ABSL_GUARDED_BY(mu) = 1;
};

Registry& GetRegistry() {
  static Registry* registry = new Registry();  // never destroyed: emitted into at exit
  return *registry;
}

std::atomic<uint64_t> next_span_id{1};

}  // namespace

std::atomic<TelemetryMask> Telemetry::wanted_{0};

namespace {

// Publishes a new sink list and the union of what its sinks want.
void Publish(Registry& r, std::shared_ptr<SinkList> next, std::atomic<TelemetryMask>& wanted)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(r.mu) {
  TelemetryMask all = 0;
  for (const Attached& a : *next) all |= a.interest;
  r.sinks = std::move(next);
  wanted.store(all, std::memory_order_relaxed);
}

}  // namespace

uint64_t Telemetry::Attach(TelemetrySink sink, TelemetryMask interest) {
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  auto next = std::make_shared<SinkList>(*r.sinks);
  const uint64_t id = r.next_id++;
  next->push_back({id, interest, std::move(sink)});
  Publish(r, std::move(next), wanted_);
  return id;
}

void Telemetry::Detach(uint64_t id) {
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  auto next = std::make_shared<SinkList>();
  for (const Attached& a : *r.sinks) {
    if (a.id != id) next->push_back(a);
  }
  Publish(r, std::move(next), wanted_);
}

void Telemetry::SetInterest(uint64_t id, TelemetryMask interest) {
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  auto next = std::make_shared<SinkList>(*r.sinks);
  for (Attached& a : *next) {
    if (a.id == id) a.interest = interest;
  }
  Publish(r, std::move(next), wanted_);
}

void Telemetry::Emit(const TelemetryEvent& event) {
  Registry& r = GetRegistry();
  std::shared_ptr<const SinkList> sinks;
  {
    absl::MutexLock lock(&r.mu);
    sinks = r.sinks;
  }
  const TelemetryMask bit = TelemetryBit(event.type);
  for (const Attached& a : *sinks) {
    if ((a.interest & bit) != 0) a.sink(event);
  }
}

uint64_t Telemetry::NewSpanId() { return next_span_id.fetch_add(1, std::memory_order_relaxed); }

absl::string_view TelemetryEventName(TelemetryEventType type) {
  switch (type) {
    case TelemetryEventType::kListenerStart: return "listener.start";
    case TelemetryEventType::kListenerStop: return "listener.stop";
    case TelemetryEventType::kAcceptorStart: return "acceptor.start";
    case TelemetryEventType::kAcceptorStop: return "acceptor.stop";
    case TelemetryEventType::kAcceptorSpawnError: return "acceptor.spawn_error";
    case TelemetryEventType::kAcceptorEconnaborted: return "acceptor.econnaborted";
    case TelemetryEventType::kAcceptorAcceptError: return "acceptor.accept_error";
    case TelemetryEventType::kAcceptorEmfile: return "acceptor.emfile";
    case TelemetryEventType::kConnectionStart: return "connection.start";
    case TelemetryEventType::kConnectionStop: return "connection.stop";
    case TelemetryEventType::kConnectionReady: return "connection.ready";
    case TelemetryEventType::kConnectionAsyncRecv: return "connection.async_recv";
    case TelemetryEventType::kConnectionRecv: return "connection.recv";
    case TelemetryEventType::kConnectionRecvError: return "connection.recv_error";
    case TelemetryEventType::kConnectionSend: return "connection.send";
    case TelemetryEventType::kConnectionSendError: return "connection.send_error";
    case TelemetryEventType::kConnectionSendfile: return "connection.sendfile";
    case TelemetryEventType::kConnectionSendfileError: return "connection.sendfile_error";
    case TelemetryEventType::kConnectionSocketShutdown: return "connection.socket_shutdown";
  }
  return "unknown";
}

}  // namespace islet
