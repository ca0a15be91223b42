// Handler semantics over real loopback sockets: what each callback's result does. The
// initial state from handler_options, Continue / Close / Error from HandleConnection and
// HandleData, silent_terminate_on_error, and ContinueThen. Part of the port of Thousand
// Island's handler_test.exs (with handler_endings_test, handler_timeouts_test and
// handler_messages_test).
#include <any>
#include <atomic>
#include <memory>
#include <string>

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
#include "server/test_util.h"
#include "transport/tcp_transport.h"

namespace islet {
namespace {

using ::testing::ElementsAre;
using ::testing::Optional;
using testutil::Ctx;
using testutil::Echo;
using testutil::EventRecorder;
using testutil::HandlerTest;
using testutil::IsOkAndHolds;
using testutil::kDeadline;
using testutil::Returns;
using testutil::SendThen;
using testutil::StatusIs;
using testutil::WaitReadable;
using testutil::WaitReadableThen;

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

// Has both constructors: the factory must use the one given the options.
class BothConstructorsHandler : public Handler {
 public:
  BothConstructorsHandler() = default;
  explicit BothConstructorsHandler(const std::any& options)
      : greeting_(std::any_cast<Greeting>(options)) {}
  HandlerResult HandleConnection(Connection& conn) override {
    if (greeting_.rec != nullptr) greeting_.rec->Record(absl::StrCat("made with ", greeting_.text));
    return HandlerResult::Close();
  }

 private:
  Greeting greeting_{"", nullptr};
};

// Before, a default constructor beside the options one won, and the options were
// dropped without a word (http_hello's were).
TEST_F(HandlerTest, HandlerOptionsAreUsedWhenAHandlerAlsoHasADefaultConstructor) {
  ServerOptions options = testutil::LoopbackOptions(HandlerFactoryOf<BothConstructorsHandler>());
  options.handler_options = Greeting{"options", &rec_};
  auto client = StartAndConnect(std::move(options));
  ASSERT_NE(client, nullptr);
  EXPECT_TRUE(rec_.WaitFor("made with options", kDeadline));
}

// Takes its options typed: no std::any on the way.
class TypedOptionsHandler : public Handler {
 public:
  explicit TypedOptionsHandler(const Greeting& greeting) : greeting_(greeting) {}
  HandlerResult HandleConnection(Connection& conn) override {
    greeting_.rec->Record(absl::StrCat("typed ", greeting_.text));
    return HandlerResult::Close();
  }

 private:
  Greeting greeting_;
};

TEST_F(HandlerTest, ATypedFactoryMakesEachHandlerFromItsOptions) {
  ServerOptions options = testutil::LoopbackOptions(
      HandlerFactoryOf<TypedOptionsHandler>(Greeting{"hello", &rec_}));
  ASSERT_TRUE(Start(std::move(options)));
  for (int i = 0; i < 2; ++i) {
    auto client = Connect();
    ASSERT_NE(client, nullptr);
    ASSERT_THAT(testutil::ReadToEof(*client, kDeadline), IsOkAndHolds(""));
  }
  EXPECT_EQ(rec_.Count("typed hello"), 2);
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

}  // namespace
}  // namespace islet
