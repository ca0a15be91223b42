// Handler semantics over real loopback sockets: the port of Thousand Island's
// handler_test.exs (callback results, the one final callback, read timeouts, local
// messages, ContinueThen, telemetry), asserting what a client and the handler observe.
//
// Timing: no assertion depends on how long something took. Tests that must show that
// something did NOT happen use a witness: a second connection on the same (single)
// worker whose own deadline is later than the one under test, so the loop, which runs
// timers in deadline order, would have fired the wrong timeout first.
#include <any>
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/connection.h"
#include "server/handler.h"
#include "server/scripted_handler.h"
#include "server/server.h"
#include "server/telemetry.h"
#include "server/test_util.h"
#include "transport/tcp_transport.h"

namespace islet {
namespace {

using ::testing::ElementsAre;
using ::testing::Optional;
using testutil::Ctx;
using testutil::Echo;
using testutil::EventRecorder;
using testutil::IsOkAndHolds;
using testutil::kDeadline;
using testutil::MessageText;
using testutil::RecordedEvent;
using testutil::Returns;
using testutil::SendThen;
using testutil::StatusIs;
using testutil::WaitReadable;
using testutil::WaitReadableThen;

// The scripted handler of scripted_handler.h, one loopback server per test.
class HandlerTest : public testutil::ScriptedServerTest {
 protected:
  // Options() with `read_timeout`.
  ServerOptions OptionsWithReadTimeout(absl::Duration read_timeout) {
    ServerOptions options = Options();
    options.read_timeout = read_timeout;
    return options;
  }

  // The telemetry of the server's only connection (by connection id).
  std::vector<RecordedEvent> ConnectionTelemetry() const {
    std::vector<RecordedEvent> out;
    for (const RecordedEvent& e : telemetry_->Events()) {
      if (e.connection_id != 0) out.push_back(e);
    }
    return out;
  }
};

// ---- State passing ----

struct Greeting {
  std::string text;
  EventRecorder* rec;
};

// Built by HandlerFactoryOf from handler_options; keeps its state across callbacks.
class StatefulHandler : public Handler {
 public:
  explicit StatefulHandler(const std::any& options)
      : greeting_(std::any_cast<Greeting>(options)) {}
  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    absl::StrAppend(&seen_, data);
    if (seen_.size() < 8) return HandlerResult::Continue();  // "ping" then "pong"
    return HandlerResult::Close();
  }
  void HandleClose(Connection& conn) override {
    greeting_.rec->Record(absl::StrCat("closing with ", greeting_.text, " after ", seen_));
  }

 private:
  Greeting greeting_;
  std::string seen_;
};

TEST_F(HandlerTest, HandlerOptionsBecomeTheInitialStateAndStatePersistsAcrossCalls) {
  ServerOptions options = testutil::LoopbackOptions(HandlerFactoryOf<StatefulHandler>());
  options.handler_options = Greeting{"hello", &rec_};
  auto client = StartAndConnect(std::move(options));
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Send("ping").ok());
  ASSERT_TRUE(client->Send("pong").ok());
  ASSERT_THAT(testutil::ReadToEof(*client, kDeadline), IsOkAndHolds(""));
  EXPECT_TRUE(rec_.WaitFor("closing with hello after pingpong", kDeadline));
}

// ---- HandleConnection results ----

TEST_F(HandlerTest, HandleConnectionCanSendAndContinueKeepsTheConnectionOpen) {
  script_.connection = SendThen("HELLO", HandlerResult::Continue());
  script_.data = Echo;
  auto client = StartAndConnect();
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(client->Recv(5, kDeadline), IsOkAndHolds("HELLO"));
  // Still open: it answers, more than once.
  for (const char* ping : {"ping", "pong"}) {
    ASSERT_THAT(testutil::RoundTrip(*client, ping, kDeadline), IsOkAndHolds(ping));
  }
  EXPECT_FALSE(Saw(1, "gone"));
  client->Close();
  EXPECT_THAT(Endings(1), ElementsAre("close"));
}

TEST_F(HandlerTest, HandleConnectionCloseSendsThenClosesWithHandleClose) {
  script_.connection = SendThen("HELLO", HandlerResult::Close());
  auto client = StartAndConnect();
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(testutil::ReadToEof(*client, kDeadline), IsOkAndHolds("HELLO"));
  EXPECT_THAT(Endings(1), ElementsAre("close"));
  EXPECT_FALSE(StopEvent().error.has_value());
}

TEST_F(HandlerTest, HandleConnectionErrorCallsHandleErrorWithThatStatus) {
  const absl::Status nope = absl::PermissionDeniedError("nope");
  script_.connection = SendThen("HELLO", HandlerResult::Error(nope));
  script_.error = [nope](const Ctx& ctx, const absl::Status& error, Connection&) {
    EXPECT_EQ(error, nope);
    ctx.Note(absl::StrCat("message:", error.message()));
  };
  auto client = StartAndConnect();
  ASSERT_NE(client, nullptr);
  // What was sent before the error still arrives, then the close.
  ASSERT_THAT(testutil::ReadToEof(*client, kDeadline), IsOkAndHolds("HELLO"));
  EXPECT_THAT(Endings(1), ElementsAre("error:PERMISSION_DENIED"));
  EXPECT_TRUE(Saw(1, "message:nope"));
  // Not silent: connection.stop carries the error.
  EXPECT_THAT(StopEvent().error, Optional(nope));
}

TEST_F(HandlerTest, SilentTerminateOnErrorStillCallsHandleErrorButStopCarriesNoError) {
  script_.connection = Returns(HandlerResult::Error(absl::PermissionDeniedError("nope")));
  ServerOptions options = Options();
  options.silent_terminate_on_error = true;
  auto client = StartAndConnect(std::move(options));
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(testutil::ReadToEof(*client, kDeadline), IsOkAndHolds(""));
  EXPECT_THAT(Endings(1), ElementsAre("error:PERMISSION_DENIED"));
  EXPECT_FALSE(StopEvent().error.has_value());
}

TEST_F(HandlerTest, SilentTerminateDoesNotHideErrorsTheHandlerDidNotReturn) {
  // silent_terminate_on_error covers the handler's own Error results only: a
  // transport failure (here a failed transport switch) is still reported.
  static TcpTransport tcp;
  script_.connection = Returns(HandlerResult::SwitchTransport(&tcp));
  ServerOptions options = Options();
  options.silent_terminate_on_error = true;
  auto client = StartAndConnect(std::move(options));
  ASSERT_NE(client, nullptr);
  EXPECT_TRUE(testutil::ReadToEof(*client, kDeadline).ok());
  EXPECT_THAT(Endings(1), ElementsAre("error:UNIMPLEMENTED"));
  EXPECT_THAT(StopEvent().error, Optional(StatusIs(absl::StatusCode::kUnimplemented)));
}

// ---- HandleData results ----

TEST_F(HandlerTest, DataSentWhileHandleConnectionRunsIsDeliveredToHandleDataAfterwards) {
  script_.connection = [](const Ctx& ctx, Connection& conn) {
    EXPECT_TRUE(conn.Send("HELLO").ok());
    WaitReadable(conn);  // the client's bytes are here, and HandleData has not run
    ctx.Note("connection-returns");
    return HandlerResult::Continue();
  };
  script_.data = Echo;
  auto client = StartAndConnect();
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(client->Recv(5, kDeadline), IsOkAndHolds("HELLO"));
  ASSERT_TRUE(client->Send("early").ok());
  ASSERT_THAT(client->Recv(5, kDeadline), IsOkAndHolds("early"));
  EXPECT_THAT(EventsOf(1), ElementsAre("connection", "connection-returns", "data:early"));
}

TEST_F(HandlerTest, HandleDataContinueKeepsTheConnectionOpen) {
  script_.data = [](const Ctx&, absl::string_view data, Connection& conn) {
    EXPECT_TRUE(conn.Send(absl::StrCat("got ", data)).ok());
    return HandlerResult::Continue();
  };
  auto client = StartAndConnect();
  ASSERT_NE(client, nullptr);
  for (int i = 0; i < 5; ++i) {
    const std::string ping = absl::StrCat("ping", i);
    ASSERT_TRUE(client->Send(ping).ok());
    ASSERT_THAT(client->Recv(4 + ping.size(), kDeadline), IsOkAndHolds("got " + ping));
  }
  client->Close();
  EXPECT_THAT(Endings(1), ElementsAre("close"));
  EXPECT_EQ(rec_.Count("c1:connection"), 1);
}

TEST_F(HandlerTest, HandleDataCloseSendsThenClosesWithHandleClose) {
  script_.data = SendThen("bye", HandlerResult::Close());
  auto client = StartAndConnect();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Send("ping").ok());
  ASSERT_THAT(testutil::ReadToEof(*client, kDeadline), IsOkAndHolds("bye"));
  EXPECT_THAT(Endings(1), ElementsAre("close"));
}

TEST_F(HandlerTest, HandleDataErrorCallsHandleErrorWithThatStatus) {
  script_.data = Returns(HandlerResult::Error(absl::InvalidArgumentError("bad request")));
  script_.error = [](const Ctx& ctx, const absl::Status& error, Connection&) {
    ctx.Note(absl::StrCat("message:", error.message()));
  };
  auto client = StartAndConnect();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Send("ping").ok());
  ASSERT_THAT(testutil::ReadToEof(*client, kDeadline), IsOkAndHolds(""));
  EXPECT_THAT(Endings(1), ElementsAre("error:INVALID_ARGUMENT"));
  EXPECT_TRUE(Saw(1, "message:bad request"));
  EXPECT_THAT(StopEvent().error, Optional(absl::InvalidArgumentError("bad request")));
}

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

// ---- Read timeouts ----

TEST_F(HandlerTest, ReadTimeoutWithNoDataCallsHandleTimeoutAndTheClientSeesTheClose) {
  auto client = StartAndConnect(OptionsWithReadTimeout(absl::Milliseconds(150)));
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(testutil::ReadToEof(*client, kDeadline), IsOkAndHolds(""));
  EXPECT_THAT(Endings(1), ElementsAre("timeout"));
  EXPECT_THAT(StopEvent().error, Optional(StatusIs(absl::StatusCode::kDeadlineExceeded)));
}

TEST_F(HandlerTest, HandleTimeoutMaySendBeforeTheClose) {
  script_.timeout = [](const Ctx&, Connection& conn) { EXPECT_TRUE(conn.Send("idle").ok()); };
  auto client = StartAndConnect(OptionsWithReadTimeout(absl::Milliseconds(150)));
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(testutil::ReadToEof(*client, kDeadline), IsOkAndHolds("idle"));
  EXPECT_THAT(Endings(1), ElementsAre("timeout"));
}

TEST_F(HandlerTest, OneShotTimeoutFromHandleConnectionWhileWaitingForTheFirstData) {
  script_.connection = Returns(HandlerResult::ContinueWithTimeout(absl::Milliseconds(150)));
  auto client = StartAndConnect();  // read_timeout stays 60 s
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(testutil::ReadToEof(*client, kDeadline), IsOkAndHolds(""));
  EXPECT_THAT(Endings(1), ElementsAre("timeout"));
}

TEST_F(HandlerTest, OneShotTimeoutFromHandleDataWhileWaitingForMoreData) {
  script_.data = [](const Ctx&, absl::string_view data, Connection& conn) {
    EXPECT_TRUE(conn.Send(data).ok());
    return HandlerResult::ContinueWithTimeout(absl::Milliseconds(150));
  };
  auto client = StartAndConnect();  // read_timeout stays 60 s
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Send("ping").ok());
  ASSERT_THAT(testutil::ReadToEof(*client, kDeadline), IsOkAndHolds("ping"));
  EXPECT_THAT(Endings(1), ElementsAre("timeout"));
}

TEST_F(HandlerTest, OneShotTimeoutAppliesToThatWaitOnlyThenReadTimeoutAgain) {
  // The one-shot 60 s covers the first wait; HandleData's plain Continue must go back
  // to the 150 ms read_timeout (were the one-shot kept, nothing would end in 10 s).
  script_.connection = WaitReadableThen(HandlerResult::ContinueWithTimeout(absl::Seconds(60)));
  script_.data = Echo;
  auto client = StartAndConnect(OptionsWithReadTimeout(absl::Milliseconds(150)));
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Send("ping").ok());
  ASSERT_THAT(testutil::ReadToEof(*client, kDeadline), IsOkAndHolds("ping"));
  EXPECT_THAT(Endings(1), ElementsAre("timeout"));
}

// The witness tests below run one worker, so both connections share one loop, which
// fires timers in deadline order. Connection 1 enters its wait before connection 2
// even connects; connection 2 waits with the plain read_timeout. Were connection 1
// also waiting with read_timeout, it would time out first.
class WitnessTest : public HandlerTest {
 protected:
  // One worker, so that both connections share one loop.
  ServerOptions OneWorkerOptions(absl::Duration read_timeout) {
    ServerOptions options = OptionsWithReadTimeout(read_timeout);
    options.num_workers = 1;
    return options;
  }
  // Connects the witness (connection 2) and waits for its timeout; connection 1 must
  // still be alive then.
  void ExpectOutlivesWitness() {
    auto witness = ConnectAs(2);
    ASSERT_NE(witness, nullptr);
    ASSERT_TRUE(WaitFor(2, "timeout"));
    EXPECT_FALSE(Saw(1, "timeout"));
    EXPECT_FALSE(Saw(1, "gone"));
  }
};

TEST_F(WitnessTest, OneShotTimeoutLongerThanReadTimeoutIsHonouredInFull) {
  script_.connection = [](const Ctx& ctx, Connection&) {
    if (ctx.n == 1) return HandlerResult::ContinueWithTimeout(absl::Seconds(60));
    return HandlerResult::Continue();
  };
  script_.data = Echo;
  ASSERT_TRUE(Start(OneWorkerOptions(absl::Milliseconds(150))));
  auto client = ConnectAs(1);
  ASSERT_NE(client, nullptr);
  ExpectOutlivesWitness();
  // One shot: after data, a plain Continue is back to the 150 ms read_timeout.
  auto echoed = testutil::RoundTrip(*client, "ping", kDeadline);
  ASSERT_TRUE(echoed.ok()) << echoed.status();
  EXPECT_THAT(Endings(1), ElementsAre("timeout"));
  EXPECT_THAT(Endings(2), ElementsAre("timeout"));
}

TEST_F(WitnessTest, OneShotInfiniteTimeoutDisablesTheReadTimeoutForThatWait) {
  script_.connection = [](const Ctx& ctx, Connection&) {
    if (ctx.n == 1) return HandlerResult::ContinueWithTimeout(absl::InfiniteDuration());
    return HandlerResult::Continue();
  };
  ASSERT_TRUE(Start(OneWorkerOptions(absl::Milliseconds(150))));
  auto client = ConnectAs(1);
  ASSERT_NE(client, nullptr);
  ExpectOutlivesWitness();
  client->Close();
  EXPECT_THAT(Endings(1), ElementsAre("close"));
}

TEST_F(WitnessTest, PersistentLongTimeoutOutlastsTheShorterReadTimeout) {
  script_.connection = [](const Ctx& ctx, Connection& conn) {
    if (ctx.n != 1) return HandlerResult::Continue();
    WaitReadable(conn);
    return HandlerResult::ContinueWithPersistentTimeout(absl::Seconds(60));
  };
  script_.data = Echo;  // a plain Continue: the persistent 60 s applies
  auto client = StartAndConnect(OneWorkerOptions(absl::Milliseconds(150)));
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Send("ping").ok());
  auto echoed = client->Recv(4, kDeadline);
  ASSERT_TRUE(echoed.ok()) << echoed.status();
  ASSERT_TRUE(WaitFor(1, "data:ping"));
  ExpectOutlivesWitness();
  client->Close();
  EXPECT_THAT(Endings(1), ElementsAre("close"));
}

TEST_F(WitnessTest, ClientDataResetsTheReadTimeout) {
  script_.data = Echo;
  ASSERT_TRUE(Start(OneWorkerOptions(absl::Seconds(1))));
  auto client = ConnectAs(1);
  ASSERT_NE(client, nullptr);
  auto witness = ConnectAs(2);
  ASSERT_NE(witness, nullptr);
  // Keep connection 1 busy until the witness, which connected later, times out.
  const absl::Time give_up = absl::Now() + kDeadline;
  int rounds = 0;
  while (!Saw(2, "timeout") && absl::Now() < give_up) {
    auto echoed = testutil::RoundTrip(*client, "ping", kDeadline);
    ASSERT_TRUE(echoed.ok()) << echoed.status() << " after " << rounds << " rounds";
    ++rounds;
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_TRUE(Saw(2, "timeout"));
  EXPECT_FALSE(Saw(1, "timeout"));
  auto echoed = testutil::RoundTrip(*client, "last", kDeadline);
  ASSERT_TRUE(echoed.ok()) << echoed.status();
  // And once the client stops, the read timeout ends it.
  EXPECT_THAT(Endings(1), ElementsAre("timeout"));
}

TEST_F(HandlerTest, PersistentTimeoutReplacesReadTimeoutForLaterWaits) {
  // read_timeout is 60 s; the persistent 150 ms is set on the first wait and must
  // still apply after HandleData's plain Continue.
  script_.connection =
      WaitReadableThen(HandlerResult::ContinueWithPersistentTimeout(absl::Milliseconds(150)));
  script_.data = Echo;
  auto client = StartAndConnect();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Send("ping").ok());
  ASSERT_THAT(testutil::ReadToEof(*client, kDeadline), IsOkAndHolds("ping"));
  EXPECT_THAT(Endings(1), ElementsAre("timeout"));
}

TEST_F(HandlerTest, PersistentTimeoutIsAlsoTheDefaultTimeoutOfRecv) {
  script_.connection =
      WaitReadableThen(HandlerResult::ContinueWithPersistentTimeout(absl::Milliseconds(150)));
  script_.data = [](const Ctx& ctx, absl::string_view, Connection& conn) {
    absl::StatusOr<std::string> more = conn.Recv(1);  // no timeout given
    ctx.Note(absl::StrCat("recv:", absl::StatusCodeToString(more.status().code())));
    return HandlerResult::Close();
  };
  auto client = StartAndConnect();  // read_timeout stays 60 s
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Send("ping").ok());
  EXPECT_TRUE(testutil::ReadToEof(*client, kDeadline).ok());
  EXPECT_THAT(Endings(1), ElementsAre("close"));
  EXPECT_TRUE(Saw(1, "recv:DEADLINE_EXCEEDED"));
}

TEST_F(HandlerTest, RecvWithoutTimeoutUsesReadTimeoutAndItsErrorCanEndTheConnection) {
  script_.data = [](const Ctx&, absl::string_view, Connection& conn) {
    absl::StatusOr<std::string> more = conn.Recv(1);
    EXPECT_TRUE(absl::IsDeadlineExceeded(more.status())) << more.status();
    return HandlerResult::Error(more.status());
  };
  auto client = StartAndConnect(OptionsWithReadTimeout(absl::Milliseconds(150)));
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Send("ping").ok());
  EXPECT_TRUE(testutil::ReadToEof(*client, kDeadline).ok());
  EXPECT_THAT(Endings(1), ElementsAre("error:DEADLINE_EXCEEDED"));
}

// ---- Local messages and the read timer ----

enum class WaitKind { kReadTimeout, kOneShot, kPersistent };

class LocalMessagesTest : public HandlerTest,
                          public ::testing::WithParamInterface<WaitKind> {};

TEST_P(LocalMessagesTest, DoNotResetTheReadTimer) {
  // A flood of posted messages, each answered with a plain Continue, must not keep an
  // idle client's connection alive: only client data moves the read deadline.
  const WaitKind kind = GetParam();
  const absl::Duration t = absl::Milliseconds(400);
  script_.connection = [kind, t](const Ctx&, Connection& conn) {
    switch (kind) {
      case WaitKind::kReadTimeout:
        return HandlerResult::Continue();
      case WaitKind::kOneShot:
        return HandlerResult::ContinueWithTimeout(t);
      case WaitKind::kPersistent:
        WaitReadable(conn);
        return HandlerResult::ContinueWithPersistentTimeout(t);
    }
    return HandlerResult::Continue();
  };
  script_.data = Echo;
  ServerOptions options = Options();
  if (kind == WaitKind::kReadTimeout) options.read_timeout = t;
  ASSERT_TRUE(Start(std::move(options)));
  auto client = ConnectAs(1);
  ASSERT_NE(client, nullptr);
  if (kind == WaitKind::kPersistent) {
    // A data round first: the persistent timeout outlives it.
    auto echoed = testutil::RoundTrip(*client, "ping", kDeadline);
    ASSERT_TRUE(echoed.ok()) << echoed.status();
  }
  ConnectionHandle handle = HandleOf(1);
  const absl::Time give_up = absl::Now() + kDeadline;
  while (!Saw(1, "timeout") && absl::Now() < give_up) {
    EXPECT_TRUE(handle.Post(std::string("tick")).ok());
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_TRUE(Saw(1, "timeout")) << "still open after 10 s of messages";
  EXPECT_THAT(Endings(1), ElementsAre("timeout"));
  EXPECT_GT(rec_.Count("c1:message:tick"), 0);
  auto all = testutil::ReadToEof(*client, kDeadline);
  EXPECT_TRUE(all.ok()) << all.status();
}

INSTANTIATE_TEST_SUITE_P(AllWaits, LocalMessagesTest,
                         ::testing::Values(WaitKind::kReadTimeout, WaitKind::kOneShot,
                                           WaitKind::kPersistent),
                         [](const ::testing::TestParamInfo<WaitKind>& info) {
                           switch (info.param) {
                             case WaitKind::kReadTimeout: return std::string("ReadTimeout");
                             case WaitKind::kOneShot: return std::string("OneShot");
                             case WaitKind::kPersistent: return std::string("Persistent");
                           }
                           return std::string("Unknown");
                         });

TEST_F(HandlerTest, SendingDoesNotResetTheReadTimer) {
  // The server keeps sending (from posted messages) to a client that sends nothing:
  // the connection still times out, and the client got bytes up to then.
  script_.message = [](const Ctx&, std::any&, Connection& conn) {
    EXPECT_TRUE(conn.Send("A").ok());
    return HandlerResult::Continue();
  };
  ASSERT_TRUE(Start(OptionsWithReadTimeout(absl::Milliseconds(400))));
  auto client = ConnectAs(1);
  ASSERT_NE(client, nullptr);
  ConnectionHandle handle = HandleOf(1);
  const absl::Time give_up = absl::Now() + kDeadline;
  while (!Saw(1, "timeout") && absl::Now() < give_up) {
    EXPECT_TRUE(handle.Post(std::string("send")).ok());
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_TRUE(Saw(1, "timeout")) << "still open after 10 s of sending";
  auto all = testutil::ReadToEof(*client, kDeadline);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->size(), static_cast<size_t>(rec_.Count("c1:message:send")));
  EXPECT_GT(all->size(), 0u);
  EXPECT_THAT(Endings(1), ElementsAre("timeout"));
}

// The next three use a message the handler posts to itself as it returns: the loop
// runs expired timers before posted tasks, so whether that message arrives tells
// whether the read deadline had already passed when the callback returned.

TEST_F(HandlerTest, TimeSpentInsideHandleDataDoesNotCountAgainstTheReadTimeout) {
  // HandleData runs from a readiness event, and what it posts runs in the same loop
  // turn, before the timers are looked at again: "relay" posts "after", which then
  // comes after the timers.
  script_.data = [](const Ctx&, absl::string_view, Connection& conn) {
    absl::SleepFor(absl::Milliseconds(500));  // slow work, twice the read_timeout
    EXPECT_TRUE(conn.handle().Post(std::string("relay")).ok());
    return HandlerResult::Continue();  // the wait starts now
  };
  script_.message = [](const Ctx&, std::any& message, Connection& conn) {
    if (MessageText(message) == "relay") {
      EXPECT_TRUE(conn.handle().Post(std::string("after")).ok());
      return HandlerResult::Continue();
    }
    return HandlerResult::Close();
  };
  auto client = StartAndConnect(OptionsWithReadTimeout(absl::Milliseconds(250)));
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Send("slow").ok());
  EXPECT_TRUE(testutil::ReadToEof(*client, kDeadline).ok());
  EXPECT_THAT(Endings(1), ElementsAre("close"));
  EXPECT_TRUE(Saw(1, "message:relay"));
  EXPECT_TRUE(Saw(1, "message:after"));
}

TEST_F(HandlerTest, TimeSpentInsideHandleMessageCountsAgainstTheReadTimeout) {
  script_.connection = [](const Ctx&, Connection& conn) {
    EXPECT_TRUE(conn.handle().Post(std::string("slow")).ok());
    return HandlerResult::Continue();  // the wait (250 ms) starts now
  };
  script_.message = [](const Ctx&, std::any& message, Connection& conn) {
    if (MessageText(message) == "slow") {
      absl::SleepFor(absl::Milliseconds(500));  // past the deadline of the wait
      EXPECT_TRUE(conn.handle().Post(std::string("after")).ok());
      return HandlerResult::Continue();
    }
    return HandlerResult::Close();
  };
  ASSERT_TRUE(Start(OptionsWithReadTimeout(absl::Milliseconds(250))));
  auto client = ConnectAs(1);
  ASSERT_NE(client, nullptr);
  EXPECT_TRUE(testutil::ReadToEof(*client, kDeadline).ok());
  EXPECT_THAT(Endings(1), ElementsAre("timeout"));
  EXPECT_TRUE(Saw(1, "message:slow"));
  EXPECT_FALSE(Saw(1, "message:after"));
}

TEST_F(HandlerTest, HandleMessageCanReArmTheReadTimerWithAnExplicitTimeout) {
  // The escape hatch: an explicit timeout from HandleMessage starts a new wait.
  script_.connection = [](const Ctx&, Connection& conn) {
    EXPECT_TRUE(conn.handle().Post(std::string("slow")).ok());
    return HandlerResult::Continue();
  };
  script_.message = [](const Ctx&, std::any& message, Connection& conn) {
    if (MessageText(message) == "slow") {
      absl::SleepFor(absl::Milliseconds(500));
      EXPECT_TRUE(conn.handle().Post(std::string("after")).ok());
      return HandlerResult::ContinueWithTimeout(absl::Milliseconds(250));
    }
    EXPECT_TRUE(conn.Send("A").ok());
    return HandlerResult::Close();
  };
  ASSERT_TRUE(Start(OptionsWithReadTimeout(absl::Milliseconds(250))));
  auto client = ConnectAs(1);
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(testutil::ReadToEof(*client, kDeadline), IsOkAndHolds("A"));
  EXPECT_THAT(Endings(1), ElementsAre("close"));
}

// ---- ContinueThen ----

TEST_F(HandlerTest, ContinueThenRunsHandleContinueBeforeTheNextDataChained) {
  auto continues = std::make_shared<std::atomic<int>>(0);
  script_.data = [](const Ctx&, absl::string_view data, Connection& conn) {
    if (data != "ping") {
      EXPECT_TRUE(conn.Send("done").ok());
      return HandlerResult::Continue();
    }
    WaitReadable(conn);  // "pong" is already waiting...
    return HandlerResult::ContinueThen();  // ...yet HandleContinue comes first
  };
  script_.cont = [continues](const Ctx&, Connection& conn) {
    const int n = ++*continues;
    EXPECT_TRUE(conn.Send(absl::StrCat(n)).ok());
    return n < 3 ? HandlerResult::ContinueThen() : HandlerResult::Continue();
  };
  script_.connection = WaitReadableThen(HandlerResult::Continue());
  auto client = StartAndConnect();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Send("ping").ok());
  ASSERT_TRUE(WaitFor(1, "data:ping"));
  ASSERT_TRUE(client->Send("pong").ok());
  ASSERT_THAT(client->Recv(7, kDeadline), IsOkAndHolds("123done"));
  EXPECT_THAT(EventsOf(1), ElementsAre("connection", "data:ping", "continue", "continue",
                                       "continue", "data:pong"));
}

TEST_F(HandlerTest, ContinueThenFromHandleConnectionAndHandleContinueMayClose) {
  script_.connection = Returns(HandlerResult::ContinueThen());
  script_.cont = SendThen("kept going", HandlerResult::Close());
  auto client = StartAndConnect();
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(testutil::ReadToEof(*client, kDeadline), IsOkAndHolds("kept going"));
  EXPECT_THAT(Endings(1), ElementsAre("close"));
  EXPECT_THAT(EventsOf(1), ElementsAre("connection", "continue", "close", "gone"));
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
