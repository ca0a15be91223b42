// Telemetry's attach and detach against emissions running on other threads: Detach
// waits for calls already inside the sink (so its owner may be destroyed right after),
// except from inside a sink, where it cannot wait and does not deadlock.

#include "server/telemetry.h"

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "server/telemetry_logger.h"
#include "server/test_util.h"
#include "transport/tcp_transport.h"

namespace islet {
namespace {

using testutil::kWait;

// An event of a type no server in this binary emits on its own while the test runs.
TelemetryEvent Probe(absl::string_view server) {
  TelemetryEvent e{TelemetryEventType::kConnectionSocketShutdown};
  e.server = server;
  return e;
}

// The regression: a logger made and destroyed over and over while connections churn on
// several worker threads. Before Detach waited, a worker could still be inside the
// destroyed logger's Write (ASan: heap-use-after-free).
TEST(TelemetryDetachTest, LoggerDestroyedWhileConnectionsChurnOnSeveralThreads) {
  ServerOptions options = testutil::LoopbackOptions(HandlerFactoryOf<testutil::EchoHandler>());
  options.num_workers = 3;
  options.num_acceptors = 2;
  std::unique_ptr<Server> server = testutil::MustStart(std::move(options));
  ASSERT_NE(server, nullptr);
  const SocketInfo where = *server->ListenerInfo();

  FILE* sink_file = std::fopen("/dev/null", "w");
  ASSERT_NE(sink_file, nullptr);
  std::atomic<bool> done{false};
  std::atomic<int> echoes{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 3; ++t) {
    clients.emplace_back([&] {
      // Bounded in count as well as by the flag, so a broken server cannot hang it.
      for (int i = 0; i < 20000 && !done.load(); ++i) {
        absl::StatusOr<std::unique_ptr<TcpSocket>> client = TcpSocket::Connect(where, kWait);
        if (!client.ok()) continue;
        if (testutil::RoundTrip(**client, "churn", kWait).ok()) echoes.fetch_add(1);
      }
    });
  }
  ASSERT_TRUE(testutil::WaitFor([&] { return echoes.load() >= 10; }));
  for (int i = 0; i < 300; ++i) {
    auto logger = std::make_unique<TelemetryLogger>(LogLevel::kDebug, sink_file);
    absl::SleepFor(absl::Microseconds(200));
    logger.reset();
  }
  done.store(true);
  for (std::thread& t : clients) t.join();
  EXPECT_GE(echoes.load(), 10);
  EXPECT_TRUE(server->Stop().ok());
  std::fclose(sink_file);
}

TEST(TelemetryTest, DetachWaitsForACallInProgressThenTheSinkNeverRunsAgain) {
  const std::string name = testutil::UniqueName();
  absl::Notification entered;
  absl::Notification release;
  std::atomic<int> calls{0};
  const uint64_t id = Telemetry::Attach([&](const TelemetryEvent& e) {
    if (e.server != name) return;
    calls.fetch_add(1);
    entered.Notify();
    release.WaitForNotification();
  });
  std::thread emitter([&] { Telemetry::Emit(Probe(name)); });
  entered.WaitForNotification();

  std::atomic<bool> detached{false};
  std::thread detacher([&] {
    Telemetry::Detach(id);
    detached.store(true);
  });
  // Whatever the timing, Detach cannot have returned while the call is still inside.
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_FALSE(detached.load());
  release.Notify();
  detacher.join();
  emitter.join();
  EXPECT_TRUE(detached.load());

  Telemetry::Emit(Probe(name));
  EXPECT_EQ(calls.load(), 1);
}

TEST(TelemetryTest, SinkThatDetachesItselfReturnsAndIsNotCalledAgain) {
  const std::string name = testutil::UniqueName();
  std::atomic<int> calls{0};
  std::atomic<uint64_t> id{0};
  id = Telemetry::Attach([&](const TelemetryEvent& e) {
    if (e.server != name) return;
    calls.fetch_add(1);
    Telemetry::Detach(id.load());
  });
  Telemetry::Emit(Probe(name));
  Telemetry::Emit(Probe(name));
  EXPECT_EQ(calls.load(), 1);
}

// Two threads inside the same sink, each detaching it: neither may wait for the other.
TEST(TelemetryTest, SinkDetachingItselfOnTwoThreadsAtOnceDoesNotDeadlock) {
  const std::string name = testutil::UniqueName();
  std::atomic<int> inside{0};
  std::atomic<uint64_t> id{0};
  id = Telemetry::Attach([&](const TelemetryEvent& e) {
    if (e.server != name) return;
    inside.fetch_add(1);
    // Both threads are in the sink before either detaches.
    const absl::Time deadline = absl::Now() + kWait;
    while (inside.load() < 2 && absl::Now() < deadline) std::this_thread::yield();
    Telemetry::Detach(id.load());
  });
  std::thread a([&] { Telemetry::Emit(Probe(name)); });
  std::thread b([&] { Telemetry::Emit(Probe(name)); });
  a.join();
  b.join();
  EXPECT_EQ(inside.load(), 2);
}

// A sink attached or detached while others emit on several threads sees whole calls
// only: every call that started has finished when Detach returns.
TEST(TelemetryTest, AttachAndDetachWhileSeveralThreadsEmit) {
  const std::string name = testutil::UniqueName();
  std::atomic<bool> done{false};
  std::vector<std::thread> emitters;
  for (int t = 0; t < 3; ++t) {
    emitters.emplace_back([&] {
      while (!done.load()) Telemetry::Emit(Probe(name));
    });
  }
  for (int i = 0; i < 500; ++i) {
    auto inside = std::make_unique<std::atomic<int>>(0);
    const uint64_t id = Telemetry::Attach([counter = inside.get(), &name](const TelemetryEvent& e) {
      if (e.server != name) return;
      counter->fetch_add(1);
      std::this_thread::yield();
      counter->fetch_sub(1);
    });
    Telemetry::Detach(id);
    EXPECT_EQ(inside->load(), 0);
    inside.reset();  // a call still running would now touch freed memory (ASan)
  }
  done.store(true);
  for (std::thread& t : emitters) t.join();
}

}  // namespace
}  // namespace islet
