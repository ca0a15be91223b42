// A peer's half-close, over real loopback sockets: by default it ends the connection
// (HandleClose); a handler that overrides HandlePeerFinished keeps it open for writing,
// under its wait's timeout, until the handler closes it or the peer goes away entirely.
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
#include "transport/socket_options.h"
#include "transport/tcp_transport.h"

namespace islet {
namespace {

using ::testing::ElementsAre;
using testutil::Ctx;
using testutil::HandlerTest;
using testutil::IsOkAndHolds;
using testutil::kDeadline;
using testutil::Returns;
using testutil::SendThen;

TEST_F(HandlerTest, ByDefaultAPeersHalfCloseEndsTheConnectionWithHandleClose) {
  ASSERT_TRUE(Start(Options()));
  auto client = ConnectAs(1);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Send("request").ok());
  ASSERT_TRUE(client->Shutdown(ShutdownWay::kWrite).ok());
  EXPECT_THAT(testutil::ReadToEof(*client, kDeadline), IsOkAndHolds(""));
  EXPECT_THAT(Endings(1), ElementsAre("close"));
  EXPECT_FALSE(Saw(1, "peer_finished"));
  EXPECT_FALSE(StopEvent().error.has_value());
}

// The request ends with the client's half-close (as `nc -N` sends one); the answer
// comes after it, partly from HandlePeerFinished, partly from a later callback.
TEST_F(HandlerTest, AHandlerThatContinuesAfterThePeerFinishedStillSendsAndThenCloses) {
  script_.peer_finished = [](const Ctx&, Connection& conn) {
    EXPECT_TRUE(conn.Send("ANSWER").ok());
    EXPECT_TRUE(conn.handle().Post(std::string("later")).ok());
    return HandlerResult::Continue();
  };
  script_.message = SendThen("+LATER", HandlerResult::Close());
  ASSERT_TRUE(Start(Options()));
  auto client = ConnectAs(1);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Send("request").ok());
  ASSERT_TRUE(client->Shutdown(ShutdownWay::kWrite).ok());
  EXPECT_THAT(testutil::ReadToEof(*client, kDeadline), IsOkAndHolds("ANSWER+LATER"));
  ASSERT_TRUE(WaitFor(1, "gone"));
  EXPECT_THAT(EventsOf(1), ElementsAre("connection", "data:request", "peer_finished",
                                       "message:later", "close", "gone"));
}

TEST_F(HandlerTest, TheWaitsTimeoutStillBoundsAHalfClosedConnection) {
  script_.peer_finished = Returns(HandlerResult::ContinueWithTimeout(absl::Milliseconds(100)));
  ASSERT_TRUE(Start(Options()));
  auto client = ConnectAs(1);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Shutdown(ShutdownWay::kWrite).ok());
  EXPECT_THAT(Endings(1), ElementsAre("timeout"));
}

// With nothing to write and no reading, only the hang-up tells that the peer is gone:
// the connection must end then, not stay (or spin on the level-triggered hang-up).
TEST_F(HandlerTest, APeerThatResetsAfterItsHalfCloseEndsTheConnection) {
  script_.peer_finished = Returns(HandlerResult::ContinueWithTimeout(absl::InfiniteDuration()));
  ASSERT_TRUE(Start(Options()));
  auto client = ConnectAs(1);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Shutdown(ShutdownWay::kWrite).ok());
  ASSERT_TRUE(WaitFor(1, "peer_finished"));
  ASSERT_TRUE(client->SetOptions({SocketOption::Linger(absl::ZeroDuration())}).ok());
  client->Close();  // SO_LINGER 0: a reset
  EXPECT_THAT(Endings(1), ElementsAre("close"));
}

TEST_F(HandlerTest, StopEndsAHalfClosedConnectionWithHandleShutdown) {
  script_.peer_finished = Returns(HandlerResult::ContinueWithTimeout(absl::InfiniteDuration()));
  script_.shutdown = [](const Ctx&, Connection& conn) { EXPECT_TRUE(conn.Send("BYE").ok()); };
  ASSERT_TRUE(Start(Options()));
  auto client = ConnectAs(1);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Shutdown(ShutdownWay::kWrite).ok());
  ASSERT_TRUE(WaitFor(1, "peer_finished"));
  ASSERT_TRUE(server_->Stop().ok());
  EXPECT_THAT(testutil::ReadToEof(*client, kDeadline), IsOkAndHolds("BYE"));
  EXPECT_THAT(Endings(1), ElementsAre("shutdown"));
}

}  // namespace
}  // namespace islet
