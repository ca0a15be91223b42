// How connections end, over real loopback sockets: exactly one final callback for every
// kind of ending, Connection::Close inside a callback, failed transport switches, a
// factory that returns no handler, and the connection's telemetry from start to stop.
// Part of the port of Thousand Island's handler_test.exs (with handler_results_test,
// handler_timeouts_test and handler_messages_test).
#include <any>
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/connection.h"
#include "server/handler.h"
#include "server/handler_test_fixture.h"
#include "server/scripted_handler.h"
#include "server/server.h"
#include "server/telemetry.h"
#include "server/test_util.h"
#include "transport/socket_options.h"
#include "transport/tcp_transport.h"

namespace islet {
namespace {

using ::testing::ElementsAre;
using ::testing::Optional;
using testutil::Ctx;
using testutil::Echo;
using testutil::HandlerTest;
using testutil::IsOkAndHolds;
using testutil::kDeadline;
using testutil::RecordedEvent;
using testutil::Returns;
using testutil::SendThen;
using testutil::StatusIs;

// ---- How connections end: exactly one final callback ----

TEST_F(HandlerTest, PeerCloseCallsHandleCloseOnce) {
  ASSERT_TRUE(Start(Options()));
  auto client = ConnectAs(1);
  ASSERT_NE(client, nullptr);
  client->Close();
  EXPECT_THAT(Endings(1), ElementsAre("close"));
  EXPECT_FALSE(StopEvent().error.has_value());
}

TEST_F(HandlerTest, PeerResetIsAnErrorNotAClose) {
  script_.data = Echo;
  ASSERT_TRUE(Start(Options()));
  auto client = ConnectAs(1);
  ASSERT_NE(client, nullptr);
  // Make sure the handler is idle, waiting for data, when the reset arrives.
  auto echoed = testutil::RoundTrip(*client, "ping", kDeadline);
  ASSERT_TRUE(echoed.ok()) << echoed.status();
  // SO_LINGER 0: close(2) sends RST instead of FIN.
  ASSERT_TRUE(client->SetOptions({SocketOption::Linger(absl::ZeroDuration())}).ok());
  client->Close();
  EXPECT_THAT(Endings(1), ElementsAre("error:ABORTED"));
  EXPECT_THAT(StopEvent().error, Optional(StatusIs(absl::StatusCode::kAborted)));
  EXPECT_EQ(telemetry_->Count(TelemetryEventType::kConnectionRecvError), 1);
}

TEST_F(HandlerTest, ServerStopCallsHandleShutdownWhichMayStillSend) {
  script_.shutdown = [](const Ctx&, Connection& conn) {
    EXPECT_TRUE(conn.Send("GOODBYE").ok());
  };
  ASSERT_TRUE(Start(Options()));
  auto client = ConnectAs(1);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(server_->Stop().ok());
  ASSERT_THAT(testutil::ReadToEof(*client, kDeadline), IsOkAndHolds("GOODBYE"));
  EXPECT_THAT(Endings(1), ElementsAre("shutdown"));
  EXPECT_FALSE(StopEvent().error.has_value());
}

TEST_F(HandlerTest, EveryKindOfEndingRunsExactlyOneFinalCallback) {
  // Five connections on one server, each ending a different way; each gets exactly
  // its own ending, once.
  script_.data = [](const Ctx& ctx, absl::string_view data, Connection& conn) {
    if (data == "close") return HandlerResult::Close();
    if (data == "error") return HandlerResult::Error(absl::DataLossError("asked to"));
    if (data == "timeout") return HandlerResult::ContinueWithTimeout(absl::Milliseconds(100));
    if (data == "self-close") conn.Close();
    return HandlerResult::Continue();
  };
  ASSERT_TRUE(Start(Options()));
  struct Case {
    const char* send;  // nullptr: the client closes
    const char* ending;
  };
  const Case cases[] = {{"close", "close"},
                        {"error", "error:DATA_LOSS"},
                        {"timeout", "timeout"},
                        {"self-close", "close"},
                        {nullptr, "close"}};
  std::vector<std::unique_ptr<TcpSocket>> clients;
  for (int i = 0; i < 5; ++i) {
    clients.push_back(ConnectAs(i + 1));
    ASSERT_NE(clients.back(), nullptr);
    if (cases[i].send != nullptr) {
      ASSERT_TRUE(clients.back()->Send(cases[i].send).ok());
    } else {
      clients.back()->Close();
    }
  }
  for (int i = 0; i < 5; ++i) {
    EXPECT_THAT(Endings(i + 1), ElementsAre(cases[i].ending)) << "connection " << i + 1;
  }
  // And the stop that follows adds nothing: every connection is already gone.
  ASSERT_TRUE(server_->Stop().ok());
  for (int i = 0; i < 5; ++i) EXPECT_THAT(Endings(i + 1), ElementsAre(cases[i].ending));
  EXPECT_EQ(telemetry_->Count(TelemetryEventType::kConnectionStart), 5);
  EXPECT_EQ(telemetry_->Count(TelemetryEventType::kConnectionStop), 5);
}

// ---- Connection::Close and transport switches ----

TEST_F(HandlerTest, ConnectionCloseInsideHandleDataClosesAfterTheCallbackAndFlushes) {
  script_.data = [](const Ctx& ctx, absl::string_view, Connection& conn) {
    EXPECT_TRUE(conn.Send("bye").ok());
    conn.Close();
    ctx.Note("still-in-callback");
    EXPECT_TRUE(conn.Send(" now").ok());  // still allowed: the close comes after
    return HandlerResult::Continue();     // the close wins over Continue
  };
  auto client = StartAndConnect();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Send("ping").ok());
  ASSERT_THAT(testutil::ReadToEof(*client, kDeadline), IsOkAndHolds("bye now"));
  EXPECT_THAT(Endings(1), ElementsAre("close"));
  EXPECT_THAT(EventsOf(1),
              ElementsAre("connection", "data:ping", "still-in-callback", "close", "gone"));
}

TEST_F(HandlerTest, FailedTransportSwitchFlushesFirstThenCallsHandleError) {
  // TCP cannot take over a socket: the upgrade fails, as Thousand Island's
  // "it should handle upgrade errors" does with unsupported_upgrade.
  static TcpTransport tcp;
  script_.connection = SendThen("HELLO", HandlerResult::SwitchTransport(&tcp));
  auto client = StartAndConnect();
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(testutil::ReadToEof(*client, kDeadline), IsOkAndHolds("HELLO"));
  EXPECT_THAT(Endings(1), ElementsAre("error:UNIMPLEMENTED"));
}

TEST_F(HandlerTest, SwitchTransportWithoutATransportIsAnError) {
  script_.connection = Returns(HandlerResult::SwitchTransport(nullptr));
  auto client = StartAndConnect();
  ASSERT_NE(client, nullptr);
  EXPECT_TRUE(testutil::ReadToEof(*client, kDeadline).ok());
  EXPECT_THAT(Endings(1), ElementsAre("error:INVALID_ARGUMENT"));
}

// ---- Handler factory ----

TEST_F(HandlerTest, AFactoryReturningNullClosesThatClientAndTheServerKeepsServing) {
  auto calls = std::make_shared<std::atomic<int>>(0);
  ServerOptions options = testutil::LoopbackOptions(
      [this, calls](const std::any&) -> std::unique_ptr<Handler> {
        if (++*calls == 1) return nullptr;
        return MakeHandler();
      });
  script_.data = Echo;
  ASSERT_TRUE(Start(std::move(options)));
  auto refused = Connect();
  ASSERT_NE(refused, nullptr);
  ASSERT_THAT(testutil::ReadToEof(*refused, kDeadline), IsOkAndHolds(""));
  for (int i = 0; i < 2; ++i) {
    auto client = Connect();
    ASSERT_NE(client, nullptr);
    ASSERT_THAT(testutil::RoundTrip(*client, "ping", kDeadline), IsOkAndHolds("ping"));
  }
  EXPECT_EQ(calls->load(), 3);
  // The refused one got no span at all; the others one start each.
  EXPECT_EQ(telemetry_->Count(TelemetryEventType::kConnectionStart), 2);
  EXPECT_TRUE(testutil::WaitFor([&] { return server_->active_connections() == 0; }, kDeadline));
}

// ---- Telemetry ----

TEST_F(HandlerTest, TelemetryStartReadyAsyncRecvSendStopInOrderWithStats) {
  script_.data = SendThen("HELLO", HandlerResult::Close());
  auto client = StartAndConnect();
  ASSERT_NE(client, nullptr);
  auto client_local = client->LocalInfo();
  ASSERT_TRUE(client_local.ok());
  ASSERT_TRUE(client->Send("ping").ok());
  ASSERT_THAT(testutil::ReadToEof(*client, kDeadline), IsOkAndHolds("HELLO"));
  RecordedEvent stop = StopEvent();

  std::vector<RecordedEvent> events = ConnectionTelemetry();
  std::vector<std::string> names;
  for (const RecordedEvent& e : events) names.push_back(e.name);
  EXPECT_THAT(names, ElementsAre("connection.start", "connection.ready", "connection.async_recv",
                                 "connection.send", "connection.stop"));
  ASSERT_EQ(events.size(), 5u);
  const RecordedEvent& start = events[0];
  EXPECT_EQ(events[2].bytes, 4u);  // async_recv "ping"
  EXPECT_EQ(events[3].bytes, 5u);  // send "HELLO"
  for (const RecordedEvent& e : events) {
    EXPECT_EQ(e.connection_id, start.connection_id);
    EXPECT_EQ(e.span_id, start.span_id);
    EXPECT_EQ(e.parent_span_id, start.parent_span_id);
  }
  // The span's parent is the acceptor's span; the remote end is the client.
  std::vector<RecordedEvent> acceptors = telemetry_->Events(TelemetryEventType::kAcceptorStart);
  ASSERT_EQ(acceptors.size(), 1u);
  EXPECT_EQ(start.parent_span_id, acceptors[0].span_id);
  ASSERT_TRUE(start.remote.has_value());
  EXPECT_EQ(start.remote->address, client_local->address);
  EXPECT_EQ(start.remote->port, client_local->port);
  ASSERT_TRUE(stop.remote.has_value());
  EXPECT_EQ(*stop.remote, *start.remote);
  // Monotonic order, and the stop's duration spans the connection.
  for (size_t i = 1; i < events.size(); ++i) {
    EXPECT_GE(events[i].monotonic_time, events[i - 1].monotonic_time);
  }
  EXPECT_GT(stop.duration, absl::ZeroDuration());
  EXPECT_EQ(stop.duration, stop.monotonic_time - start.monotonic_time);
  // What crossed the wire: 4 bytes in, 5 out, in one call each.
  EXPECT_FALSE(stop.error.has_value());
  ASSERT_TRUE(stop.stats.has_value());
  EXPECT_EQ(stop.stats->bytes_received, 4u);
  EXPECT_EQ(stop.stats->receive_calls, 1u);
  EXPECT_EQ(stop.stats->bytes_sent, 5u);
  EXPECT_EQ(stop.stats->send_calls, 1u);
}

TEST_F(HandlerTest, TelemetryStopAfterPeerCloseHasTheStatsAndNoError) {
  script_.connection = SendThen("HELLO", HandlerResult::Continue());
  script_.data = Echo;
  auto client = StartAndConnect();
  ASSERT_NE(client, nullptr);
  auto hello = client->Recv(5, kDeadline);
  ASSERT_TRUE(hello.ok()) << hello.status();
  auto echoed = testutil::RoundTrip(*client, "0123456789", kDeadline);
  ASSERT_TRUE(echoed.ok()) << echoed.status();
  client->Close();
  RecordedEvent stop = StopEvent();
  EXPECT_FALSE(stop.error.has_value());
  ASSERT_TRUE(stop.stats.has_value());
  EXPECT_EQ(stop.stats->bytes_received, 10u);
  EXPECT_EQ(stop.stats->bytes_sent, 15u);
  EXPECT_EQ(telemetry_->Count(TelemetryEventType::kConnectionStart), 1);
  EXPECT_EQ(telemetry_->Count(TelemetryEventType::kConnectionReady), 1);
}

TEST_F(HandlerTest, TelemetryStopWithAnErrorResultCarriesTheErrorAndZeroStats) {
  script_.connection = Returns(HandlerResult::Error(absl::AbortedError("nope")));
  auto client = StartAndConnect();
  ASSERT_NE(client, nullptr);
  EXPECT_TRUE(testutil::ReadToEof(*client, kDeadline).ok());
  RecordedEvent stop = StopEvent();
  EXPECT_THAT(stop.error, Optional(absl::AbortedError("nope")));
  ASSERT_TRUE(stop.stats.has_value());
  EXPECT_EQ(stop.stats->bytes_received, 0u);
  EXPECT_EQ(stop.stats->receive_calls, 0u);
  EXPECT_EQ(stop.stats->bytes_sent, 0u);
  EXPECT_EQ(stop.stats->send_calls, 0u);
}

}  // namespace
}  // namespace islet
