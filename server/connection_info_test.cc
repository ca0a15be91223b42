// What a connection tells about itself and its socket, as a handler sees it, over real
// loopback sockets: local and peer addresses, statistics, socket options, and the same
// on unix-domain and IPv6 listeners. Part of the port of Thousand Island's
// socket_test.exs (with connection_io_test, connection_sendfile_test and
// connection_post_test).
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <any>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/connection.h"
#include "server/connection_test_fixture.h"
#include "server/handler.h"
#include "server/scripted_handler.h"
#include "server/server.h"
#include "server/telemetry.h"
#include "server/test_util.h"
#include "transport/socket_options.h"
#include "transport/tcp_transport.h"

namespace islet {
namespace {

using testutil::ConnectionTest;
using testutil::Ctx;
using testutil::Echo;
using testutil::IsOkAndHolds;
using testutil::kDeadline;

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

// ---- The peer's address, for a peer gone before its connection starts ----

// Makes each handler only when the test says: the connection is accepted, and its
// peer can reset it before the server asks the socket anything.
struct HeldUntilReset {
  absl::Notification entered;
  absl::Notification release;

  HandlerFactory Wrap(HandlerFactory inner) {
    return [this, inner = std::move(inner)](const std::any& options) {
      entered.Notify();
      release.WaitForNotification();
      return inner(options);
    };
  }
};

class PeerResetBeforeStartTest : public ::testing::TestWithParam<std::string> {};

// A peer that resets its connection (SO_LINGER 0) between accept(2) and the start of
// the connection has no address left for getpeername(2); the one accept(2) returned is
// reported. Before, connection.start and connection.stop said remote=:0.
TEST_P(PeerResetBeforeStartTest, IsReportedWithItsRealAddress) {
  HeldUntilReset held;
  ServerOptions options =
      testutil::LoopbackOptions(held.Wrap(HandlerFactoryOf<testutil::EchoHandler>()));
  options.transport_options.address = GetParam();
  const std::string name = options.name;
  testutil::TelemetryRecorder recorder(name);
  std::unique_ptr<Server> server = testutil::MustStart(std::move(options));
  ASSERT_NE(server, nullptr);
  std::unique_ptr<TcpSocket> client = testutil::MustConnect(*server);
  ASSERT_NE(client, nullptr);
  absl::StatusOr<SocketInfo> client_end = client->LocalInfo();
  ASSERT_TRUE(client_end.ok()) << client_end.status();
  ASSERT_TRUE(held.entered.WaitForNotificationWithTimeout(kDeadline));
  const linger reset = {1, 0};
  ASSERT_EQ(::setsockopt(client->fd(), SOL_SOCKET, SO_LINGER, &reset, sizeof(reset)), 0);
  client->Close();  // a reset, before the server has made the connection
  held.release.Notify();

  ASSERT_TRUE(recorder.WaitFor(TelemetryEventType::kConnectionStop));
  ASSERT_TRUE(server->Stop().ok());
  for (TelemetryEventType type :
       {TelemetryEventType::kConnectionStart, TelemetryEventType::kConnectionStop}) {
    const std::vector<testutil::RecordedEvent> events = recorder.Events(type);
    ASSERT_EQ(events.size(), 1u) << TelemetryEventName(type);
    ASSERT_TRUE(events[0].remote.has_value()) << TelemetryEventName(type);
    EXPECT_EQ(events[0].remote->ToString(), client_end->ToString()) << TelemetryEventName(type);
    EXPECT_EQ(events[0].remote->port, client_end->port);
  }
}

INSTANTIATE_TEST_SUITE_P(Families, PeerResetBeforeStartTest,
                         ::testing::Values("127.0.0.1", "::1"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param == "::1" ? "Ipv6" : "Ipv4";
                         });

}  // namespace
}  // namespace islet
