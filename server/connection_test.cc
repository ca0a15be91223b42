// The Connection API as a handler sees it, over real loopback sockets: the port of
// Thousand Island's socket_test.exs (send/recv, info, options, sendfile, shutdown,
// telemetry) plus what the C++ API adds (blocking Recv inside callbacks, posting
// through ConnectionHandle, unix-domain and IPv6 listeners).
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <any>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
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
#include "server/handler.h"
#include "server/scripted_handler.h"
#include "server/server.h"
#include "server/telemetry.h"
#include "server/test_util.h"
#include "transport/socket_options.h"
#include "transport/tcp_transport.h"

namespace islet {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::Not;
using ::testing::StartsWith;
using ::testing::UnorderedElementsAreArray;
using testutil::Ctx;
using testutil::Echo;
using testutil::IsOkAndHolds;
using testutil::kDeadline;
using testutil::Pattern;
using testutil::RecordedEvent;

std::string TempPath(absl::string_view name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return absl::StrCat(dir != nullptr ? dir : "/tmp", "/", name, "-", ::getpid());
}

std::string WriteTempFile(absl::string_view name, absl::string_view contents) {
  const std::string path = TempPath(name);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  out.close();
  EXPECT_TRUE(out.good()) << path;
  return path;
}

// The scripted handler of scripted_handler.h, one loopback server per test.
class ConnectionTest : public testutil::ScriptedServerTest {
 protected:
  // The bytes of every event of `type`, added up.
  uint64_t SumBytes(TelemetryEventType type) const {
    uint64_t total = 0;
    for (const RecordedEvent& e : telemetry_->Events(type)) total += e.bytes;
    return total;
  }
};

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

// ---- Connection information ----

TEST_F(ConnectionTest, ConnectionInfoMatchesTheClientsView) {
  script_.connection = [](const Ctx& ctx, Connection& conn) {
    auto local = conn.LocalInfo();
    auto peer = conn.PeerInfo();
    EXPECT_TRUE(local.ok()) << local.status();
    EXPECT_TRUE(peer.ok()) << peer.status();
    if (local.ok()) ctx.Note(absl::StrCat("local=", local->ToString()));
    if (peer.ok()) {
      ctx.Note(absl::StrCat("peer=", peer->ToString()));
      EXPECT_FALSE(peer->peer_certificate.has_value());
    }
    EXPECT_FALSE(conn.Secure());
    EXPECT_FALSE(conn.PeerCertificate().has_value());
    EXPECT_TRUE(absl::IsNotFound(conn.NegotiatedProtocol().status()))
        << conn.NegotiatedProtocol().status();
    EXPECT_TRUE(absl::IsNotFound(conn.GetConnectionInformation().status()))
        << conn.GetConnectionInformation().status();
    auto stats = conn.GetStat();
    EXPECT_TRUE(stats.ok()) << stats.status();
    EXPECT_NE(conn.id(), 0u);
    EXPECT_NE(conn.span_id(), 0u);
    EXPECT_EQ(conn.handle().id(), conn.id());
    EXPECT_TRUE(conn.handle() == conn.handle());
    ctx.Note("checked");
    return HandlerResult::Continue();
  };
  ASSERT_TRUE(Start(Options()));
  auto client = ConnectAs(1);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(WaitFor(1, "checked"));
  auto client_local = client->LocalInfo();
  auto client_peer = client->PeerInfo();
  ASSERT_TRUE(client_local.ok());
  ASSERT_TRUE(client_peer.ok());
  auto listening = server_->ListenerInfo();
  ASSERT_TRUE(listening.ok());
  EXPECT_EQ(client_peer->address, "127.0.0.1");
  EXPECT_EQ(client_peer->port, listening->port);
  EXPECT_TRUE(Saw(1, absl::StrCat("local=", client_peer->ToString())));
  EXPECT_TRUE(Saw(1, absl::StrCat("peer=", client_local->ToString())));
}

TEST_F(ConnectionTest, GetStatCountsTheBytesSoFar) {
  script_.data = [](const Ctx& ctx, absl::string_view data, Connection& conn) {
    auto before = conn.GetStat();
    EXPECT_TRUE(before.ok());
    EXPECT_TRUE(conn.Send("HELLO").ok());
    auto after = conn.GetStat();
    EXPECT_TRUE(after.ok());
    if (before.ok() && after.ok()) {
      ctx.Note(absl::StrCat("received=", before->bytes_received, " calls=",
                            before->receive_calls, " sent=", after->bytes_sent - before->bytes_sent));
    }
    return HandlerResult::Continue();
  };
  auto client = StartAndConnect();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Send("1234567").ok());
  auto hello = client->Recv(5, kDeadline);
  ASSERT_TRUE(hello.ok()) << hello.status();
  EXPECT_TRUE(WaitFor(1, "received=7 calls=1 sent=5")) << ::testing::PrintToString(EventsOf(1));
}

TEST_F(ConnectionTest, SetOptionsAndGetOptionsRoundTrip) {
  script_.connection = [](const Ctx& ctx, Connection& conn) {
    const std::vector<SocketOption> wanted = {
        SocketOption::NoDelay(false),          SocketOption::KeepAlive(true),
        SocketOption::KeepIdle(absl::Seconds(30)), SocketOption::KeepInterval(absl::Seconds(7)),
        SocketOption::KeepCount(4),            SocketOption::Linger(absl::Seconds(5)),
        SocketOption::Priority(3),             SocketOption::SendTimeout(absl::Milliseconds(1234)),
    };
    EXPECT_TRUE(conn.SetOptions(wanted).ok());
    std::vector<SocketOptionName> names;
    for (const SocketOption& o : wanted) names.push_back(o.name());
    auto got = conn.GetOptions(names);
    EXPECT_TRUE(got.ok()) << got.status();
    if (got.ok()) { EXPECT_EQ(*got, wanted); }
    // All or nothing: a refused option changes nothing.
    const std::vector<SocketOption> refused = {SocketOption::NoDelay(true),
                                               SocketOption::Blocking(true)};
    EXPECT_TRUE(absl::IsInvalidArgument(conn.SetOptions(refused)));
    auto nodelay = conn.GetOptions({SocketOptionName::kNoDelay});
    EXPECT_TRUE(nodelay.ok());
    if (nodelay.ok()) { EXPECT_EQ(nodelay->at(0), SocketOption::NoDelay(false)); }
    ctx.Note("checked");
    return HandlerResult::Continue();
  };
  script_.data = Echo;
  ASSERT_TRUE(Start(Options()));
  auto client = ConnectAs(1);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(WaitFor(1, "checked"));
  // The connection still works with its new options.
  ASSERT_THAT(testutil::RoundTrip(*client, "ping", kDeadline), IsOkAndHolds("ping"));
}

// ---- Sendfile ----

TEST_F(ConnectionTest, SendfileWholeFileThenASlice) {
  const std::string path = WriteTempFile("sendfile-small", "ABCDEF");
  script_.connection = [path](const Ctx&, Connection& conn) {
    auto whole = conn.Sendfile(path);
    EXPECT_TRUE(whole.ok()) << whole.status();
    if (whole.ok()) { EXPECT_EQ(*whole, 6u); }
    auto slice = conn.Sendfile(path, 1, 3);
    EXPECT_TRUE(slice.ok()) << slice.status();
    if (slice.ok()) { EXPECT_EQ(*slice, 3u); }
    return HandlerResult::Close();
  };
  auto client = StartAndConnect();
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(testutil::ReadToEof(*client, kDeadline), IsOkAndHolds("ABCDEFBCD"));
  RecordedEvent stop = StopEvent();
  ASSERT_TRUE(stop.stats.has_value());
  EXPECT_EQ(stop.stats->bytes_sent, 9u);
  std::vector<RecordedEvent> files = telemetry_->Events(TelemetryEventType::kConnectionSendfile);
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[0].bytes, 6u);
  EXPECT_EQ(files[1].bytes, 3u);
  EXPECT_EQ(files[0].detail, path);
  ::unlink(path.c_str());
}

TEST_F(ConnectionTest, SendfileOfALargeFileInterleavedWithSendsKeepsOrderAndResumesReading) {
  // The client reads nothing until the callback has returned, so most of the file
  // waits in the connection's queue, between two ordinary sends; reading from the
  // client is paused meanwhile and must resume once the file has gone out.
  const std::string contents = Pattern(8 << 20);
  const std::string path = WriteTempFile("sendfile-large", contents);
  script_.connection = [path](const Ctx& ctx, Connection& conn) {
    EXPECT_TRUE(conn.Send("<").ok());
    auto sent = conn.Sendfile(path);
    EXPECT_TRUE(sent.ok()) << sent.status();
    if (sent.ok()) { EXPECT_EQ(*sent, 8u << 20); }
    EXPECT_TRUE(conn.Send(">").ok());
    ctx.Note("returns");
    return HandlerResult::Continue();
  };
  script_.data = Echo;
  auto client = StartAndConnect();
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(WaitFor(1, "returns"));
  auto got = client->Recv(contents.size() + 2, kDeadline);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), contents.size() + 2);
  EXPECT_EQ(got->front(), '<');
  EXPECT_EQ(got->back(), '>');
  EXPECT_TRUE(got->substr(1, contents.size()) == contents) << "file bytes differ";
  ASSERT_THAT(testutil::RoundTrip(*client, "more", kDeadline), IsOkAndHolds("more"));
  client->Close();
  RecordedEvent stop = StopEvent();
  ASSERT_TRUE(stop.stats.has_value());
  EXPECT_EQ(stop.stats->bytes_sent, contents.size() + 2 + 4);
  std::vector<RecordedEvent> files = telemetry_->Events(TelemetryEventType::kConnectionSendfile);
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].bytes, contents.size());
  ::unlink(path.c_str());
}

TEST_F(ConnectionTest, SendfileErrorsAreReturnedAndTheConnectionCarriesOn) {
  const std::string path = WriteTempFile("sendfile-errors", "ABCDEF");
  const std::string missing = TempPath("no-such-file");
  script_.connection = [path, missing](const Ctx& ctx, Connection& conn) {
    auto none = conn.Sendfile(missing);
    EXPECT_TRUE(absl::IsNotFound(none.status())) << none.status();
    auto past = conn.Sendfile(path, 7, 1);
    EXPECT_TRUE(absl::IsInvalidArgument(past.status())) << past.status();
    auto empty = conn.Sendfile(path, 6);  // at the end: nothing to send
    EXPECT_TRUE(empty.ok()) << empty.status();
    if (empty.ok()) { EXPECT_EQ(*empty, 0u); }
    auto tail = conn.Sendfile(path, 4, 100);  // clipped at the end of the file
    EXPECT_TRUE(tail.ok()) << tail.status();
    if (tail.ok()) { EXPECT_EQ(*tail, 2u); }
    EXPECT_TRUE(conn.Send(" still here").ok());
    return HandlerResult::Continue();
  };
  script_.data = Echo;
  auto client = StartAndConnect();
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(client->Recv(13, kDeadline), IsOkAndHolds("EF still here"));
  auto echoed = testutil::RoundTrip(*client, "ping", kDeadline);
  ASSERT_TRUE(echoed.ok()) << echoed.status();
  EXPECT_EQ(telemetry_->Count(TelemetryEventType::kConnectionSendfileError), 2);
  ::unlink(path.c_str());
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

// ---- Posting through ConnectionHandle ----

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

// ---- Other listeners ----

TEST_F(ConnectionTest, UnixSocketServerServesEcho) {
  const std::string path = absl::StrCat("/tmp/islet-conn-test-", ::getpid(), ".sock");
  script_.connection = [path](const Ctx& ctx, Connection& conn) {
    auto local = conn.LocalInfo();
    EXPECT_TRUE(local.ok()) << local.status();
    if (local.ok()) {
      EXPECT_EQ(local->family, AddressFamily::kUnix);
      EXPECT_EQ(local->address, path);
    }
    auto peer = conn.PeerInfo();
    EXPECT_TRUE(peer.ok()) << peer.status();
    if (peer.ok()) { EXPECT_EQ(peer->family, AddressFamily::kUnix); }
    ctx.Note("checked");
    return HandlerResult::Continue();
  };
  script_.data = Echo;
  ServerOptions options = Options();
  options.transport_options.unix_path = path;
  ASSERT_TRUE(Start(std::move(options)));
  auto where = server_->ListenerInfo();
  ASSERT_TRUE(where.ok()) << where.status();
  EXPECT_EQ(where->family, AddressFamily::kUnix);
  EXPECT_EQ(where->address, path);
  for (int i = 0; i < 2; ++i) {
    auto client = Connect();
    ASSERT_NE(client, nullptr);
    ASSERT_THAT(testutil::RoundTrip(*client, "over unix", kDeadline), IsOkAndHolds("over unix"));
  }
  EXPECT_TRUE(WaitFor(2, "checked"));
  ASSERT_TRUE(server_->Stop().ok());
  struct stat st;
  EXPECT_NE(::stat(path.c_str(), &st), 0) << path << " was left behind";
}

TEST_F(ConnectionTest, Ipv6LoopbackServerServesEcho) {
  script_.connection = [](const Ctx& ctx, Connection& conn) {
    auto peer = conn.PeerInfo();
    EXPECT_TRUE(peer.ok()) << peer.status();
    if (peer.ok()) ctx.Note(absl::StrCat("peer=", peer->ToString()));
    return HandlerResult::Continue();
  };
  script_.data = Echo;
  ServerOptions options = Options();
  options.transport_options.address = "::1";
  telemetry_ = std::make_unique<testutil::TelemetryRecorder>(options.name);
  auto server = Server::Start(std::move(options));
  if (!server.ok() && absl::IsInvalidArgument(server.status())) {
    GTEST_SKIP() << "no IPv6 loopback here: " << server.status();
  }
  ASSERT_TRUE(server.ok()) << server.status();
  server_ = *std::move(server);
  auto where = server_->ListenerInfo();
  ASSERT_TRUE(where.ok());
  EXPECT_EQ(where->family, AddressFamily::kIpv6);
  EXPECT_EQ(where->address, "::1");
  auto client = ConnectAs(1);
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(testutil::RoundTrip(*client, "over ipv6", kDeadline), IsOkAndHolds("over ipv6"));
  auto client_local = client->LocalInfo();
  ASSERT_TRUE(client_local.ok());
  EXPECT_EQ(client_local->family, AddressFamily::kIpv6);
  EXPECT_TRUE(Saw(1, absl::StrCat("peer=", client_local->ToString())));
}

}  // namespace
}  // namespace islet
