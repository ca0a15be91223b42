// Posting to a connection through its ConnectionHandle, over real loopback sockets: from
// another thread, in the order posted, from one connection to another, closing through
// the handle, and what a handle to a closed connection or a stopped server does. What
// the C++ API adds to Thousand Island's socket_test.exs (with connection_io_test,
// connection_sendfile_test and connection_info_test).
#include <any>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/connection.h"
#include "server/connection_test_fixture.h"
#include "server/handler.h"
#include "server/scripted_handler.h"
#include "server/server.h"
#include "server/test_util.h"

namespace islet {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::Not;
using ::testing::StartsWith;
using testutil::ConnectionTest;
using testutil::Ctx;
using ::islet::IsOk;
using testutil::IsOkAndHolds;
using testutil::StatusIs;
using testutil::kDeadline;

struct Payload {
  int number;
  std::string text;
};

TEST_F(ConnectionTest, PostFromAnotherThreadRunsHandleMessageWithThePayload) {
  script_.message = [](const Ctx& ctx, std::any& message, Connection& conn) {
    Payload* p = std::any_cast<Payload>(&message);
    EXPECT_NE(p, nullptr);
    if (p != nullptr) { EXPECT_TRUE(conn.Send(absl::StrCat(p->text, p->number, ";")).ok()); }
    return HandlerResult::Continue();
  };
  ASSERT_TRUE(Start(Options()));
  auto client = ConnectAs(1);
  ASSERT_NE(client, nullptr);
  ConnectionHandle handle = HandleOf(1);
  std::thread poster([handle] {
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(handle.Post(Payload{i, "n"}).ok());
  });
  poster.join();
  auto got = client->Recv(9, kDeadline);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "n0;n1;n2;");
}

TEST_F(ConnectionTest, MessagesArriveInTheOrderPosted) {
  script_.message = [](const Ctx& ctx, std::any& message, Connection&) {
    ctx.Note(absl::StrCat("m", std::any_cast<int>(message)));
    return HandlerResult::Continue();
  };
  ASSERT_TRUE(Start(Options()));
  auto client = ConnectAs(1);
  ASSERT_NE(client, nullptr);
  ConnectionHandle handle = HandleOf(1);
  std::vector<std::string> expected = {"connection"};
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(handle.Post(i).ok());
    expected.push_back("message");
    expected.push_back(absl::StrCat("m", i));
  }
  ASSERT_TRUE(WaitFor(1, "m99"));
  EXPECT_EQ(EventsOf(1), expected);
}

TEST_F(ConnectionTest, OneConnectionCanPostToAnother) {
  // A tiny chat: what client 1 sends reaches client 2 through connection 2's handle.
  script_.data = [](const Ctx& ctx, absl::string_view data, Connection& conn) {
    EXPECT_TRUE(ctx.book->Get(2).Post(std::string(data)).ok());
    return HandlerResult::Continue();
  };
  script_.message = [](const Ctx&, std::any& message, Connection& conn) {
    EXPECT_TRUE(conn.Send(std::any_cast<std::string>(message)).ok());
    return HandlerResult::Continue();
  };
  ASSERT_TRUE(Start(Options()));
  auto one = ConnectAs(1);
  auto two = ConnectAs(2);
  ASSERT_NE(one, nullptr);
  ASSERT_NE(two, nullptr);
  ASSERT_TRUE(one->Send("hi two").ok());
  ASSERT_THAT(two->Recv(6, kDeadline), IsOkAndHolds("hi two"));
}

TEST_F(ConnectionTest, ConnectionHandleCloseClosesWithHandleClose) {
  script_.close = [](const Ctx&, Connection& conn) { EXPECT_TRUE(conn.Send("bye").ok()); };
  ASSERT_TRUE(Start(Options()));
  auto client = ConnectAs(1);
  ASSERT_NE(client, nullptr);
  ConnectionHandle handle = HandleOf(1);
  ASSERT_TRUE(handle.Close().ok());
  ASSERT_THAT(testutil::ReadToEof(*client, kDeadline), IsOkAndHolds("bye"));
  EXPECT_THAT(Endings(1), ElementsAre("close"));
  // Closing what is already gone is harmless.
  EXPECT_TRUE(handle.Close().ok());
}

TEST_F(ConnectionTest, ConnectionCloseInsideHandleMessageCloses) {
  script_.message = [](const Ctx&, std::any&, Connection& conn) {
    EXPECT_TRUE(conn.Send("closing").ok());
    conn.Close();
    return HandlerResult::Continue();
  };
  ASSERT_TRUE(Start(Options()));
  auto client = ConnectAs(1);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(HandleOf(1).Post(0).ok());
  ASSERT_THAT(testutil::ReadToEof(*client, kDeadline), IsOkAndHolds("closing"));
  EXPECT_THAT(Endings(1), ElementsAre("close"));
}

TEST_F(ConnectionTest, PostToAClosedConnectionIsDroppedAndAfterStopFails) {
  // One worker: the posts to connections 1 and 2 run in the order made, so once 2 has
  // its message, 1's (sent first) has been dealt with.
  ServerOptions options = Options();
  options.num_workers = 1;
  ASSERT_TRUE(Start(std::move(options)));
  auto one = ConnectAs(1);
  auto two = ConnectAs(2);
  ASSERT_NE(one, nullptr);
  ASSERT_NE(two, nullptr);
  ConnectionHandle h1 = HandleOf(1);
  ConnectionHandle h2 = HandleOf(2);
  EXPECT_FALSE(h1 == h2);
  one->Close();
  EXPECT_THAT(Endings(1), ElementsAre("close"));
  EXPECT_TRUE(h1.Post(std::string("late")).ok());
  EXPECT_TRUE(h2.Post(std::string("probe")).ok());
  ASSERT_TRUE(WaitFor(2, "message:probe"));
  EXPECT_THAT(EventsOf(1), Not(Contains(StartsWith("message"))));  // not even "late"
  ASSERT_TRUE(server_->Stop().ok());
  EXPECT_THAT(Endings(2), ElementsAre("shutdown"));
  EXPECT_TRUE(absl::IsFailedPrecondition(h1.Post(1)));
  EXPECT_TRUE(absl::IsFailedPrecondition(h2.Post(1)));
  EXPECT_TRUE(absl::IsFailedPrecondition(h2.Close()));
  // And a handle to nothing.
  ConnectionHandle empty;
  EXPECT_FALSE(empty.valid());
  EXPECT_TRUE(absl::IsFailedPrecondition(empty.Post(1)));
  EXPECT_TRUE(absl::IsFailedPrecondition(empty.Close()));
}

// A connection that does not keep up with its posters: beyond max_pending_messages,
// Post fails with ResourceExhausted (the poster decides what to do), nothing is lost
// of what was accepted, and posting works again once the connection has caught up.
// Before the bound, every post was queued on the worker without limit.
TEST_F(ConnectionTest, PostBeyondMaxPendingMessagesIsRefused) {
  absl::Notification entered;
  absl::Notification release;
  script_.message = [&](const Ctx& ctx, std::any& message, Connection&) {
    const int n = std::any_cast<int>(message);
    if (n == 0) {
      entered.Notify();
      // Holds the worker: every later post waits in the connection's inbox.
      release.WaitForNotificationWithTimeout(kDeadline);
    }
    ctx.Note(absl::StrCat("m", n));
    return HandlerResult::Continue();
  };
  ServerOptions options = Options();
  options.max_pending_messages = 8;
  ASSERT_TRUE(Start(std::move(options)));
  auto client = ConnectAs(1);
  ASSERT_NE(client, nullptr);
  ConnectionHandle handle = HandleOf(1);
  ASSERT_THAT(handle.Post(0), IsOk());
  ASSERT_TRUE(entered.WaitForNotificationWithTimeout(kDeadline));
  // Message 0 is still being handled: it holds one of the 8 places.
  for (int i = 1; i < 8; ++i) ASSERT_THAT(handle.Post(i), IsOk()) << i;
  EXPECT_THAT(handle.Post(8), StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(handle.Post(9), StatusIs(absl::StatusCode::kResourceExhausted));
  release.Notify();
  ASSERT_TRUE(WaitFor(1, "m7"));
  // Caught up: its places are free again.
  absl::Status again;
  ASSERT_TRUE(testutil::WaitFor([&] { return (again = handle.Post(10)).ok(); })) << again;
  ASSERT_TRUE(WaitFor(1, "m10"));
  std::vector<std::string> handled;
  for (const std::string& e : EventsOf(1)) {
    if (e.size() > 1 && e[0] == 'm' && e != "message") handled.push_back(e);
  }
  EXPECT_THAT(handled, ElementsAre("m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m10"));
}

}  // namespace
}  // namespace islet
