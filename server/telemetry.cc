#include "server/telemetry.h"

#include <atomic>
#include <memory>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace islet {
namespace {

// Calls inside a sink, counted per thread group on a cache line of its own: threads
// emitting into one sink at once do not pass a counter between their caches.
constexpr int kShards = 8;
struct alignas(64) Running {
  std::atomic<uint32_t> calls{0};
};

// This thread's counter in every sink.
int ShardOfThisThread() {
  static std::atomic<int> next{0};
  thread_local const int shard = next.fetch_add(1, std::memory_order_relaxed) % kShards;
  return shard;
}

// One attached sink. Emit counts the calls inside it (`running`); Detach marks it
// `detached` and then waits for every count to reach zero. Each side writes its own
// counter or flag before it reads the other's (all sequentially consistent), so an
// emission either sees the mark and skips the sink, or Detach sees the call and waits.
struct Attached {
  Attached(uint64_t id, TelemetryMask interest, TelemetrySink sink)
      : id(id), interest(interest), sink(std::move(sink)) {}

  const uint64_t id;
  std::atomic<TelemetryMask> interest;
  // Destroyed by a Detach that waited: no call can be running or start then.
  TelemetrySink sink;
  std::atomic<bool> detached{false};
  Running running[kShards];
};
using SinkList = std::vector<std::shared_ptr<Attached>>;

// Copy-on-write: Attach and Detach publish a new list under the lock; an emitting
// thread keeps the list it saw last (ThreadView) and takes the lock only when
// `version` has moved, so emissions on different threads share no lock.
struct Registry {
  absl::Mutex mu;
  std::shared_ptr<const SinkList> sinks ABSL_GUARDED_BY(mu) = std::make_shared<SinkList>();
  uint64_t next_id ABSL_GUARDED_BY(mu) = 1;
  std::atomic<uint64_t> version{1};  // written under mu
};

Registry& GetRegistry() {
  static Registry* registry = new Registry();  // never destroyed: emitted into at exit
  return *registry;
}

struct ThreadView {
  uint64_t version = 0;
  std::shared_ptr<const SinkList> sinks;
};
thread_local ThreadView view;
// The sink calls this thread is inside: a sink may emit, attach or detach.
thread_local int sink_depth = 0;

std::atomic<uint64_t> next_span_id{1};

}  // namespace

std::atomic<TelemetryMask> Telemetry::wanted_{0};

namespace {

// Publishes `next` (or, when null, the same sinks with a changed interest) and the
// union of what its sinks want.
void Publish(Registry& r, std::shared_ptr<const SinkList> next,
             std::atomic<TelemetryMask>& wanted) ABSL_EXCLUSIVE_LOCKS_REQUIRED(r.mu) {
  if (next != nullptr) {
    r.sinks = std::move(next);
    r.version.fetch_add(1, std::memory_order_release);
  }
  TelemetryMask all = 0;
  for (const std::shared_ptr<Attached>& a : *r.sinks) {
    all |= a->interest.load(std::memory_order_relaxed);
  }
  wanted.store(all, std::memory_order_relaxed);
}

}  // namespace

uint64_t Telemetry::Attach(TelemetrySink sink, TelemetryMask interest) {
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  auto next = std::make_shared<SinkList>(*r.sinks);
  const uint64_t id = r.next_id++;
  next->push_back(std::make_shared<Attached>(id, interest, std::move(sink)));
  Publish(r, std::move(next), wanted_);
  return id;
}

void Telemetry::Detach(uint64_t id) {
  Registry& r = GetRegistry();
  std::shared_ptr<Attached> gone;
  {
    absl::MutexLock lock(&r.mu);
    auto next = std::make_shared<SinkList>();
    for (const std::shared_ptr<Attached>& a : *r.sinks) {
      if (a->id == id) {
        gone = a;
      } else {
        next->push_back(a);
      }
    }
    if (gone == nullptr) return;
    Publish(r, std::move(next), wanted_);
  }
  gone->detached.store(true);
  // Inside a sink, waiting could wait for a call that is waiting for this one (a sink
  // detaching itself on two threads at once): only new calls are stopped.
  if (sink_depth > 0) return;
  for (Running& r : gone->running) {
    for (uint32_t n = r.calls.load(); n != 0; n = r.calls.load()) r.calls.wait(n);
  }
  gone->sink = nullptr;
}

void Telemetry::SetInterest(uint64_t id, TelemetryMask interest) {
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  for (const std::shared_ptr<Attached>& a : *r.sinks) {
    if (a->id == id) a->interest.store(interest, std::memory_order_relaxed);
  }
  Publish(r, nullptr, wanted_);
}

void Telemetry::Emit(const TelemetryEvent& event) {
  Registry& r = GetRegistry();
  const SinkList* sinks;
  std::shared_ptr<const SinkList> held;
  if (sink_depth == 0) {
    if (view.version != r.version.load(std::memory_order_acquire)) {
      absl::MutexLock lock(&r.mu);
      view.sinks = r.sinks;
      view.version = r.version.load(std::memory_order_relaxed);
    }
    sinks = view.sinks.get();
  } else {
    // Emitted from inside a sink: the outer call is iterating this thread's view, which
    // must not be replaced under it.
    absl::MutexLock lock(&r.mu);
    held = r.sinks;
    sinks = held.get();
  }
  const TelemetryMask bit = TelemetryBit(event.type);
  const int shard = ShardOfThisThread();
  ++sink_depth;
  for (const std::shared_ptr<Attached>& a : *sinks) {
    if ((a->interest.load(std::memory_order_relaxed) & bit) == 0) continue;
    std::atomic<uint32_t>& calls = a->running[shard].calls;
    calls.fetch_add(1);
    if (!a->detached.load()) a->sink(event);
    if (calls.fetch_sub(1) == 1 && a->detached.load()) calls.notify_all();
  }
  --sink_depth;
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
    case TelemetryEventType::kServerOverload: return "server.overload";
  }
  return "unknown";
}

}  // namespace islet
