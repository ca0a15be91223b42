// Closing without destroying what the peer has not read: a connection the server closes
// while the peer's input is unread half-closes and drains (a lingering close) instead of
// letting the kernel answer with a reset; and Stop hands the input that has already
// arrived to HandleData before HandleShutdown, so requests already here are answered.
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <memory>
#include <thread>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/notification.h"
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
using testutil::WaitFor;

// Says "bye" and closes at the first data, however much came with it.
class ByeHandler : public Handler {
 public:
  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    conn.Send("bye\n").IgnoreError();
    return HandlerResult::Close();
  }
};

// The server closes after its first read while most of what the client sent is still
// unread: the client reads the goodbye and then an orderly end of stream. Before, the
// close with unread input made the kernel reset the connection (ECONNRESET after
// "bye"), and a reset also discards whatever of our output was not yet sent.
TEST(LingeringCloseTest, CloseWithUnreadInputEndsInAnOrderlyEofNotAReset) {
  ServerOptions options = testutil::LoopbackOptions(HandlerFactoryOf<ByeHandler>());
  options.linger_timeout = kWait;  // until the client closes
  std::unique_ptr<Server> server = testutil::MustStart(std::move(options));
  ASSERT_NE(server, nullptr);
  std::unique_ptr<TcpSocket> client = MustConnect(*server);
  ASSERT_NE(client, nullptr);
  // Far more than one read of the worker's 64 KiB buffer.
  ASSERT_TRUE(client->Send(absl::StrCat("quit\n", std::string(512 << 10, 'x'))).ok());
  // An orderly end after the goodbye; a reset is Aborted.
  EXPECT_THAT(testutil::ReadToEof(*client), IsOkAndHolds("bye\n"));
  // The server lingers until we close too (or linger_timeout).
  client->Close();
  EXPECT_TRUE(WaitFor([&] { return server->active_connections() == 0; }));
}

// Sends a long goodbye, more than the socket takes at once, and closes.
class LongByeHandler : public Handler {
 public:
  static constexpr size_t kBye = 256 << 10;
  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    conn.Send(std::string(kBye, 'b')).IgnoreError();
    return HandlerResult::Close();
  }
};

// A close that first drains its queued output then lingers for linger_timeout, however
// short the drain's own bound (send_timeout). Before, the lingering close kept the
// drain's deadline and ended when send_timeout had passed since the close.
TEST(LingeringCloseTest, LingeringAfterADrainLastsLingerTimeoutNotTheDrainsDeadline) {
  ServerOptions options = testutil::LoopbackOptions(HandlerFactoryOf<LongByeHandler>());
  options.transport_options.socket_options.push_back(SocketOption::SendBuffer(16 << 10));
  options.send_timeout = absl::Seconds(1);  // the drain's bound: ample for 256 KiB
  options.linger_timeout = kWait;  // until the client closes
  std::unique_ptr<Server> server = testutil::MustStart(std::move(options));
  ASSERT_NE(server, nullptr);
  std::unique_ptr<TcpSocket> client = MustConnect(*server);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Send("quit\n").ok());
  absl::StatusOr<std::string> bye = testutil::ReadToEof(*client);
  ASSERT_TRUE(bye.ok()) << bye.status();
  EXPECT_EQ(bye->size(), LongByeHandler::kBye);
  // Past the drain's second: still lingering, as the client has not closed.
  absl::SleepFor(absl::Milliseconds(1500));
  EXPECT_EQ(server->active_connections(), 1);
  client->Close();
  EXPECT_TRUE(WaitFor([&] { return server->active_connections() == 0; }));
}

TEST(LingeringCloseTest, ZeroLingerTimeoutClosesAtOnce) {
  ServerOptions options = testutil::LoopbackOptions(HandlerFactoryOf<ByeHandler>());
  options.linger_timeout = absl::ZeroDuration();
  std::unique_ptr<Server> server = testutil::MustStart(std::move(options));
  ASSERT_NE(server, nullptr);
  std::unique_ptr<TcpSocket> client = MustConnect(*server);
  ASSERT_NE(client, nullptr);
  // The send may fail part-way: with no linger the server closes as soon as it has read
  // "quit", with our input unread, and the kernel then resets the connection under the
  // rest of the send. What matters is the server's side.
  client->Send(absl::StrCat("quit\n", std::string(512 << 10, 'x'))).IgnoreError();
  // Nothing lingers: the connection is gone while the client still holds its end.
  EXPECT_TRUE(WaitFor([&] { return server->active_connections() == 0; }));
}

// Answers each complete line with "ok\n" and keeps the connection open. A "hold" line
// first holds the worker until the test releases it (a busy worker, as under load).
class LineHandler : public Handler {
 public:
  static absl::Notification* holding;
  static absl::Notification* release;

  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    partial_.append(data.data(), data.size());
    size_t at;
    while ((at = partial_.find('\n')) != std::string::npos) {
      if (absl::string_view(partial_).substr(0, at) == "hold") {
        holding->Notify();
        release->WaitForNotificationWithTimeout(kWait);
      }
      conn.Send("ok\n").IgnoreError();
      partial_.erase(0, at + 1);
    }
    return HandlerResult::Continue();
  }

 private:
  std::string partial_;
};
absl::Notification* LineHandler::holding = nullptr;
absl::Notification* LineHandler::release = nullptr;

// Bytes this socket has sent that the peer's kernel has not acknowledged yet.
int Unacknowledged(int fd) {
  int n = -1;
  return ::ioctl(fd, SIOCOUTQ, &n) == 0 ? n : -1;
}

// Requests that had arrived when Stop came, while the worker was busy, are answered;
// then every connection ends in an orderly close. Before, Stop gave each connection its
// HandleShutdown at once: the requests in the socket went unanswered, and their unread
// bytes made the kernel reset the connections.
TEST(LingeringCloseTest, StopAnswersWhatHadArrivedAndResetsNothing) {
  absl::Notification holding;
  absl::Notification release;
  LineHandler::holding = &holding;
  LineHandler::release = &release;
  ServerOptions options = testutil::LoopbackOptions(HandlerFactoryOf<LineHandler>());
  options.num_workers = 1;
  options.shutdown_timeout = absl::Seconds(10);
  options.linger_timeout = absl::Seconds(2);  // the default
  std::unique_ptr<Server> server = testutil::MustStart(std::move(options));
  ASSERT_NE(server, nullptr);
  std::vector<std::unique_ptr<TcpSocket>> clients;
  for (int i = 0; i < 20; ++i) {
    clients.push_back(MustConnect(*server));
    ASSERT_NE(clients.back(), nullptr);
    // One round trip first: the connection is served and idle.
    ASSERT_TRUE(clients.back()->Send("req\n").ok());
    ASSERT_EQ(*clients.back()->Recv(3, kWait), "ok\n");
  }
  // The worker gets busy; meanwhile requests arrive, and Stop comes.
  std::unique_ptr<TcpSocket> busy = MustConnect(*server);
  ASSERT_NE(busy, nullptr);
  ASSERT_TRUE(busy->Send("hold\n").ok());
  ASSERT_TRUE(holding.WaitForNotificationWithTimeout(kWait));
  for (auto& c : clients) ASSERT_TRUE(c->Send("req\nreq\nreq\nhalf a req").ok());
  for (auto& c : clients) {  // every byte is in the server's kernel
    ASSERT_TRUE(WaitFor([&] { return Unacknowledged(c->fd()) == 0; }));
  }
  std::thread stopper([&] { EXPECT_TRUE(server->Stop().ok()); });
  ASSERT_TRUE(WaitFor([&] { return server->status() == ServerStatus::kStopped; }));
  absl::SleepFor(absl::Milliseconds(100));  // Stop has posted the workers' shutdown
  release.Notify();
  stopper.join();
  EXPECT_THAT(testutil::ReadToEof(*busy), IsOkAndHolds("ok\n"));
  for (auto& c : clients) {
    EXPECT_THAT(testutil::ReadToEof(*c), IsOkAndHolds("ok\nok\nok\n"));  // no reset
  }
}

}  // namespace
}  // namespace islet
