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
using testutil::IsOkAndHolds;
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

}  // namespace
}  // namespace islet
