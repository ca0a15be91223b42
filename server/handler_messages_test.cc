// Local messages and the read timer, over real loopback sockets: neither posted messages
// nor the server's own sends reset it, time spent inside HandleData does not count
// against it, time spent inside HandleMessage does. Part of the port of Thousand
// Island's handler_test.exs (with handler_results_test, handler_endings_test and
// handler_timeouts_test, whose note on timing holds here too).
#include <any>
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
using testutil::Ctx;
using testutil::Echo;
using testutil::HandlerTest;
using testutil::IsOkAndHolds;
using testutil::kDeadline;
using testutil::MessageText;
using testutil::WaitReadable;

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

}  // namespace
}  // namespace islet
