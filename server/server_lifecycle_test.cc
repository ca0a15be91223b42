// Server control over real loopback sockets: start, several connections at once,
// suspend / resume, and several listen sockets. With server_info_test and
// server_stop_test, the counterpart of Thousand Island's server_test.exs.
#include <cerrno>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "server/server_test_fixture.h"
#include "server/test_util.h"
#include "transport/tcp_transport.h"

namespace islet {
namespace {

using testutil::ConnectAndEcho;
using testutil::ExpectEcho;
using testutil::kWait;
using testutil::MustConnect;
using testutil::RecordedEvent;
using testutil::ServerTest;
using testutil::WaitFor;

TEST_F(ServerTest, StartWithPortZeroReportsTheResolvedPort) {
  ASSERT_TRUE(Start(Options()));
  absl::StatusOr<SocketInfo> where = server_->ListenerInfo();
  ASSERT_TRUE(where.ok()) << where.status();
  EXPECT_NE(where->port, 0);
  EXPECT_EQ(where->address, "127.0.0.1");
  EXPECT_EQ(where->family, AddressFamily::kIpv4);
  EXPECT_EQ(server_->status(), ServerStatus::kRunning);

  ServerInfo info = server_->Info();
  EXPECT_EQ(info.status, ServerStatus::kRunning);
  ASSERT_TRUE(info.local.has_value());
  EXPECT_EQ(*info.local, *where);
  EXPECT_EQ(info.active_connections, 0);
  EXPECT_TRUE(server_->Connections().empty());

  std::unique_ptr<TcpSocket> client = ConnectAndEcho(*server_, "HELLO");
  ASSERT_NE(client, nullptr);
  EXPECT_TRUE(server_->Stop().ok());
}

TEST_F(ServerTest, HandlesSeveralConnectionsConcurrently) {
  ASSERT_TRUE(Start(Options()));
  std::unique_ptr<TcpSocket> a = MustConnect(*server_);
  std::unique_ptr<TcpSocket> b = MustConnect(*server_);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(a->Send("HELLO").ok());
  ASSERT_TRUE(b->Send("BONJOUR").ok());
  // Out of order: b first.
  absl::StatusOr<std::string> got_b = b->Recv(7, kWait);
  absl::StatusOr<std::string> got_a = a->Recv(5, kWait);
  ASSERT_TRUE(got_b.ok()) << got_b.status();
  ASSERT_TRUE(got_a.ok()) << got_a.status();
  EXPECT_EQ(*got_b, "BONJOUR");
  EXPECT_EQ(*got_a, "HELLO");
}

TEST_F(ServerTest, SuspendRefusesNewConnectionsButKeepsExistingOnes) {
  ASSERT_TRUE(Start(Options()));
  const SocketInfo where = *server_->ListenerInfo();

  std::unique_ptr<TcpSocket> existing = ConnectAndEcho(*server_, "before");
  ASSERT_NE(existing, nullptr);

  ASSERT_TRUE(server_->Suspend().ok());
  EXPECT_EQ(server_->status(), ServerStatus::kSuspended);
  absl::StatusOr<SocketInfo> info = server_->ListenerInfo();
  EXPECT_TRUE(absl::IsFailedPrecondition(info.status())) << info.status();
  ServerInfo server_info = server_->Info();
  EXPECT_EQ(server_info.status, ServerStatus::kSuspended);
  EXPECT_FALSE(server_info.local.has_value());
  EXPECT_EQ(server_info.active_connections, 1);

  EXPECT_EQ(testutil::ConnectErrno(where.port), ECONNREFUSED);
  ExpectEcho(*existing, "during");
  EXPECT_TRUE(server_->Suspend().ok());  // again: harmless
  EXPECT_EQ(testutil::ConnectErrno(where.port), ECONNREFUSED);
  EXPECT_TRUE(telemetry_->WaitFor(TelemetryEventType::kListenerStop, 1));

  ASSERT_TRUE(server_->Resume().ok());
  EXPECT_TRUE(server_->Resume().ok());  // again: harmless
  EXPECT_EQ(server_->status(), ServerStatus::kRunning);
  absl::StatusOr<SocketInfo> again = server_->ListenerInfo();
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->port, where.port);  // the same port, although it was asked as 0

  std::unique_ptr<TcpSocket> fresh = ConnectAndEcho(*server_, "after");
  ASSERT_NE(fresh, nullptr);
  ExpectEcho(*existing, "still");
  EXPECT_EQ(server_->Info().status, ServerStatus::kRunning);
  EXPECT_TRUE(WaitFor([&] { return server_->Info().active_connections == 2; }));

  // A new listener span per listen: two starts, the first one stopped.
  EXPECT_EQ(telemetry_->Count(TelemetryEventType::kListenerStart), 2);
  EXPECT_EQ(telemetry_->Count(TelemetryEventType::kListenerStop), 1);
  std::vector<RecordedEvent> starts = telemetry_->Events(TelemetryEventType::kListenerStart);
  ASSERT_EQ(starts.size(), 2u);
  EXPECT_NE(starts[0].span_id, starts[1].span_id);
  EXPECT_EQ(telemetry_->Events(TelemetryEventType::kListenerStop)[0].span_id, starts[0].span_id);
  EXPECT_TRUE(server_->Stop().ok());
}

TEST_F(ServerTest, ResumeFailsCleanlyWhileSomeoneElseHoldsThePort) {
  ASSERT_TRUE(Start(Options()));
  const SocketInfo where = *server_->ListenerInfo();
  std::unique_ptr<TcpSocket> existing = ConnectAndEcho(*server_, "hi");
  ASSERT_NE(existing, nullptr);
  ASSERT_TRUE(server_->Suspend().ok());

  // While suspended the port is free, and another server takes it.
  ServerOptions squatter_options = Options();
  squatter_options.port = where.port;
  std::unique_ptr<Server> squatter;
  ASSERT_TRUE(WaitFor([&] {
    absl::StatusOr<std::unique_ptr<Server>> s = Server::Start(squatter_options);
    if (s.ok()) squatter = *std::move(s);
    return squatter != nullptr;
  }));
  absl::Status resumed = server_->Resume();
  EXPECT_TRUE(absl::IsAlreadyExists(resumed)) << resumed;
  EXPECT_EQ(server_->status(), ServerStatus::kSuspended);
  ExpectEcho(*existing, "still here");

  ASSERT_TRUE(squatter->Stop().ok());
  squatter.reset();
  ASSERT_TRUE(server_->Resume().ok());
  EXPECT_EQ(server_->ListenerInfo()->port, where.port);
  std::unique_ptr<TcpSocket> fresh = ConnectAndEcho(*server_, "back");
  ASSERT_NE(fresh, nullptr);
  EXPECT_TRUE(server_->Stop().ok());
}

TEST_F(ServerTest, StopAfterSuspendResumeStillSaysGoodbye) {
  ASSERT_TRUE(Start(Options()));
  std::unique_ptr<TcpSocket> client = ConnectAndEcho(*server_, "hi");
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(server_->Suspend().ok());
  ASSERT_TRUE(server_->Resume().ok());
  ASSERT_TRUE(server_->Stop().ok());
  absl::StatusOr<std::string> rest = testutil::ReadToEof(*client);
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(*rest, "GOODBYE");
}

TEST_F(ServerTest, StopWhileSuspendedShutsDownConnections) {
  ASSERT_TRUE(Start(Options()));
  std::unique_ptr<TcpSocket> client = ConnectAndEcho(*server_, "hi");
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(server_->Suspend().ok());
  ASSERT_TRUE(server_->Stop().ok());
  absl::StatusOr<std::string> rest = testutil::ReadToEof(*client);
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(*rest, "GOODBYE");
  // The suspended listener was already stopped: exactly one stop per start.
  EXPECT_EQ(telemetry_->Count(TelemetryEventType::kListenerStart), 1);
  EXPECT_EQ(telemetry_->Count(TelemetryEventType::kListenerStop), 1);
  EXPECT_EQ(server_->status(), ServerStatus::kStopped);
}

TEST_F(ServerTest, TwoListenSocketsWithTwoAcceptorsServeConnections) {
  ServerOptions options = Options();
  options.num_acceptors = 2;
  options.num_listen_sockets = 2;
  ASSERT_TRUE(Start(std::move(options)));
  EXPECT_TRUE(telemetry_->WaitFor(TelemetryEventType::kAcceptorStart, 2));

  constexpr int kClients = 40;
  std::vector<std::unique_ptr<TcpSocket>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(ConnectAndEcho(*server_, absl::StrCat("n", i)));
    ASSERT_NE(clients.back(), nullptr);
  }
  ASSERT_TRUE(WaitFor([&] { return server_->active_connections() == kClients; }));
  // SO_REUSEPORT spreads connections by a hash of their addresses: with 40 of them,
  // both listeners (and so both acceptors) get some.
  std::set<int> acceptors;
  for (const ConnectionSummary& c : server_->Connections()) acceptors.insert(c.acceptor);
  EXPECT_EQ(acceptors, (std::set<int>{0, 1}));

  ASSERT_TRUE(server_->Suspend().ok());
  ASSERT_TRUE(server_->Resume().ok());
  std::unique_ptr<TcpSocket> late = ConnectAndEcho(*server_, "late");
  ASSERT_NE(late, nullptr);
  EXPECT_TRUE(server_->Stop().ok());
  EXPECT_EQ(telemetry_->Count(TelemetryEventType::kAcceptorStop), 2);
}

}  // namespace
}  // namespace islet
