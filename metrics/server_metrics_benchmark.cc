// What the metrics sink costs per event: an emission point of an event ServerMetrics
// records (connection.async_recv, as every read of every request), with the sink
// attached against with none, from one thread and from two (each its own worker
// shard). The per-request overhead is about two such events (a read and a send).
//
//   bazel run -c opt //metrics:server_metrics_benchmark

#include <cstdint>
#include <memory>

#include "benchmark/benchmark.h"
#include "metrics/server_metrics.h"
#include "server/telemetry.h"

namespace islet {
namespace {

void EmitRead(int worker) {
  if (!Telemetry::Enabled(TelemetryEventType::kConnectionAsyncRecv)) return;
  TelemetryEvent e{TelemetryEventType::kConnectionAsyncRecv};
  e.server = "bench";
  e.worker = worker;
  e.bytes = 100;
  Telemetry::Emit(e);
}

std::unique_ptr<ServerMetrics> metrics;
void Attach(const benchmark::State&) { metrics = std::make_unique<ServerMetrics>("bench"); }
void Detach(const benchmark::State&) { metrics.reset(); }

void BM_ReadWithoutSink(benchmark::State& state) {
  for (auto _ : state) EmitRead(state.thread_index());
}
BENCHMARK(BM_ReadWithoutSink)->ThreadRange(1, 2)->UseRealTime();

void BM_ReadWithSink(benchmark::State& state) {
  for (auto _ : state) EmitRead(state.thread_index());
}
BENCHMARK(BM_ReadWithSink)->Setup(Attach)->Teardown(Detach)->ThreadRange(1, 2)->UseRealTime();

// A connection's start and stop (the stop observes the duration histogram).
void BM_ConnectionWithSink(benchmark::State& state) {
  TelemetryEvent start{TelemetryEventType::kConnectionStart};
  start.server = "bench";
  start.worker = state.thread_index();
  TelemetryEvent stop = start;
  stop.type = TelemetryEventType::kConnectionStop;
  stop.detail = "close";
  stop.duration = absl::Milliseconds(20);
  for (auto _ : state) {
    Telemetry::Emit(start);
    Telemetry::Emit(stop);
  }
}
BENCHMARK(BM_ConnectionWithSink)->Setup(Attach)->Teardown(Detach)->ThreadRange(1, 2)->UseRealTime();

}  // namespace
}  // namespace islet

BENCHMARK_MAIN();
