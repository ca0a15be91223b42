// The Connection API as a handler sees it, over real loopback sockets: sending and
// receiving with their telemetry, blocking Recv inside callbacks, and shutting down the
// write side. Part of the port of Thousand Island's socket_test.exs (with
// connection_sendfile_test, connection_info_test and connection_post_test).
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/connection.h"
#include "server/connection_test_fixture.h"
#include "server/handler.h"
#include "server/scripted_handler.h"
#include "server/server.h"
#include "server/telemetry.h"
#include "server/test_util.h"
#include "transport/io_wait.h"
#include "transport/tcp_transport.h"

namespace islet {
namespace {

using ::testing::ElementsAre;
using ::testing::UnorderedElementsAreArray;
using testutil::ConnectionTest;
using testutil::Ctx;
using testutil::Echo;
using testutil::IsOkAndHolds;
using testutil::kDeadline;
using testutil::Pattern;
using testutil::RecordedEvent;

// ---- Send and receive ----

TEST_F(ConnectionTest, SendsAndReceivesAndEmitsAsyncRecvAndSendTelemetry) {
  script_.data = Echo;
  auto client = StartAndConnect();
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(testutil::RoundTrip(*client, "HELLO", kDeadline), IsOkAndHolds("HELLO"));
  client->Close();
  RecordedEvent stop = StopEvent();
  EXPECT_EQ(SumBytes(TelemetryEventType::kConnectionAsyncRecv), 5u);
  EXPECT_EQ(SumBytes(TelemetryEventType::kConnectionSend), 5u);
  ASSERT_TRUE(stop.stats.has_value());
  EXPECT_EQ(stop.stats->bytes_received, 5u);
  EXPECT_EQ(stop.stats->bytes_sent, 5u);
}

TEST_F(ConnectionTest, SendOfSeveralBuffersArrivesInOrderAsOneSend) {
  script_.connection = [](const Ctx&, Connection& conn) {
    const absl::string_view parts[] = {"a", "", "bc", "def"};
    EXPECT_TRUE(conn.Send(absl::MakeConstSpan(parts)).ok());
    return HandlerResult::Close();
  };
  auto client = StartAndConnect();
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(testutil::ReadToEof(*client, kDeadline), IsOkAndHolds("abcdef"));
  StopEvent();
  std::vector<RecordedEvent> sends = telemetry_->Events(TelemetryEventType::kConnectionSend);
  ASSERT_EQ(sends.size(), 1u);
  EXPECT_EQ(sends[0].bytes, 6u);
}

TEST_F(ConnectionTest, ExactlyOneStartAndOneStopPerConnection) {
  script_.data = Echo;
  ASSERT_TRUE(Start(Options()));
  constexpr int kClients = 6;
  std::vector<std::unique_ptr<TcpSocket>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(Connect());
    ASSERT_NE(clients.back(), nullptr);
  }
  uint64_t exchanged = 0;
  for (int i = 0; i < kClients; ++i) {
    const std::string ping = absl::StrCat("ping-", i);
    ASSERT_THAT(testutil::RoundTrip(*clients[i], ping, kDeadline), IsOkAndHolds(ping));
    exchanged += ping.size();
  }
  clients.clear();
  ASSERT_TRUE(telemetry_->WaitFor(TelemetryEventType::kConnectionStop, kClients, kDeadline));
  ASSERT_TRUE(server_->Stop().ok());
  std::vector<RecordedEvent> starts = telemetry_->Events(TelemetryEventType::kConnectionStart);
  std::vector<RecordedEvent> stops = telemetry_->Events(TelemetryEventType::kConnectionStop);
  ASSERT_EQ(starts.size(), static_cast<size_t>(kClients));
  ASSERT_EQ(stops.size(), static_cast<size_t>(kClients));
  std::vector<uint64_t> start_ids, stop_ids, start_spans, stop_spans;
  uint64_t received = 0, sent = 0;
  for (const RecordedEvent& e : starts) {
    start_ids.push_back(e.connection_id);
    start_spans.push_back(e.span_id);
  }
  for (const RecordedEvent& e : stops) {
    stop_ids.push_back(e.connection_id);
    stop_spans.push_back(e.span_id);
    EXPECT_FALSE(e.error.has_value());
    ASSERT_TRUE(e.stats.has_value());
    received += e.stats->bytes_received;
    sent += e.stats->bytes_sent;
  }
  EXPECT_THAT(stop_ids, UnorderedElementsAreArray(start_ids));
  EXPECT_THAT(stop_spans, UnorderedElementsAreArray(start_spans));
  std::sort(start_ids.begin(), start_ids.end());
  EXPECT_EQ(std::unique(start_ids.begin(), start_ids.end()), start_ids.end());
  EXPECT_EQ(received, exchanged);
  EXPECT_EQ(sent, exchanged);
}

// ---- Shutdown ----

TEST_F(ConnectionTest, ShutdownWriteAfterSendDeliversThenEofAndStillReceives) {
  script_.connection = [](const Ctx&, Connection& conn) {
    EXPECT_TRUE(conn.Send("HELLO").ok());
    EXPECT_TRUE(conn.Shutdown(ShutdownWay::kWrite).ok());
    return HandlerResult::Continue();
  };
  auto client = StartAndConnect();
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(testutil::ReadToEof(*client, kDeadline), IsOkAndHolds("HELLO"));
  // Half closed: the server still reads.
  ASSERT_TRUE(client->Send("still talking").ok());
  ASSERT_TRUE(WaitFor(1, "data:still talking"));
  client->Close();
  EXPECT_THAT(Endings(1), ElementsAre("close"));
  std::vector<RecordedEvent> shutdowns =
      telemetry_->Events(TelemetryEventType::kConnectionSocketShutdown);
  ASSERT_EQ(shutdowns.size(), 1u);
  EXPECT_EQ(shutdowns[0].detail, "write");
}

TEST_F(ConnectionTest, ShutdownWriteWaitsForQueuedOutput) {
  // The client reads nothing until the callback has returned: the kernel cannot take
  // 8 MiB, so the shutdown must wait for the queue to drain.
  const std::string big = Pattern(8 << 20);
  script_.connection = [big](const Ctx& ctx, Connection& conn) {
    EXPECT_TRUE(conn.Send(big).ok());
    ctx.Note(conn.queued_bytes() > 0 ? "queued" : "not-queued");
    EXPECT_TRUE(conn.Shutdown(ShutdownWay::kWrite).ok());
    return HandlerResult::Continue();
  };
  ServerOptions options = Options();
  options.send_queue_limit = 64 << 20;
  ASSERT_TRUE(Start(std::move(options)));
  auto client = ConnectAs(1);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(WaitFor(1, "queued"));
  auto all = testutil::ReadToEof(*client, kDeadline);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_TRUE(*all == big) << "got " << all->size() << " of " << big.size() << " bytes";
  ASSERT_TRUE(client->Send("after").ok());
  ASSERT_TRUE(WaitFor(1, "data:after"));
  client->Close();
  EXPECT_THAT(Endings(1), ElementsAre("close"));
}

// ---- Blocking Recv inside callbacks ----

TEST_F(ConnectionTest, RecvInsideHandleConnectionReadsExactlyNAndLeavesTheRestForHandleData) {
  script_.connection = [](const Ctx& ctx, Connection& conn) {
    auto first = conn.Recv(5, kDeadline);
    EXPECT_TRUE(first.ok()) << first.status();
    if (first.ok()) ctx.Note(absl::StrCat("recv:", *first));
    return HandlerResult::Continue();
  };
  script_.data = Echo;
  auto client = StartAndConnect();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Send("hel").ok());
  ASSERT_TRUE(client->Send("loWORLD").ok());
  ASSERT_THAT(client->Recv(5, kDeadline), IsOkAndHolds("WORLD"));
  EXPECT_TRUE(Saw(1, "recv:hello"));
  std::vector<RecordedEvent> recvs = telemetry_->Events(TelemetryEventType::kConnectionRecv);
  ASSERT_EQ(recvs.size(), 1u);
  EXPECT_EQ(recvs[0].bytes, 5u);
}

TEST_F(ConnectionTest, RecvOfWhateverIsAvailableAndTimeoutsDoNotEndTheConnection) {
  script_.data = [](const Ctx& ctx, absl::string_view data, Connection& conn) {
    if (data == "wait") {
      // Nothing more comes: a timeout, which is only a result.
      auto none = conn.Recv(1, absl::Milliseconds(50));
      ctx.Note(absl::StrCat("timeout:", absl::StatusCodeToString(none.status().code())));
      auto also = conn.Recv(0, absl::Milliseconds(50));
      ctx.Note(absl::StrCat("timeout0:", absl::StatusCodeToString(also.status().code())));
      EXPECT_TRUE(conn.Send("waited").ok());
      return HandlerResult::Continue();
    }
    if (data == "more") {
      EXPECT_TRUE(conn.Send("go").ok());
      auto any = conn.Recv(0, kDeadline);  // whatever the client sends next
      EXPECT_TRUE(any.ok()) << any.status();
      if (any.ok()) ctx.Note(absl::StrCat("any:", *any));
      return HandlerResult::Continue();
    }
    return Echo(ctx, data, conn);
  };
  auto client = StartAndConnect();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Send("wait").ok());
  ASSERT_THAT(client->Recv(6, kDeadline), IsOkAndHolds("waited"));
  ASSERT_TRUE(client->Send("more").ok());
  ASSERT_THAT(client->Recv(2, kDeadline), IsOkAndHolds("go"));
  ASSERT_TRUE(client->Send("xyz").ok());
  ASSERT_TRUE(WaitFor(1, "any:xyz"));
  EXPECT_TRUE(Saw(1, "timeout:DEADLINE_EXCEEDED"));
  EXPECT_TRUE(Saw(1, "timeout0:DEADLINE_EXCEEDED"));
  // The connection is as good as before.
  ASSERT_THAT(testutil::RoundTrip(*client, "ping", kDeadline), IsOkAndHolds("ping"));
  EXPECT_EQ(telemetry_->Count(TelemetryEventType::kConnectionRecvError), 2);
  std::vector<RecordedEvent> recvs = telemetry_->Events(TelemetryEventType::kConnectionRecv);
  ASSERT_EQ(recvs.size(), 1u);
  EXPECT_EQ(recvs[0].bytes, 3u);
}

TEST_F(ConnectionTest, RecvFlushesQueuedOutputFirstSoRequestReplyInOneCallbackWorks) {
  // The reply must leave before the server blocks reading the client's answer to it.
  // The client reads nothing until the reply is queued (8 MiB: more than the kernel
  // takes), so without the flush both ends would wait for each other.
  const std::string big = Pattern(8 << 20);
  script_.data = [big](const Ctx& ctx, absl::string_view data, Connection& conn) {
    EXPECT_TRUE(conn.Send(big).ok());
    ctx.Note(conn.queued_bytes() > 0 ? "queued" : "not-queued");
    auto ack = conn.Recv(3, kDeadline);
    EXPECT_TRUE(ack.ok()) << ack.status();
    if (ack.ok()) ctx.Note(absl::StrCat("recv:", *ack));
    EXPECT_EQ(conn.queued_bytes(), 0u);
    EXPECT_TRUE(conn.Send("done").ok());
    return HandlerResult::Continue();
  };
  ServerOptions options = Options();
  options.send_queue_limit = 64 << 20;
  auto client = StartAndConnect(std::move(options));
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Send("go").ok());
  ASSERT_TRUE(WaitFor(1, "queued"));
  auto got = client->Recv(big.size(), kDeadline);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(*got == big);
  ASSERT_TRUE(client->Send("ack").ok());
  ASSERT_THAT(client->Recv(4, kDeadline), IsOkAndHolds("done"));
  EXPECT_TRUE(Saw(1, "recv:ack"));
}

TEST_F(ConnectionTest, RecvAfterThePeerClosedReportsTheCloseThenHandleCloseRuns) {
  script_.data = [](const Ctx& ctx, absl::string_view, Connection& conn) {
    auto more = conn.Recv(10, kDeadline);
    ctx.Note(absl::StrCat("recv:", absl::StatusCodeToString(more.status().code())));
    return HandlerResult::Continue();
  };
  auto client = StartAndConnect();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Send("ping").ok());
  ASSERT_TRUE(WaitFor(1, "data:ping"));
  ASSERT_TRUE(client->Send("pong").ok());  // fewer than the 10 bytes asked for
  client->Close();
  EXPECT_THAT(Endings(1), ElementsAre("close"));
  EXPECT_TRUE(Saw(1, "recv:OUT_OF_RANGE"));
}

// What a blocking Recv inside HandleData takes and what HandleData is handed make one
// stream, in order, however the bytes arrive. (On io_uring, several receives of one
// connection can complete in one loop turn: each is filed with the connection before
// any handler runs, so Recv, which reads the socket only after them, never jumps ahead.)
TEST_F(ConnectionTest, RecvInsideHandleDataAndHandleDataReadOneOrderedStream) {
  script_.data = [](const Ctx&, absl::string_view data, Connection& conn) {
    EXPECT_TRUE(conn.Send(data).ok());
    // Whatever else is there: often nothing (a timeout, which is only a result).
    auto more = conn.Recv(0, absl::Milliseconds(1));
    if (more.ok()) {
      EXPECT_TRUE(conn.Send(*more).ok());
    }
    return HandlerResult::Continue();
  };
  auto client = StartAndConnect();
  ASSERT_NE(client, nullptr);
  const std::string sent = Pattern(2 << 20);
  const int fd = client->fd();
  std::thread writer([&] {
    // Many small writes, so that arrivals come close together.
    for (size_t at = 0; at < sent.size();) {
      const size_t n = std::min<size_t>(1000 + at % 3000, sent.size() - at);
      const ssize_t w = ::send(fd, sent.data() + at, n, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w > 0) {
        at += static_cast<size_t>(w);
      } else if (errno != EAGAIN ||
                 !WaitForIo(fd, IoInterest::kWrite, MonotonicNow() + kDeadline, "test").ok()) {
        return;
      }
    }
  });
  std::string echoed;
  std::vector<char> buf(64 * 1024);
  while (echoed.size() < sent.size()) {
    const ssize_t n = ::recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
    if (n > 0) {
      echoed.append(buf.data(), static_cast<size_t>(n));
      continue;
    }
    if (n == 0 || errno != EAGAIN ||
        !WaitForIo(fd, IoInterest::kRead, MonotonicNow() + kDeadline, "test").ok()) {
      break;
    }
  }
  writer.join();
  ASSERT_EQ(echoed.size(), sent.size());
  EXPECT_TRUE(echoed == sent) << "the stream came back reordered";
}

// A blocking Recv right after the socket accepted bytes it has not sent yet (io_uring
// stages them) waits for them to go, and meanwhile the peer's answer may arrive: the
// Recv returns it. Before, it then waited on the descriptor, which the loop had already
// emptied into the connection's channel, until its timeout.
TEST_F(ConnectionTest, ARecvThatFirstWaitsForItsOwnOutputFindsAnAnswerThatCameMeanwhile) {
  static constexpr size_t kOut = 256 * 1024;
  script_.data = [](const Ctx& ctx, absl::string_view, Connection& conn) {
    const std::string out(kOut, 'o');
    absl::string_view rest = out;
    while (!rest.empty()) {  // what the socket takes without waiting
      const absl::string_view view = rest;
      absl::StatusOr<size_t> n = conn.socket().WriteSome(absl::MakeConstSpan(&view, 1));
      if (!n.ok()) break;
      rest.remove_prefix(*n);
    }
    auto answer = conn.socket().Recv(5, kDeadline);
    ctx.Note(absl::StrCat("answer:", answer.ok() ? *answer : answer.status().ToString()));
    if (!rest.empty()) {
      EXPECT_TRUE(conn.socket().Send(rest).ok());
    }
    return HandlerResult::Close();
  };
  ServerOptions options = Options();
  options.transport_options.socket_options.push_back(SocketOption::SendBuffer(8 << 10));
  ASSERT_TRUE(Start(std::move(options)));
  absl::StatusOr<SocketInfo> where = server_->ListenerInfo();
  ASSERT_TRUE(where.ok()) << where.status();
  // A small receive buffer: the server's output waits for room until we read.
  UniqueFd client = testutil::RawConnect(where->port, 4096);
  ASSERT_TRUE(client.valid()) << errno;
  ASSERT_EQ(::send(client.get(), "go", 2, MSG_NOSIGNAL), 2);
  absl::SleepFor(absl::Milliseconds(100));  // the server waits for room; we answer first
  ASSERT_EQ(::send(client.get(), "reply", 5, MSG_NOSIGNAL), 5);
  absl::SleepFor(absl::Milliseconds(100));
  size_t got = 0;
  char buf[16384];
  for (ssize_t n; (n = ::recv(client.get(), buf, sizeof(buf), 0)) > 0;) {
    got += static_cast<size_t>(n);
  }
  EXPECT_EQ(got, kOut);
  EXPECT_TRUE(Saw(1, "answer:reply"));
}

}  // namespace
}  // namespace islet
