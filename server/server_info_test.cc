// What a running server tells about itself, over real loopback sockets: its info, the
// list of live connections, listener / acceptor / connection telemetry, and posting to a
// connection found in that list. Part of the counterpart of Thousand Island's
// server_test.exs (with server_lifecycle_test and server_stop_test).
#include <sys/socket.h>

#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "server/server_test_fixture.h"
#include "server/telemetry.h"
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
using ::testing::UnorderedElementsAreArray;

TEST_F(ServerTest, InfoTracksActiveConnections) {
  ASSERT_TRUE(Start(Options()));
  EXPECT_EQ(server_->Info().active_connections, 0);
  std::unique_ptr<TcpSocket> a = MustConnect(*server_);
  std::unique_ptr<TcpSocket> b = MustConnect(*server_);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ExpectEcho(*a, "a");
  ExpectEcho(*b, "b");
  EXPECT_TRUE(WaitFor([&] { return server_->Info().active_connections == 2; }));
  EXPECT_EQ(server_->active_connections(), 2);

  a->Close();
  EXPECT_TRUE(WaitFor([&] { return server_->Info().active_connections == 1; }));
  b->Close();
  EXPECT_TRUE(WaitFor([&] { return server_->Info().active_connections == 0; }));
  EXPECT_TRUE(shared_->events.WaitFor("close", kWait, 2));
}

TEST_F(ServerTest, ConnectionsListsLiveConnectionsWithTheirRemoteAddresses) {
  ServerOptions options = Options();
  options.num_workers = 3;
  ASSERT_TRUE(Start(std::move(options)));

  std::vector<std::unique_ptr<TcpSocket>> clients;
  std::vector<SocketInfo> locals;
  for (int i = 0; i < 5; ++i) {
    clients.push_back(ConnectAndEcho(*server_, absl::StrCat("client ", i)));
    ASSERT_NE(clients.back(), nullptr);
    absl::StatusOr<SocketInfo> local = clients.back()->LocalInfo();
    ASSERT_TRUE(local.ok()) << local.status();
    locals.push_back(*local);
  }

  auto remotes = [&] {
    std::vector<SocketInfo> out;
    for (const ConnectionSummary& c : server_->Connections()) out.push_back(c.remote);
    return out;
  };
  std::vector<ConnectionSummary> all = server_->Connections();
  ASSERT_EQ(all.size(), 5u);
  EXPECT_THAT(remotes(), UnorderedElementsAreArray(locals));
  std::set<uint64_t> ids;
  for (const ConnectionSummary& c : all) {
    ids.insert(c.id);
    EXPECT_EQ(c.acceptor, 0);
    EXPECT_GE(c.worker, 0);
    EXPECT_LT(c.worker, 3);
    EXPECT_TRUE(c.handle.valid());
    EXPECT_EQ(c.handle.id(), c.id);
    EXPECT_GE(c.age, absl::ZeroDuration());
  }
  EXPECT_EQ(ids.size(), 5u);

  // Close two; the list follows.
  clients[1]->Close();
  clients[3]->Close();
  std::vector<SocketInfo> remaining = {locals[0], locals[2], locals[4]};
  ASSERT_TRUE(WaitFor([&] { return server_->Connections().size() == 3; }));
  EXPECT_THAT(remotes(), UnorderedElementsAreArray(remaining));
  EXPECT_EQ(server_->Info().active_connections, 3);

  for (auto& c : clients) c->Close();
  EXPECT_TRUE(WaitFor([&] { return server_->Connections().empty(); }));
}

TEST_F(ServerTest, EmitsListenerAndAcceptorTelemetry) {
  ServerOptions options = Options();
  options.num_acceptors = 2;
  const std::string name = options.name;
  // Another server's events must not show up in ours.
  ServerOptions other_options = Options();
  testutil::TelemetryRecorder other(other_options.name);
  std::unique_ptr<Server> other_server = testutil::MustStart(std::move(other_options));
  ASSERT_NE(other_server, nullptr);

  ASSERT_TRUE(Start(std::move(options)));
  const SocketInfo where = *server_->ListenerInfo();
  ASSERT_TRUE(telemetry_->WaitFor(TelemetryEventType::kAcceptorStart, 2));

  std::vector<RecordedEvent> listener_starts =
      telemetry_->Events(TelemetryEventType::kListenerStart);
  ASSERT_EQ(listener_starts.size(), 1u);
  const RecordedEvent& ls = listener_starts[0];
  EXPECT_EQ(ls.server, name);
  EXPECT_NE(ls.span_id, 0u);
  ASSERT_TRUE(ls.local.has_value());
  EXPECT_EQ(*ls.local, where);
  EXPECT_EQ(ls.detail, "tcp");
  EXPECT_GT(ls.monotonic_time, absl::ZeroDuration());

  std::set<int> indices;
  std::set<uint64_t> acceptor_spans;
  for (const RecordedEvent& a : telemetry_->Events(TelemetryEventType::kAcceptorStart)) {
    EXPECT_EQ(a.parent_span_id, ls.span_id);
    indices.insert(a.acceptor);
    acceptor_spans.insert(a.span_id);
  }
  EXPECT_EQ(indices, (std::set<int>{0, 1}));
  EXPECT_EQ(acceptor_spans.size(), 2u);

  for (int i = 0; i < 3; ++i) {
    std::unique_ptr<TcpSocket> client = ConnectAndEcho(*server_, "t");
    ASSERT_NE(client, nullptr);
  }
  ASSERT_TRUE(server_->Stop().ok());

  std::vector<RecordedEvent> acceptor_stops =
      telemetry_->Events(TelemetryEventType::kAcceptorStop);
  ASSERT_EQ(acceptor_stops.size(), 2u);
  uint64_t connections = 0;
  for (const RecordedEvent& a : acceptor_stops) {
    EXPECT_TRUE(acceptor_spans.count(a.span_id)) << a.span_id;
    EXPECT_EQ(a.parent_span_id, ls.span_id);
    EXPECT_FALSE(a.error.has_value());
    EXPECT_GT(a.duration, absl::ZeroDuration());
    connections += a.connections;
  }
  EXPECT_EQ(connections, 3u);

  std::vector<RecordedEvent> listener_stops =
      telemetry_->Events(TelemetryEventType::kListenerStop);
  ASSERT_EQ(listener_stops.size(), 1u);
  EXPECT_EQ(listener_stops[0].span_id, ls.span_id);
  EXPECT_GT(listener_stops[0].duration, absl::ZeroDuration());
  EXPECT_GE(listener_stops[0].monotonic_time, ls.monotonic_time);
  ASSERT_TRUE(listener_stops[0].local.has_value());
  EXPECT_EQ(*listener_stops[0].local, where);

  for (const RecordedEvent& e : telemetry_->Events()) EXPECT_EQ(e.server, name);
  EXPECT_EQ(other.Count(TelemetryEventType::kListenerStart), 1);
  EXPECT_EQ(other.Count(TelemetryEventType::kAcceptorStop), 0);
}

TEST_F(ServerTest, PostFromAnotherThreadReachesHandleMessage) {
  ASSERT_TRUE(Start(Options()));
  std::unique_ptr<TcpSocket> client = ConnectAndEcho(*server_, "hi");
  ASSERT_NE(client, nullptr);
  std::vector<ConnectionSummary> all = server_->Connections();
  ASSERT_EQ(all.size(), 1u);
  const ConnectionHandle handle = all[0].handle;

  absl::Status posted;
  std::thread poster([&] { posted = handle.Post(std::string("from afar")); });
  poster.join();
  EXPECT_TRUE(posted.ok()) << posted;
  absl::StatusOr<std::string> got = client->Recv(9, kWait);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "from afar");
  EXPECT_TRUE(shared_->events.Contains("message:from afar"));

  // A message of a type the handler ignores changes nothing; the connection goes on.
  EXPECT_TRUE(handle.Post(42).ok());
  ExpectEcho(*client, "still open");

  // Close through the handle: HandleClose, and the client sees the end.
  EXPECT_TRUE(handle.Close().ok());
  absl::StatusOr<std::string> rest = testutil::ReadToEof(*client);
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(*rest, "");
  EXPECT_TRUE(shared_->events.WaitFor("close"));
  ASSERT_TRUE(WaitFor([&] { return server_->active_connections() == 0; }));

  // Posting to a connection that has gone is accepted and dropped.
  EXPECT_TRUE(handle.Post(std::string("to nobody")).ok());
  EXPECT_TRUE(handle.Close().ok());
  EXPECT_TRUE(server_->Stop().ok());
  EXPECT_FALSE(shared_->events.Contains("message:to nobody"));
  EXPECT_EQ(shared_->events.Count("close"), 1);
  EXPECT_TRUE(absl::IsFailedPrecondition(ConnectionHandle().Post(1)));
}

// A sink that wants only connection.stop still learns who the peer was when the peer
// reset the connection: by then getpeername(2) has nothing to say, so the address must
// have been taken earlier.
TEST(ServerTelemetryTest, ResetPeerKeepsItsAddressForASinkWantingOnlyStops) {
  ServerOptions options = testutil::LoopbackOptions(HandlerFactoryOf<testutil::EchoHandler>());
  testutil::TelemetryRecorder stops(options.name,
                                    TelemetryBit(TelemetryEventType::kConnectionStop));
  std::unique_ptr<Server> server = testutil::MustStart(std::move(options));
  ASSERT_NE(server, nullptr);
  std::unique_ptr<TcpSocket> client = MustConnect(*server);
  ASSERT_NE(client, nullptr);
  absl::StatusOr<SocketInfo> local = client->LocalInfo();
  ASSERT_TRUE(local.ok()) << local.status();
  ASSERT_TRUE(WaitFor([&] { return server->active_connections() == 1; }));
  const linger reset = {1, 0};
  ASSERT_EQ(::setsockopt(client->fd(), SOL_SOCKET, SO_LINGER, &reset, sizeof(reset)), 0);
  client.reset();  // RST
  ASSERT_TRUE(stops.WaitFor(TelemetryEventType::kConnectionStop));
  std::vector<testutil::RecordedEvent> stop = stops.Events(TelemetryEventType::kConnectionStop);
  ASSERT_EQ(stop.size(), 1u);
  ASSERT_TRUE(stop[0].remote.has_value());
  EXPECT_EQ(stop[0].remote->address, local->address);
  EXPECT_EQ(stop[0].remote->port, local->port);
  EXPECT_TRUE(server->Stop().ok());
}

}  // namespace
}  // namespace islet
