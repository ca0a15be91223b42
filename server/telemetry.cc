#include "server/telemetry.h"

#include <memory>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace islet {
namespace {

struct Attached {
  uint64_t id;
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

std::atomic<bool> Telemetry::enabled_{false};

uint64_t Telemetry::Attach(TelemetrySink sink) {
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  auto next = std::make_shared<SinkList>(*r.sinks);
  const uint64_t id = r.next_id++;
  next->push_back({id, std::move(sink)});
  r.sinks = std::move(next);
  enabled_.store(true, std::memory_order_relaxed);
  return id;
}

void Telemetry::Detach(uint64_t id) {
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  auto next = std::make_shared<SinkList>();
  for (const Attached& a : *r.sinks) {
    if (a.id != id) next->push_back(a);
  }
  enabled_.store(!next->empty(), std::memory_order_relaxed);
  r.sinks = std::move(next);
}

void Telemetry::Emit(const TelemetryEvent& event) {
  Registry& r = GetRegistry();
  std::shared_ptr<const SinkList> sinks;
  {
    absl::MutexLock lock(&r.mu);
    sinks = r.sinks;
  }
  for (const Attached& a : *sinks) a.sink(event);
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
