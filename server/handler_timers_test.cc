// Handler timers (Connection::SendAfter, CancelTimer): a message delivered to
// HandleMessage after a delay, on the connection's worker; cancellable; counted
// against max_pending_messages while pending; gone with the connection.
#include <any>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/connection.h"
#include "server/handler.h"
#include "server/server.h"
#include "server/test_util.h"

namespace islet {
namespace {

using testutil::IsOkAndHolds;
using testutil::kWait;
using testutil::MustConnect;

// Commands, one per read:
//   "after <ms> <text>"  a timer that sends <text> when it fires; answers "set;"
//   "cancel-last"        cancels the last timer set; answers "cancelled;" or "gone;"
//   "close"              closes (timers pending)
// A refused timer answers "refused:<code>;".
class TimerHandler : public Handler {
 public:
  explicit TimerHandler(const std::any& options)
      : events_(std::any_cast<testutil::EventRecorder*>(options)) {}

  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    if (absl::ConsumePrefix(&data, "after ")) {
      const size_t space = data.find(' ');
      int ms = 0;
      if (space == absl::string_view::npos || !absl::SimpleAtoi(data.substr(0, space), &ms)) {
        return Answer(conn, "bad;");
      }
      absl::StatusOr<Connection::TimerId> id = conn.SendAfter(
          ms < 0 ? absl::InfiniteDuration() : absl::Milliseconds(ms),
          std::string(data.substr(space + 1)));
      if (!id.ok()) {
        return Answer(conn, absl::StrCat("refused:", absl::StatusCodeToString(id.status().code()),
                                         ";"));
      }
      last_ = *id;
      return Answer(conn, "set;");
    }
    if (data == "cancel-last") return Answer(conn, conn.CancelTimer(last_) ? "cancelled;" : "gone;");
    if (data == "close") return HandlerResult::Close();
    return Answer(conn, "bad;");
  }
  HandlerResult HandleMessage(std::any& message, Connection& conn) override {
    const std::string text = std::any_cast<std::string>(message);
    events_->Record(absl::StrCat("fired:", text));
    return Answer(conn, absl::StrCat("fired:", text, ";"));
  }
  void HandleClose(Connection& conn) override { events_->Record("close"); }

 private:
  static HandlerResult Answer(Connection& conn, absl::string_view text) {
    absl::Status sent = conn.Send(text);
    return sent.ok() ? HandlerResult::Continue() : HandlerResult::Error(sent);
  }

  testutil::EventRecorder* events_;
  Connection::TimerId last_ = 0;
};

class HandlerTimersTest : public ::testing::Test {
 protected:
  void StartServer(size_t max_pending_messages = 1024) {
    ServerOptions options = testutil::LoopbackOptions(HandlerFactoryOf<TimerHandler>());
    options.handler_options = &events_;
    options.max_pending_messages = max_pending_messages;
    server_ = testutil::MustStart(std::move(options));
    ASSERT_NE(server_, nullptr);
    client_ = MustConnect(*server_);
    ASSERT_NE(client_, nullptr);
  }
  // Sends `command` and expects `answer` back.
  void Expect(absl::string_view command, absl::string_view answer) {
    ASSERT_TRUE(client_->Send(command).ok());
    EXPECT_THAT(client_->Recv(answer.size(), kWait), IsOkAndHolds(std::string(answer)))
        << command;
  }

  testutil::EventRecorder events_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<TcpSocket> client_;
};

TEST_F(HandlerTimersTest, ATimerFiresAfterItsDelayWithItsMessage) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  const absl::Time set_at = absl::Now();
  Expect("after 200 hello", "set;");
  Expect("", "fired:hello;");
  EXPECT_GE(absl::Now() - set_at, absl::Milliseconds(200));
}

TEST_F(HandlerTimersTest, TimersFireInTheOrderOfTheirDeadlines) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Expect("after 300 late", "set;");
  Expect("after 50 early", "set;");
  Expect("", "fired:early;fired:late;");
}

TEST_F(HandlerTimersTest, ACancelledTimerNeverFires) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Expect("after 200 doomed", "set;");
  Expect("cancel-last", "cancelled;");
  Expect("cancel-last", "gone;");
  // A later timer fires; the cancelled one, due first, did not.
  Expect("after 400 kept", "set;");
  Expect("", "fired:kept;");
  EXPECT_FALSE(events_.Contains("fired:doomed"));
}

TEST_F(HandlerTimersTest, PendingTimersCountAgainstMaxPendingMessages) {
  ASSERT_NO_FATAL_FAILURE(StartServer(/*max_pending_messages=*/2));
  Expect("after 60000 a", "set;");
  Expect("after 60000 b", "set;");
  Expect("after 60000 c", "refused:RESOURCE_EXHAUSTED;");
  // A cancelled timer gives its place back.
  Expect("cancel-last", "cancelled;");
  Expect("after 10 d", "set;");
  Expect("", "fired:d;");
  // And so does a timer that fired.
  Expect("after 10 e", "set;");
  Expect("", "fired:e;");
}

TEST_F(HandlerTimersTest, AnInfiniteDelayIsRefused) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Expect("after -1 never", "refused:INVALID_ARGUMENT;");
}

TEST_F(HandlerTimersTest, TimersGoWithTheConnection) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Expect("after 200 orphan", "set;");
  ASSERT_TRUE(client_->Send("close").ok());
  EXPECT_TRUE(testutil::ReadToEof(*client_).ok());
  ASSERT_TRUE(events_.WaitFor("close"));
  // Past the timer's deadline: it did not fire into a connection that is gone (under
  // ASan a use after free would end the test here).
  std::unique_ptr<TcpSocket> other = MustConnect(*server_);
  ASSERT_NE(other, nullptr);
  client_ = std::move(other);
  Expect("after 400 later", "set;");
  Expect("", "fired:later;");
  EXPECT_FALSE(events_.Contains("fired:orphan"));
}

}  // namespace
}  // namespace islet
