// Server control over real loopback sockets: start, info, connection listing,
// suspend / resume, stop (draining, goodbyes, forced closes), several listen sockets,
// listener / acceptor telemetry, posting to connections, and destruction without Stop.
// The counterpart of Thousand Island's server_test.exs.
#include "server/server.h"

#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/test_util.h"
#include "transport/tcp_transport.h"

namespace islet {
namespace {

using testutil::ConnectAndEcho;
using testutil::ExpectEcho;
using testutil::kWait;
using testutil::MustConnect;
using testutil::Pattern;
using testutil::RecordedEvent;
using testutil::WaitFor;
using ::testing::UnorderedElementsAreArray;

// What the test handlers share with the test.
struct Shared {
  testutil::EventRecorder events;
  std::atomic<int> handlers_made{0};
  // HandleData sleeps this long before it replies ("work in flight").
  absl::Duration data_delay = absl::ZeroDuration();
  // When non-zero, HandleData replies with this many pattern bytes instead of echoing.
  size_t reply_size = 0;
  // HandleConnection queues this many bytes (for a peer that does not read).
  size_t send_on_connect = 0;
  std::atomic<size_t> queued_after_connect{0};
};

class TestHandler : public Handler {
 public:
  explicit TestHandler(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {}

  HandlerResult HandleConnection(Connection& conn) override {
    shared_->events.Record("connection");
    if (shared_->send_on_connect > 0) {
      EXPECT_TRUE(conn.Send(Pattern(shared_->send_on_connect)).ok());
      shared_->queued_after_connect = conn.queued_bytes();
      shared_->events.Record("sent-on-connect");
    }
    return HandlerResult::Continue();
  }
  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    shared_->events.Record("data");
    if (shared_->data_delay > absl::ZeroDuration()) absl::SleepFor(shared_->data_delay);
    if (shared_->reply_size > 0) {
      EXPECT_TRUE(conn.Send(Pattern(shared_->reply_size)).ok());
    } else {
      EXPECT_TRUE(conn.Send(data).ok());
    }
    shared_->events.Record("replied");
    return HandlerResult::Continue();
  }
  HandlerResult HandleMessage(std::any& message, Connection& conn) override {
    if (const std::string* text = std::any_cast<std::string>(&message)) {
      shared_->events.Record(absl::StrCat("message:", *text));
      EXPECT_TRUE(conn.Send(*text).ok());
    }
    return HandlerResult::Continue();
  }
  void HandleClose(Connection& conn) override { shared_->events.Record("close"); }
  void HandleError(const absl::Status& error, Connection& conn) override {
    shared_->events.Record("error");
  }
  void HandleShutdown(Connection& conn) override {
    shared_->events.Record("shutdown");
    // The socket is still open: say goodbye (server_test.exs does the same).
    conn.Send("GOODBYE").IgnoreError();
  }
  void HandleTimeout(Connection& conn) override { shared_->events.Record("timeout"); }

 private:
  std::shared_ptr<Shared> shared_;
};

HandlerFactory FactoryFor(std::shared_ptr<Shared> shared) {
  return [shared](const std::any&) -> std::unique_ptr<Handler> {
    shared->handlers_made.fetch_add(1);
    return std::make_unique<TestHandler>(shared);
  };
}

// Servers of TestHandlers (one at a time, through Start), their telemetry recorded.
class ServerTest : public testutil::ServerFixture {
 protected:
  ServerOptions Options() { return testutil::LoopbackOptions(FactoryFor(shared_)); }

  std::shared_ptr<Shared> shared_ = std::make_shared<Shared>();
};

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

TEST_F(ServerTest, StopRefusesNewConnectionsAndShutsDownEveryHandler) {
  ASSERT_TRUE(Start(Options()));
  const SocketInfo where = *server_->ListenerInfo();
  std::vector<std::unique_ptr<TcpSocket>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(ConnectAndEcho(*server_, "x"));
    ASSERT_NE(clients.back(), nullptr);
  }
  std::vector<ConnectionSummary> before = server_->Connections();
  ASSERT_EQ(before.size(), 3u);

  ASSERT_TRUE(server_->Stop().ok());
  EXPECT_EQ(server_->status(), ServerStatus::kStopped);
  EXPECT_EQ(shared_->events.Count("shutdown"), 3);
  EXPECT_EQ(shared_->events.Count("close"), 0);
  EXPECT_EQ(shared_->events.Count("error"), 0);
  EXPECT_EQ(shared_->events.Count("timeout"), 0);
  // Every idle client got its goodbye, then the end of the stream.
  for (auto& c : clients) {
    absl::StatusOr<std::string> rest = testutil::ReadToEof(*c);
    ASSERT_TRUE(rest.ok()) << rest.status();
    EXPECT_EQ(*rest, "GOODBYE");
  }
  EXPECT_EQ(testutil::ConnectErrno(where.port), ECONNREFUSED);

  // Idempotent, and everything else reports the stop.
  EXPECT_TRUE(server_->Stop().ok());
  EXPECT_TRUE(server_->Stop(absl::Seconds(1)).ok());
  EXPECT_EQ(shared_->events.Count("shutdown"), 3);
  EXPECT_TRUE(absl::IsFailedPrecondition(server_->Suspend()));
  EXPECT_TRUE(absl::IsFailedPrecondition(server_->Resume()));
  EXPECT_TRUE(absl::IsFailedPrecondition(server_->ListenerInfo().status()));
  ServerInfo info = server_->Info();
  EXPECT_EQ(info.status, ServerStatus::kStopped);
  EXPECT_FALSE(info.local.has_value());
  EXPECT_EQ(info.active_connections, 0);
  EXPECT_TRUE(server_->Connections().empty());
  EXPECT_TRUE(absl::IsFailedPrecondition(before[0].handle.Post(std::string("late"))));
  EXPECT_TRUE(absl::IsFailedPrecondition(before[0].handle.Close()));
}

TEST_F(ServerTest, ConcurrentStopsBothReturnOnceStopped) {
  shared_->send_on_connect = 8 << 20;  // the connection drains until the timeout
  ServerOptions options = Options();
  options.shutdown_timeout = absl::Milliseconds(300);
  options.transport_options.socket_options.push_back(SocketOption::SendBuffer(4096));
  ASSERT_TRUE(Start(std::move(options)));
  UniqueFd stuck = testutil::RawConnect(server_->ListenerInfo()->port, 4096);
  ASSERT_TRUE(stuck.valid());
  ASSERT_TRUE(shared_->events.WaitFor("sent-on-connect"));
  std::atomic<int> returned_stopped{0};
  std::vector<std::thread> stoppers;
  for (int i = 0; i < 3; ++i) {
    stoppers.emplace_back([&] {
      EXPECT_TRUE(server_->Stop().ok());
      // Whichever returns, the server is fully stopped by then.
      if (server_->active_connections() == 0 && server_->status() == ServerStatus::kStopped) {
        returned_stopped.fetch_add(1);
      }
    });
  }
  for (std::thread& t : stoppers) t.join();
  EXPECT_EQ(returned_stopped.load(), 3);
  EXPECT_EQ(shared_->events.Count("shutdown"), 1);
}

TEST_F(ServerTest, StopLetsInFlightWorkFinishAndAcceptsNothingNew) {
  shared_->data_delay = absl::Milliseconds(300);
  shared_->reply_size = 64 * 1024;
  ServerOptions options = Options();
  options.shutdown_timeout = absl::Seconds(5);
  ASSERT_TRUE(Start(std::move(options)));
  const SocketInfo where = *server_->ListenerInfo();

  std::unique_ptr<TcpSocket> busy = MustConnect(*server_);
  std::unique_ptr<TcpSocket> idle = MustConnect(*server_);
  ASSERT_NE(busy, nullptr);
  ASSERT_NE(idle, nullptr);
  ASSERT_TRUE(WaitFor([&] { return server_->active_connections() == 2; }));
  ASSERT_TRUE(busy->Send("request").ok());
  ASSERT_TRUE(shared_->events.WaitFor("data"));  // the handler is now at work
  const int made_before_stop = shared_->handlers_made.load();

  std::atomic<bool> stop_returned{false};
  absl::Status stop_status;
  absl::Duration stop_took;
  std::thread stopper([&] {
    const absl::Time start = absl::Now();
    stop_status = server_->Stop();
    stop_took = absl::Now() - start;
    stop_returned = true;
  });
  // Once the listener has stopped, nobody new gets in, while the work goes on.
  ASSERT_TRUE(telemetry_->WaitFor(TelemetryEventType::kListenerStop));
  EXPECT_EQ(testutil::ConnectErrno(where.port), ECONNREFUSED);

  // The request in flight still gets its whole reply, then the goodbye and the end.
  absl::StatusOr<std::string> reply = testutil::ReadToEof(*busy);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(*reply, Pattern(64 * 1024) + "GOODBYE");
  absl::StatusOr<std::string> idle_rest = testutil::ReadToEof(*idle);
  ASSERT_TRUE(idle_rest.ok()) << idle_rest.status();
  EXPECT_EQ(*idle_rest, "GOODBYE");

  stopper.join();
  EXPECT_TRUE(stop_returned.load());
  EXPECT_TRUE(stop_status.ok()) << stop_status;
  // Well within the shutdown timeout: nothing waited for it.
  EXPECT_LT(stop_took, absl::Seconds(5) + absl::Seconds(2));
  EXPECT_EQ(shared_->events.Count("replied"), 1);
  EXPECT_EQ(shared_->events.Count("shutdown"), 2);
  EXPECT_EQ(shared_->handlers_made.load(), made_before_stop);
  EXPECT_EQ(testutil::ConnectErrno(where.port), ECONNREFUSED);
}

TEST_F(ServerTest, StopForceClosesConnectionsWhoseOutputCannotDrain) {
  // 8 MiB for a peer with tiny buffers that never reads: most of it stays queued.
  shared_->send_on_connect = 8 << 20;
  ServerOptions options = Options();
  options.shutdown_timeout = absl::Milliseconds(500);
  options.send_timeout = absl::Seconds(60);  // only the shutdown timeout can end it
  options.transport_options.socket_options.push_back(SocketOption::SendBuffer(4096));
  ASSERT_TRUE(Start(std::move(options)));
  const SocketInfo where = *server_->ListenerInfo();

  UniqueFd stuck = testutil::RawConnect(where.port, /*recv_buffer=*/4096);
  ASSERT_TRUE(stuck.valid()) << errno;
  ASSERT_TRUE(shared_->events.WaitFor("sent-on-connect"));
  EXPECT_GT(shared_->queued_after_connect.load(), 0u);

  const absl::Time start = absl::Now();
  EXPECT_TRUE(server_->Stop().ok());
  const absl::Duration took = absl::Now() - start;
  // It returned because of the shutdown timeout, not the 60 s send timeout.
  EXPECT_LT(took, absl::Seconds(20));
  EXPECT_EQ(shared_->events.Count("shutdown"), 1);
  EXPECT_EQ(server_->active_connections(), 0);
  EXPECT_TRUE(telemetry_->WaitFor(TelemetryEventType::kConnectionStop));

  // The client sees the connection end (after whatever did arrive).
  ::shutdown(stuck.get(), SHUT_WR);
  char buf[64 * 1024];
  bool ended = false;
  const absl::Time deadline = absl::Now() + kWait;
  while (absl::Now() < deadline) {
    const ssize_t n = ::recv(stuck.get(), buf, sizeof(buf), 0);
    if (n <= 0) {
      ended = true;
      break;
    }
  }
  EXPECT_TRUE(ended);
}

TEST_F(ServerTest, StopWithExplicitTimeout) {
  shared_->send_on_connect = 8 << 20;
  ServerOptions options = Options();
  options.shutdown_timeout = absl::Seconds(60);
  options.send_timeout = absl::Seconds(60);
  options.transport_options.socket_options.push_back(SocketOption::SendBuffer(4096));
  ASSERT_TRUE(Start(std::move(options)));
  UniqueFd stuck = testutil::RawConnect(server_->ListenerInfo()->port, 4096);
  ASSERT_TRUE(stuck.valid());
  ASSERT_TRUE(shared_->events.WaitFor("sent-on-connect"));
  const absl::Time start = absl::Now();
  EXPECT_TRUE(server_->Stop(absl::Milliseconds(300)).ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
  EXPECT_EQ(server_->active_connections(), 0);
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

TEST_F(ServerTest, DestroyingARunningServerStopsIt) {
  ASSERT_TRUE(Start(Options()));
  const uint16_t port = server_->ListenerInfo()->port;
  std::unique_ptr<TcpSocket> a = MustConnect(*server_);
  std::unique_ptr<TcpSocket> b = MustConnect(*server_);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ExpectEcho(*a, "a");
  ExpectEcho(*b, "b");
  server_.reset();
  EXPECT_EQ(shared_->events.Count("shutdown"), 2);
  for (TcpSocket* c : {a.get(), b.get()}) {
    absl::StatusOr<std::string> rest = testutil::ReadToEof(*c);
    ASSERT_TRUE(rest.ok()) << rest.status();
    EXPECT_EQ(*rest, "GOODBYE");
  }
  EXPECT_EQ(testutil::ConnectErrno(port), ECONNREFUSED);
  EXPECT_EQ(telemetry_->Count(TelemetryEventType::kListenerStop), 1);
  EXPECT_EQ(telemetry_->Count(TelemetryEventType::kAcceptorStop), 1);
  EXPECT_EQ(telemetry_->Count(TelemetryEventType::kConnectionStop), 2);
}

TEST_F(ServerTest, DestroyingASuspendedServerStopsIt) {
  ASSERT_TRUE(Start(Options()));
  std::unique_ptr<TcpSocket> a = ConnectAndEcho(*server_, "a");
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(server_->Suspend().ok());
  server_.reset();
  absl::StatusOr<std::string> rest = testutil::ReadToEof(*a);
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(*rest, "GOODBYE");
}

// A handler that reaches its own server from its callbacks, and notes what it saw.
class ServerAwareHandler : public Handler {
 public:
  ServerAwareHandler(std::atomic<Server*>* server, testutil::EventRecorder* events)
      : server_(server), events_(events) {}

 protected:
  Server& server() const { return *server_->load(); }
  void Note(std::string event) const { events_->Record(std::move(event)); }

 private:
  std::atomic<Server*>* server_;
  testutil::EventRecorder* events_;
};

// A loopback server of H (a ServerAwareHandler), and what its handlers noted.
template <typename H>
struct ServerOf {
  // Starts the server; false, with the failure reported, when it cannot start.
  bool Start() {
    server = testutil::MustStart(
        testutil::LoopbackOptions([this](const std::any&) -> std::unique_ptr<Handler> {
          return std::make_unique<H>(&server_ptr, &events);
        }));
    server_ptr = server.get();
    return server != nullptr;
  }

  std::atomic<Server*> server_ptr{nullptr};  // how the handlers reach `server`
  testutil::EventRecorder events;
  std::unique_ptr<Server> server;  // last: destroyed first
};

// A handler that tries to stop its own server from a callback.
class StopFromHandler : public ServerAwareHandler {
 public:
  using ServerAwareHandler::ServerAwareHandler;
  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    absl::Status stopped = server().Stop();
    Note(absl::IsFailedPrecondition(stopped) ? "refused" : "not refused");
    conn.Send(data).IgnoreError();
    return HandlerResult::Continue();
  }
};

TEST_F(ServerTest, StopFromAHandlerIsRefused) {
  ServerOf<StopFromHandler> own;
  ASSERT_TRUE(own.Start());
  std::unique_ptr<TcpSocket> client = ConnectAndEcho(*own.server, "stop?");
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(own.events.Events(), std::vector<std::string>{"refused"});
  EXPECT_EQ(own.server->status(), ServerStatus::kRunning);
  EXPECT_TRUE(own.server->Stop().ok());
}

TEST_F(ServerTest, ControlCallsRaceWithStopSafely) {
  ASSERT_TRUE(Start(Options()));
  std::vector<std::unique_ptr<TcpSocket>> clients;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(ConnectAndEcho(*server_, "r"));
    ASSERT_NE(clients.back(), nullptr);
  }
  std::atomic<bool> done{false};
  std::vector<std::thread> pollers;
  // Some list the connections and nothing else, so that a listing is under way at
  // every moment of the Stop; others ask for the info.
  for (int i = 0; i < 3; ++i) {
    pollers.emplace_back([&] {
      while (!done.load()) server_->Connections();
    });
  }
  pollers.emplace_back([&] {
    while (!done.load()) {
      server_->Info();
      server_->ListenerInfo().status().IgnoreError();
    }
  });
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_TRUE(server_->Stop().ok());
  absl::SleepFor(absl::Milliseconds(20));
  done = true;
  for (std::thread& t : pollers) t.join();
  EXPECT_TRUE(server_->Connections().empty());
}

}  // namespace
}  // namespace islet

namespace islet {
namespace {

// Reads the server's info from HandleShutdown, as a handler logging "n connections
// left" would: Info() is not one of the control calls a handler must avoid.
class InfoOnShutdown : public ServerAwareHandler {
 public:
  using ServerAwareHandler::ServerAwareHandler;
  void HandleShutdown(Connection& conn) override {
    ServerInfo info = server().Info();
    Note(absl::StrCat("info:", static_cast<int>(info.status)));
    absl::StatusOr<SocketInfo> where = server().ListenerInfo();
    Note(where.ok() ? "listening" : "not listening");
  }
};

TEST(ServerStopTest, HandlersMayReadTheServerInfoWhileItStops) {
  ServerOf<InfoOnShutdown> own;
  ASSERT_TRUE(own.Start());
  std::unique_ptr<TcpSocket> client = MustConnect(*own.server);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(WaitFor([&] { return own.server->active_connections() == 1; }));

  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    own.server->Stop().IgnoreError();
    stopped = true;
  });
  const bool returned = WaitFor([&] { return stopped.load(); });
  if (!returned) {
    // Stop holds the server's lock while it waits for the handler, and the handler
    // waits for that lock: nothing can recover, so end here rather than hang.
    ADD_FAILURE() << "Stop deadlocked with a handler reading Info()";
    std::fflush(nullptr);
    std::_Exit(1);
  }
  stopper.join();
  EXPECT_EQ(own.events.Events(),
            (std::vector<std::string>{absl::StrCat("info:", static_cast<int>(ServerStatus::kStopped)),
                                      "not listening"}));
}

// A callback still running when Stop begins, and reading Info() after that: the
// acceptor runs on this worker's loop, and Stop must not hold the server's lock while
// it waits for the loop to stop it.
class SlowInfoOnData : public ServerAwareHandler {
 public:
  using ServerAwareHandler::ServerAwareHandler;
  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    Note("data");
    absl::SleepFor(absl::Milliseconds(300));  // Stop reaches the acceptors meanwhile
    Note(absl::StrCat("info:", static_cast<int>(server().Info().status)));
    conn.Send(data).IgnoreError();
    return HandlerResult::Continue();
  }
};

TEST(ServerStopTest, StopDoesNotWaitForALoopAcceptorUnderTheServerLock) {
  ServerOf<SlowInfoOnData> own;
  ASSERT_TRUE(own.Start());
  std::unique_ptr<TcpSocket> client = MustConnect(*own.server);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Send("x").ok());
  ASSERT_TRUE(own.events.WaitFor("data"));

  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    own.server->Stop().IgnoreError();
    stopped = true;
  });
  if (!WaitFor([&] { return stopped.load(); })) {
    ADD_FAILURE() << "Stop deadlocked with a callback reading Info()";
    std::fflush(nullptr);
    std::_Exit(1);
  }
  stopper.join();
  EXPECT_EQ(own.events.Events(),
            (std::vector<std::string>{"data", absl::StrCat("info:", static_cast<int>(ServerStatus::kStopped))}));
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
