// What an emission point costs: an event no sink wants (one atomic load), and an event
// delivered to trivial sinks from one or several threads at once.
//
//   bazel run -c opt //server:telemetry_benchmark

#include <cstdint>
#include <memory>

#include "benchmark/benchmark.h"
#include "server/telemetry.h"

namespace islet {
namespace {

// Attaches `sinks` trivial sinks that want connection.async_recv only.
class Sinks {
 public:
  explicit Sinks(int sinks) {
    for (int i = 0; i < sinks && i < kMax; ++i) {
      ids_[count_++] = Telemetry::Attach(
          [](const TelemetryEvent& e) { benchmark::DoNotOptimize(e.bytes); },
          TelemetryBit(TelemetryEventType::kConnectionAsyncRecv));
    }
  }
  ~Sinks() {
    for (int i = 0; i < count_; ++i) Telemetry::Detach(ids_[i]);
  }

 private:
  static constexpr int kMax = 8;
  uint64_t ids_[kMax] = {};
  int count_ = 0;
};

void EmitPoint(TelemetryEventType type) {
  if (!Telemetry::Enabled(type)) return;
  TelemetryEvent e{type};
  e.server = "bench";
  e.bytes = 1;
  Telemetry::Emit(e);
}

// Set up once per run, before the benchmark's threads start.
std::unique_ptr<Sinks> attached;
void AttachOne(const benchmark::State&) { attached = std::make_unique<Sinks>(1); }
void AttachRange(const benchmark::State& state) {
  attached = std::make_unique<Sinks>(static_cast<int>(state.range(0)));
}
void DetachAll(const benchmark::State&) { attached.reset(); }

// A type nobody wants, while a sink is attached for another type.
void BM_EmitUnwanted(benchmark::State& state) {
  for (auto _ : state) EmitPoint(TelemetryEventType::kConnectionSend);
}
BENCHMARK(BM_EmitUnwanted)->Setup(AttachOne)->Teardown(DetachAll)->ThreadRange(1, 2)->UseRealTime();

// Delivered to state.range(0) sinks.
void BM_EmitWanted(benchmark::State& state) {
  for (auto _ : state) EmitPoint(TelemetryEventType::kConnectionAsyncRecv);
}
BENCHMARK(BM_EmitWanted)
    ->Setup(AttachRange)
    ->Teardown(DetachAll)
    ->Arg(1)
    ->Arg(4)
    ->ThreadRange(1, 2)
    ->UseRealTime();

}  // namespace
}  // namespace islet

BENCHMARK_MAIN();
