// Read timeouts over real loopback sockets: the server's read_timeout, one-shot and
// persistent timeouts from callback results, client data that resets the timer, and
// Recv's default timeout. Part of the port of Thousand Island's handler_test.exs (with
// handler_results_test, handler_endings_test and handler_messages_test).
//
// Timing: no assertion depends on how long something took. Tests that must show that
// something did NOT happen use a witness: a second connection on the same (single)
// worker whose own deadline is later than the one under test, so the loop, which runs
// timers in deadline order, would have fired the wrong timeout first.
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/connection.h"
#include "server/handler.h"
#include "server/handler_test_fixture.h"
#include "server/scripted_handler.h"
#include "server/server.h"
#include "server/test_util.h"

namespace islet {
namespace {

using ::testing::ElementsAre;
using ::testing::Optional;
using testutil::Ctx;
using testutil::Echo;
using testutil::HandlerTest;
using testutil::IsOkAndHolds;
using testutil::kDeadline;
using testutil::Returns;
using testutil::StatusIs;
using testutil::WaitReadable;
using testutil::WaitReadableThen;

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

// A total deadline is not stretched by data: a client sending a byte every 50 ms, which
// restarts the read timeout each time, is still closed when the deadline passes
// (HandleTimeout), long before its trickle would end.
TEST_F(HandlerTest, SetDeadlineIsATotalThatTricklingDataCannotStretch) {
  script_.connection = [](const Ctx&, Connection& conn) {
    conn.SetDeadline(absl::Milliseconds(300));
    return HandlerResult::Continue();
  };
  script_.data = [](const Ctx&, absl::string_view, Connection&) {
    return HandlerResult::Continue();  // each byte is client activity
  };
  auto client = StartAndConnect();  // read_timeout stays 60 s
  ASSERT_NE(client, nullptr);
  int sent = 0;
  for (; sent < 200; ++sent) {  // 10 s of trickle at most
    if (!client->Send("x").ok()) break;
    absl::StatusOr<std::string> got = client->Recv(0, absl::Milliseconds(50));
    if (!got.ok() && !absl::IsDeadlineExceeded(got.status())) break;  // closed
  }
  EXPECT_LT(sent, 200) << "the trickle kept the connection past its deadline";
  EXPECT_THAT(Endings(1), ElementsAre("timeout"));
  EXPECT_THAT(StopEvent().error, Optional(StatusIs(absl::StatusCode::kDeadlineExceeded)));
}

// Cleared, it no longer applies: the connection lives on under its read timeout.
TEST_F(HandlerTest, ClearDeadlineRemovesIt) {
  script_.connection = [](const Ctx&, Connection& conn) {
    conn.SetDeadline(absl::Milliseconds(100));
    conn.ClearDeadline();
    return HandlerResult::Continue();
  };
  script_.data = Echo;
  auto client = StartAndConnect();
  ASSERT_NE(client, nullptr);
  absl::SleepFor(absl::Milliseconds(300));
  ASSERT_THAT(testutil::RoundTrip(*client, "still here", kDeadline), IsOkAndHolds("still here"));
}

}  // namespace
}  // namespace islet
