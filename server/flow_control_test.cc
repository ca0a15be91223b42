// Flow control a handler drives: PauseReading / ResumeReading hold back HandleData (and
// the read timeout) across callbacks, and NotifyWhenDrained calls HandleDrained once the
// queued output falls to a mark. Together they let a handler answer a burst of
// pipelined requests a few at a time instead of queuing every answer at once.
#include <sys/resource.h>
#include <sys/socket.h>

#include <any>
#include <deque>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/connection.h"
#include "server/handler.h"
#include "server/server.h"
#include "server/test_util.h"
#include "transport/unique_fd.h"

namespace islet {
namespace {

using testutil::kWait;
using testutil::MustConnect;
using testutil::ReadToEof;

// "pause": pauses reading and answers "paused;", resuming 300 ms later (a timer), with
// "resumed;". Anything else is echoed as "data:<it>;".
class PausingHandler : public Handler {
 public:
  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    if (data == "pause") {
      conn.PauseReading();
      if (!conn.SendAfter(absl::Milliseconds(300), std::string("resume")).ok()) {
        return HandlerResult::Error(absl::InternalError("send_after"));
      }
      return Answer(conn, "paused;");
    }
    return Answer(conn, absl::StrCat("data:", data, ";"));
  }
  HandlerResult HandleMessage(std::any& message, Connection& conn) override {
    conn.ResumeReading();
    return Answer(conn, "resumed;");
  }

 private:
  static HandlerResult Answer(Connection& conn, absl::string_view text) {
    absl::Status sent = conn.Send(text);
    return sent.ok() ? HandlerResult::Continue() : HandlerResult::Error(sent);
  }
};

TEST(FlowControlTest, PausedReadingHoldsDataBackUntilResumed) {
  ServerOptions options = testutil::LoopbackOptions(HandlerFactoryOf<PausingHandler>());
  options.num_workers = 1;
  // Far shorter than the pause: a paused connection is not idle, so it must survive.
  options.read_timeout = absl::Milliseconds(100);
  std::unique_ptr<Server> server = testutil::MustStart(std::move(options));
  ASSERT_NE(server, nullptr);
  std::unique_ptr<TcpSocket> client = MustConnect(*server);
  ASSERT_NE(client, nullptr);

  ASSERT_TRUE(client->Send("pause").ok());
  ASSERT_THAT(client->Recv(7, kWait), testutil::IsOkAndHolds(std::string("paused;")));
  ASSERT_TRUE(client->Send("more").ok());
  // Had "more" been read during the pause, its answer would come before "resumed;".
  EXPECT_THAT(client->Recv(8 + 10, kWait),
              testutil::IsOkAndHolds(std::string("resumed;data:more;")));
  // After the pause the read timeout runs again: the idle connection is closed.
  EXPECT_TRUE(ReadToEof(*client).ok());
}

// Each "go" asks for a 64 KiB answer. Answers are written only while less than
// kHighWater is queued; past it the handler pauses reading and keeps the rest of the
// burst, and continues when the queue has drained to kLowWater.
constexpr size_t kAnswer = 64 << 10;
constexpr size_t kHighWater = 256 << 10;
constexpr size_t kLowWater = 64 << 10;

class FewAtATimeHandler : public Handler {
 public:
  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    for (char c : data) {
      if (c == 'g') ++waiting_;
    }
    return AnswerSome(conn);
  }
  HandlerResult HandleDrained(Connection& conn) override {
    conn.ResumeReading();
    return AnswerSome(conn);
  }

 private:
  HandlerResult AnswerSome(Connection& conn) {
    while (waiting_ > 0 && conn.queued_bytes() < kHighWater) {
      absl::Status sent = conn.Send(std::string(kAnswer, 'a'));
      if (!sent.ok()) return HandlerResult::Error(sent);
      --waiting_;
    }
    if (waiting_ > 0) {
      conn.PauseReading();
      conn.NotifyWhenDrained(kLowWater);
    }
    return HandlerResult::Continue();
  }

  int waiting_ = 0;
};

TEST(FlowControlTest, ABurstIsAnsweredAFewAtATimeWithBoundedQueuedOutput) {
  ServerOptions options = testutil::LoopbackOptions(HandlerFactoryOf<FewAtATimeHandler>());
  options.num_workers = 1;
  // The library's own backpressure would also bound the queue; set it far above, so
  // that only the handler's flow control can keep the queue small.
  options.send_queue_high_water = 512 << 20;
  options.send_queue_limit = 1024 << 20;
  options.transport_options.socket_options.push_back(SocketOption::SendBuffer(64 << 10));
  std::unique_ptr<Server> server = testutil::MustStart(std::move(options));
  ASSERT_NE(server, nullptr);
  const uint16_t port = server->ListenerInfo()->port;

  // 512 requests at once (32 MiB of answers), read slowly.
  constexpr int kRequests = 512;
  UniqueFd client = testutil::RawConnect(port, /*recv_buffer=*/64 << 10);
  ASSERT_TRUE(client.valid());
  const std::string burst(kRequests, 'g');
  ASSERT_TRUE(testutil::WriteAll(client.get(), burst.data(), burst.size()));

  uint64_t peak = 0;
  size_t received = 0;
  std::string chunk(kAnswer, '\0');
  const absl::Time give_up = absl::Now() + absl::Seconds(60);
  while (received < kRequests * kAnswer && absl::Now() < give_up) {
    peak = std::max(peak, server->Info().queued_output_bytes);
    ASSERT_TRUE(testutil::ReadAll(client.get(), chunk.data(), chunk.size(), kWait));
    ASSERT_EQ(chunk, std::string(kAnswer, 'a'));
    received += chunk.size();
  }
  EXPECT_EQ(received, kRequests * kAnswer);
  // Below the high water mark plus the one answer that crossed it (without the
  // handler's flow control: all 32 MiB at once).
  EXPECT_LE(peak, kHighWater + kAnswer) << "queued output reached " << peak;
}

// Records what it was called with; "notify" asks for HandleDrained at once (nothing
// is queued), "notify-close" asks and then closes.
class DrainRecorder : public Handler {
 public:
  explicit DrainRecorder(const std::any& options)
      : events_(std::any_cast<testutil::EventRecorder*>(options)) {}
  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    if (data == "notify") {
      conn.NotifyWhenDrained(0);
      events_->Record("notify-returned");
      return HandlerResult::Continue();
    }
    if (data == "notify-close") {
      conn.NotifyWhenDrained(0);
      return HandlerResult::Close();
    }
    return HandlerResult::Continue();
  }
  HandlerResult HandleDrained(Connection& conn) override {
    events_->Record("drained");
    absl::Status sent = conn.Send("drained");
    return sent.ok() ? HandlerResult::Continue() : HandlerResult::Error(sent);
  }
  void HandleClose(Connection& conn) override { events_->Record("close"); }

 private:
  testutil::EventRecorder* events_;
};

TEST(FlowControlTest, DrainedRunsOnALaterTurnAndNeverAfterTheClose) {
  testutil::EventRecorder events;
  ServerOptions options = testutil::LoopbackOptions(HandlerFactoryOf<DrainRecorder>());
  options.handler_options = &events;
  std::unique_ptr<Server> server = testutil::MustStart(std::move(options));
  ASSERT_NE(server, nullptr);

  std::unique_ptr<TcpSocket> client = MustConnect(*server);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Send("notify").ok());
  EXPECT_THAT(client->Recv(7, kWait), testutil::IsOkAndHolds(std::string("drained")));
  // Not from inside the callback that asked: after it returned.
  EXPECT_EQ(events.Events(), (std::vector<std::string>{"notify-returned", "drained"}));

  events.Clear();
  std::unique_ptr<TcpSocket> closing = MustConnect(*server);
  ASSERT_NE(closing, nullptr);
  ASSERT_TRUE(closing->Send("notify-close").ok());
  EXPECT_TRUE(ReadToEof(*closing).ok());
  ASSERT_TRUE(events.WaitFor("close"));
  // A turn of the loop later, still nothing: a connection that closed is never called.
  ASSERT_TRUE(client->Send("notify").ok());
  EXPECT_THAT(client->Recv(7, kWait), testutil::IsOkAndHolds(std::string("drained")));
  EXPECT_EQ(events.Count("drained"), 1) << "drained after the close";
}

// Pauses reading as soon as it is connected, and says so; never resumes.
class PausedAtOnceHandler : public Handler {
 public:
  HandlerResult HandleConnection(Connection& conn) override {
    conn.PauseReading();
    absl::Status sent = conn.Send("paused");
    return sent.ok() ? HandlerResult::Continue() : HandlerResult::Error(sent);
  }
};

absl::Duration ProcessCpuTime() {
  rusage usage = {};
  getrusage(RUSAGE_SELF, &usage);
  return absl::DurationFromTimeval(usage.ru_utime) + absl::DurationFromTimeval(usage.ru_stime);
}

TEST(FlowControlTest, APausedConnectionWhosePeerResetsDoesNotSpinItsWorker) {
  ServerOptions options = testutil::LoopbackOptions(HandlerFactoryOf<PausedAtOnceHandler>());
  options.num_workers = 1;
  std::unique_ptr<Server> server = testutil::MustStart(std::move(options));
  ASSERT_NE(server, nullptr);
  std::unique_ptr<TcpSocket> client = MustConnect(*server);
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(client->Recv(6, kWait), testutil::IsOkAndHolds(std::string("paused")));
  // Nothing is queued and reading is paused: the connection asks epoll for no event.
  // A reset still reports EPOLLERR|EPOLLHUP, which epoll delivers whatever the mask; a
  // connection that stays registered is woken for them on every turn, for ever.
  const linger reset = {1, 0};
  ASSERT_EQ(setsockopt(client->fd(), SOL_SOCKET, SO_LINGER, &reset, sizeof(reset)), 0);
  client->Close();

  // The worker now idles (its overload check wakes it four times a second). A worker
  // woken without end burns a core: most of this window. A generous bound, far from
  // both, so a loaded machine or a sanitizer does not matter.
  const absl::Duration window = absl::Seconds(1);
  const absl::Duration cpu_before = ProcessCpuTime();
  absl::SleepFor(window);
  const absl::Duration used = ProcessCpuTime() - cpu_before;
  EXPECT_LT(used, window / 4) << "the process used " << used << " of CPU in " << window;

  EXPECT_TRUE(server->Stop().ok());
}

}  // namespace
}  // namespace islet
