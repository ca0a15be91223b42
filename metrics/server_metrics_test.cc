#include "metrics/server_metrics.h"

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "server/telemetry.h"
#include "server/test_util.h"
#include "transport/tcp_transport.h"

namespace islet {
namespace {

// Emits one synthetic event of `server`.
void Emit(const std::string& server, TelemetryEventType type, int worker = -1,
          absl::string_view detail = "", const absl::Status* error = nullptr,
          absl::Duration duration = absl::ZeroDuration(), uint64_t bytes = 0) {
  TelemetryEvent e{type};
  e.server = server;
  e.worker = worker;
  e.detail = detail;
  e.error = error;
  e.duration = duration;
  e.bytes = bytes;
  Telemetry::Emit(e);
}

uint64_t Closed(const MetricsSnapshot& s, ConnectionEnding ending) {
  return s.closed[static_cast<int>(ending)];
}
uint64_t Failed(const MetricsSnapshot& s, HandshakeFailure reason) {
  return s.handshake_failures[static_cast<int>(reason)];
}

TEST(ServerMetricsTest, CountsEachEventOfItsServerOnly) {
  const std::string name = testutil::UniqueName("metrics");
  ServerMetrics metrics(name);
  const absl::Status timeout = absl::DeadlineExceededError("handshake: too slow");
  const absl::Status refused = absl::UnauthenticatedError("no certificate");
  const absl::Status alert = absl::AbortedError("TLS alert");
  const absl::Status gone = absl::OutOfRangeError("peer closed");
  const absl::Status shed = absl::ResourceExhaustedError("output budget");
  for (int i = 0; i < 7; ++i) Emit(name, TelemetryEventType::kConnectionStart, i % 2);
  Emit(name, TelemetryEventType::kConnectionStop, 0, "close", nullptr, absl::Milliseconds(3));
  Emit(name, TelemetryEventType::kConnectionStop, 1, "timeout", nullptr, absl::Seconds(2));
  Emit(name, TelemetryEventType::kConnectionStop, 0, "handshake", &timeout, absl::Seconds(5));
  Emit(name, TelemetryEventType::kConnectionStop, 0, "handshake", &refused);
  Emit(name, TelemetryEventType::kConnectionStop, 1, "handshake", &alert);
  Emit(name, TelemetryEventType::kConnectionStop, 1, "error", &shed, absl::Hours(2));
  Emit(name, TelemetryEventType::kConnectionReady, 0, "", nullptr, absl::Microseconds(1500));
  Emit(name, TelemetryEventType::kConnectionReady, 1);  // TCP: no handshake to time
  Emit(name, TelemetryEventType::kConnectionAsyncRecv, 0, "", nullptr, absl::ZeroDuration(), 100);
  Emit(name, TelemetryEventType::kConnectionRecv, 1, "", nullptr, absl::ZeroDuration(), 20);
  Emit(name, TelemetryEventType::kConnectionSend, 1, "", nullptr, absl::ZeroDuration(), 300);
  Emit(name, TelemetryEventType::kConnectionSendfile, 0, "", nullptr, absl::ZeroDuration(), 4000);
  Emit(name, TelemetryEventType::kAcceptorEmfile, -1, "", &shed);
  Emit(name, TelemetryEventType::kAcceptorEmfile, -1, "", &shed);
  Emit(name, TelemetryEventType::kAcceptorSpawnError, -1, "", &shed);
  Emit(name, TelemetryEventType::kAcceptorEconnaborted, -1, "", &gone);
  Emit(name, TelemetryEventType::kAcceptorAcceptError, -1, "", &gone);
  // Another server's events are not this one's.
  Emit(name + "-other", TelemetryEventType::kConnectionStart, 0);
  Emit(name + "-other", TelemetryEventType::kConnectionAsyncRecv, 0, "", nullptr,
       absl::ZeroDuration(), 1);

  const MetricsSnapshot s = metrics.Snapshot();
  EXPECT_EQ(s.server, name);
  EXPECT_EQ(s.accepted, 7u);
  EXPECT_EQ(Closed(s, ConnectionEnding::kClose), 1u);
  EXPECT_EQ(Closed(s, ConnectionEnding::kTimeout), 1u);
  EXPECT_EQ(Closed(s, ConnectionEnding::kShutdown), 0u);
  EXPECT_EQ(Closed(s, ConnectionEnding::kError), 4u);  // three handshakes and the shed
  EXPECT_EQ(Failed(s, HandshakeFailure::kTimeout), 1u);
  EXPECT_EQ(Failed(s, HandshakeFailure::kCertificate), 1u);
  EXPECT_EQ(Failed(s, HandshakeFailure::kProtocol), 1u);
  EXPECT_EQ(Failed(s, HandshakeFailure::kPeerClosed), 0u);
  EXPECT_EQ(s.output_sheds, 1u);
  EXPECT_EQ(s.received_bytes, 120u);
  EXPECT_EQ(s.sent_bytes, 4300u);
  EXPECT_EQ(s.accept_errors[static_cast<int>(AcceptErrorKind::kEmfile)], 2u);
  EXPECT_EQ(s.accept_errors[static_cast<int>(AcceptErrorKind::kSpawnError)], 1u);
  EXPECT_EQ(s.accept_errors[static_cast<int>(AcceptErrorKind::kEconnaborted)], 1u);
  EXPECT_EQ(s.accept_errors[static_cast<int>(AcceptErrorKind::kAcceptError)], 1u);
  // Worker 0: four started, three stopped; worker 1: three started, three stopped.
  EXPECT_EQ(s.live, 1);
  ASSERT_EQ(s.live_per_worker.size(), 2u);
  EXPECT_EQ(s.live_per_worker[0], 1);
  EXPECT_EQ(s.live_per_worker[1], 0);

  // Durations: 3 ms, 0, 0, 2 s, 5 s, 2 h.
  const HistogramSnapshot& d = s.connection_duration;
  ASSERT_EQ(d.bounds.size(), kConnectionDurationBuckets.size());
  ASSERT_EQ(d.cumulative.size(), d.bounds.size());
  EXPECT_EQ(d.count, 6u);
  EXPECT_EQ(d.cumulative[0], 3u);                   // <= 10 ms
  EXPECT_EQ(d.cumulative[4], 3u);                   // <= 1 s
  EXPECT_EQ(d.cumulative[5], 5u);                   // <= 5 s: 2 s, and 5 s on the bound
  EXPECT_EQ(d.cumulative.back(), 5u);               // 2 h is above an hour
  EXPECT_NEAR(d.sum, 0.003 + 2 + 5 + 7200, 1e-6);
  // One handshake timed (1.5 ms); the TCP ready has no duration and is not observed.
  const HistogramSnapshot& h = s.handshake_duration;
  EXPECT_EQ(h.count, 1u);
  EXPECT_EQ(h.cumulative[0], 0u);  // <= 1 ms
  EXPECT_EQ(h.cumulative[1], 1u);  // <= 2.5 ms
  EXPECT_NEAR(h.sum, 0.0015, 1e-9);
}

TEST(ServerMetricsTest, WorkersCountInShardsOfTheirOwnAndAddUp) {
  const std::string name = testutil::UniqueName("metrics");
  ServerMetrics metrics(name);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        Emit(name, TelemetryEventType::kConnectionStart, t);
        Emit(name, TelemetryEventType::kConnectionAsyncRecv, t, "", nullptr,
             absl::ZeroDuration(), 3);
        if (i % 2 == 0) Emit(name, TelemetryEventType::kConnectionStop, t, "close");
      }
    });
  }
  // Snapshots while they run: never more stopped than started.
  for (int i = 0; i < 50; ++i) {
    const MetricsSnapshot s = metrics.Snapshot();
    EXPECT_GE(s.live, 0);
    EXPECT_LE(Closed(s, ConnectionEnding::kClose), s.accepted);
  }
  for (std::thread& t : threads) t.join();
  const MetricsSnapshot s = metrics.Snapshot();
  EXPECT_EQ(s.accepted, uint64_t{kThreads} * kPerThread);
  EXPECT_EQ(s.received_bytes, uint64_t{kThreads} * kPerThread * 3);
  EXPECT_EQ(s.live, kThreads * kPerThread / 2);
  ASSERT_EQ(s.live_per_worker.size(), size_t{kThreads});
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(s.live_per_worker[t], kPerThread / 2);
  EXPECT_EQ(s.connection_duration.count, uint64_t{kThreads} * kPerThread / 2);
}

TEST(ServerMetricsTest, DetachedWhenDestroyed) {
  const std::string name = testutil::UniqueName("metrics");
  auto metrics = std::make_unique<ServerMetrics>(name);
  EXPECT_TRUE(Telemetry::Enabled(TelemetryEventType::kConnectionStart));
  metrics.reset();
  // Nothing is left to receive the event (no crash under ASan: the sink is gone).
  Emit(name, TelemetryEventType::kConnectionStart, 0);
}

// A real server over loopback: what the sink counts matches what the clients did.
TEST(ServerMetricsTest, CountsARealServersConnectionsAndBytes) {
  ServerOptions options = testutil::LoopbackOptions(HandlerFactoryOf<testutil::EchoHandler>());
  options.read_timeout = absl::Seconds(30);
  ServerMetrics metrics(options.name);
  std::unique_ptr<Server> server = testutil::MustStart(std::move(options));
  ASSERT_NE(server, nullptr);

  std::vector<std::unique_ptr<TcpSocket>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(testutil::ConnectAndEcho(*server, "hello"));
    ASSERT_NE(clients.back(), nullptr);
  }
  // The send is counted once it returns, which may be after the client has the echo.
  ASSERT_TRUE(testutil::WaitFor([&] { return metrics.Snapshot().sent_bytes == 15; }));
  MetricsSnapshot s = metrics.Snapshot();
  EXPECT_EQ(s.accepted, 3u);
  EXPECT_EQ(s.live, 3);
  EXPECT_EQ(s.received_bytes, 15u);
  EXPECT_EQ(s.sent_bytes, 15u);
  EXPECT_EQ(s.listener, server->ListenerInfo()->ToString());
  int64_t per_worker = 0;
  for (int64_t n : s.live_per_worker) per_worker += n;
  EXPECT_EQ(per_worker, 3);
  EXPECT_EQ(s.handshake_duration.count, 0u) << "plain TCP has no handshake to time";

  // Two clients close: two "close" endings, with their durations observed.
  clients[0]->Close();
  clients[1]->Close();
  ASSERT_TRUE(testutil::WaitFor([&] {
    return Closed(metrics.Snapshot(), ConnectionEnding::kClose) == 2;
  }));
  s = metrics.Snapshot();
  EXPECT_EQ(s.live, 1);
  EXPECT_EQ(s.connection_duration.count, 2u);
  EXPECT_GT(s.connection_duration.sum, 0);

  // The stop ends the last one as a shutdown.
  ASSERT_TRUE(server->Stop().ok());
  s = metrics.Snapshot();
  EXPECT_EQ(Closed(s, ConnectionEnding::kShutdown), 1u);
  EXPECT_EQ(s.live, 0);
  EXPECT_EQ(s.accepted, 3u);
}

}  // namespace
}  // namespace islet
