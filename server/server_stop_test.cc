// Stopping a server over real loopback sockets: draining, goodbyes, forced closes,
// explicit timeouts, concurrent and racing control calls, destruction without Stop, and
// handlers that reach their own server while it stops. Part of the counterpart of
// Thousand Island's server_test.exs (with server_lifecycle_test and server_info_test).
#include <sys/socket.h>

#include <any>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "server/server_test_fixture.h"
#include "server/test_util.h"
#include "transport/tcp_transport.h"
#include "transport/unique_fd.h"

namespace islet {
namespace {

using testutil::ConnectAndEcho;
using testutil::ExpectEcho;
using testutil::kWait;
using testutil::MustConnect;
using testutil::Pattern;
using testutil::ServerTest;
using testutil::WaitFor;

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
  // Counted at the hand-over; each handler is made on its worker a moment later.
  ASSERT_TRUE(WaitFor([&] { return shared_->handlers_made.load() == 2; }));
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

// Handles each message slowly, and counts them.
class SlowMessageHandler : public Handler {
 public:
  static std::atomic<int> handled;
  HandlerResult HandleMessage(std::any& message, Connection& conn) override {
    absl::SleepFor(absl::Milliseconds(5));
    handled.fetch_add(1);
    return HandlerResult::Continue();
  }
};
std::atomic<int> SlowMessageHandler::handled{0};

// A worker with a deep backlog of posted messages still stops within the deadline: the
// shutdown goes ahead of the backlog (it is a control task), and what is still queued
// for a connection that has ended is dropped, not handled. Before, the shutdown waited
// behind every message: SIGTERM with --shutdown_timeout=1s exited after 26.2 s.
TEST(ServerStopTest, StopGoesAheadOfABackloggedWorker) {
  SlowMessageHandler::handled = 0;
  ServerOptions options = testutil::LoopbackOptions(HandlerFactoryOf<SlowMessageHandler>());
  options.num_workers = 1;
  options.max_pending_messages = 100000;
  std::unique_ptr<Server> server = testutil::MustStart(std::move(options));
  ASSERT_NE(server, nullptr);
  std::unique_ptr<TcpSocket> client = MustConnect(*server);
  ASSERT_NE(client, nullptr);
  std::vector<ConnectionSummary> live;
  ASSERT_TRUE(WaitFor([&] { return (live = server->Connections()).size() == 1; }));
  constexpr int kBacklog = 2000;  // 10 s of work at 5 ms a message
  for (int i = 0; i < kBacklog; ++i) ASSERT_TRUE(live[0].handle.Post(i).ok());
  ASSERT_TRUE(WaitFor([] { return SlowMessageHandler::handled.load() > 0; }));

  const int at_stop = SlowMessageHandler::handled.load();
  ASSERT_TRUE(server->Stop(absl::Milliseconds(200)).ok());
  const int after_stop = SlowMessageHandler::handled.load();
  // The message being handled when Stop came finishes (a running callback is never
  // interrupted), and perhaps the one after; the rest of the backlog is dropped.
  EXPECT_LE(after_stop - at_stop, 3) << "Stop waited for the backlog";
  EXPECT_LT(after_stop, kBacklog);
}

// A factory whose first call waits until the test lets it go: the worker running it is
// busy, and a hand-over to it waits in its queue (the first hand-over goes to worker 0).
struct HeldFactory {
  absl::Notification entered;
  absl::Notification release;
  std::atomic<int> calls{0};

  HandlerFactory Wrap(HandlerFactory inner) {
    return [this, inner = std::move(inner)](const std::any& options) {
      if (calls.fetch_add(1) == 0) {
        entered.Notify();
        release.WaitForNotification();
      }
      return inner(options);
    };
  }
};

// A connection whose hand-over is still in a busy worker's queue counts as live: Stop
// waits for it, and when its deadline passes first, the connection closes unstarted
// (no callback after the shutdown is over) and is no longer counted. Before, Stop
// counted only started connections: it closed the rest at the deadline, and the queued
// one then started (HandleConnection) after the shutdown had ended.
TEST_F(ServerTest, AHandOverStillQueuedAtTheDeadlineClosesUnstarted) {
  HeldFactory held;
  ServerOptions options = Options();
  options.handler_factory = held.Wrap(std::move(options.handler_factory));
  options.num_workers = 2;
  // The acceptor must not wait behind the held worker.
  options.dedicated_acceptor_threads = true;
  // The second connection (worker 1) queues more than the kernel takes and its client
  // reads nothing: it drains until the deadline, then CloseAll closes it.
  shared_->send_on_connect = 8 << 20;
  ASSERT_TRUE(Start(std::move(options)));

  std::unique_ptr<TcpSocket> queued = MustConnect(*server_);  // to worker 0, held
  ASSERT_NE(queued, nullptr);
  ASSERT_TRUE(held.entered.WaitForNotificationWithTimeout(kWait));
  std::unique_ptr<TcpSocket> draining = MustConnect(*server_);  // to worker 1
  ASSERT_NE(draining, nullptr);
  ASSERT_TRUE(shared_->events.WaitFor("sent-on-connect"));

  std::thread stopper([&] { EXPECT_TRUE(server_->Stop(absl::Milliseconds(300)).ok()); });
  // Worker 1's connection closes when Stop gives up draining: CloseAll has been called
  // for every worker (worker 0 first) by then. Only now does the held hand-over run on.
  ASSERT_TRUE(telemetry_->WaitFor(TelemetryEventType::kConnectionStop));
  held.release.Notify();
  stopper.join();

  EXPECT_EQ(shared_->events.Count("connection"), 1) << "the queued connection started after Stop";
  EXPECT_EQ(held.calls.load(), 2);
  EXPECT_EQ(server_->active_connections(), 0);
  // Closed in order, not reset, and never answered.
  absl::StatusOr<std::string> rest = testutil::ReadToEof(*queued);
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(*rest, "");
}

// A connection handed over before the stop, whose worker was busy when Stop began, is
// served under the shutdown (HandleShutdown, its goodbye drained) and Stop waits for it.
TEST_F(ServerTest, AHandOverQueuedWhenStopBeginsIsServedUnderTheShutdown) {
  HeldFactory held;
  ServerOptions options = Options();
  options.handler_factory = held.Wrap(std::move(options.handler_factory));
  options.num_workers = 1;
  options.dedicated_acceptor_threads = true;
  ASSERT_TRUE(Start(std::move(options)));

  std::unique_ptr<TcpSocket> client = MustConnect(*server_);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(held.entered.WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(server_->active_connections(), 1);  // live from the hand-over

  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    EXPECT_TRUE(server_->Stop(kWait).ok());
    stopped = true;
  });
  // Stop has closed the listener and joined the acceptor; it now waits for the
  // connections, this one included.
  ASSERT_TRUE(telemetry_->WaitFor(TelemetryEventType::kListenerStop));
  held.release.Notify();
  absl::StatusOr<std::string> rest = testutil::ReadToEof(*client);
  stopper.join();
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(*rest, "GOODBYE");
  EXPECT_EQ(shared_->events.Events(), (std::vector<std::string>{"connection", "shutdown"}));
  EXPECT_EQ(server_->active_connections(), 0);
}

}  // namespace
}  // namespace islet
