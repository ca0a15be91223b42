// Outbound connections (Connection::Open, Server::Open): opened on the opener's worker
// without blocking it, served by their own handler, reaching the opener through
// Sibling; refusals and connect timeouts end in HandleError with the reason; telemetry
// links the spans; Stop drains them as any other.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <any>
#include <atomic>
#include <optional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/connection.h"
#include "server/handler.h"
#include "server/server.h"
#include "server/test_util.h"
#include "transport/tcp_transport.h"
#include "transport/unique_fd.h"

namespace islet {
namespace {

using testutil::EchoHandler;
using testutil::EventRecorder;
using testutil::IsOkAndHolds;
using testutil::kWait;
using testutil::MustConnect;

SocketInfo Loopback(uint16_t port) {
  return SocketInfo{.family = AddressFamily::kIpv4, .address = "127.0.0.1", .port = port};
}

// What a relayed pair shares; both sides live on one worker, so no lock.
struct Pair {
  ConnectionHandle client;
  ConnectionHandle upstream;
  std::thread::id client_thread;
  std::thread::id upstream_thread;
};

struct RelayConfig {
  SocketInfo upstream;
  absl::Duration connect_timeout = absl::Seconds(5);
  // When set, the client connections after the first `to_upstream` go here instead.
  std::optional<SocketInfo> then;
  int to_upstream = 0;
  std::shared_ptr<std::atomic<int>> opened = std::make_shared<std::atomic<int>>(0);
  EventRecorder* events = nullptr;
};

// The upstream side: relays what it reads to the client, records how it ends.
class UpstreamSide : public Handler {
 public:
  UpstreamSide(std::shared_ptr<Pair> pair, EventRecorder* events)
      : pair_(std::move(pair)), events_(events) {}
  HandlerResult HandleConnection(Connection& conn) override {
    pair_->upstream_thread = std::this_thread::get_id();
    if (pair_->upstream_thread != pair_->client_thread) events_->Record("split");
    events_->Record("upstream:connected");
    // The client waited for this before sending anything on.
    if (Connection* client = conn.Sibling(pair_->client)) client->ResumeReading();
    return HandlerResult::Continue();
  }
  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    Connection* client = conn.Sibling(pair_->client);
    if (client == nullptr) return HandlerResult::Close();
    absl::Status sent = client->Send(data);
    return sent.ok() ? HandlerResult::Continue() : HandlerResult::Error(sent);
  }
  void HandleError(const absl::Status& error, Connection& conn) override {
    events_->Record(absl::StrCat("upstream:error:", absl::StatusCodeToString(error.code()), ":",
                                 error.message()));
    if (Connection* client = conn.Sibling(pair_->client)) {
      client->Send("upstream failed").IgnoreError();
      client->Close();
    }
  }
  void HandleShutdown(Connection& conn) override { events_->Record("upstream:shutdown"); }
  void HandleClose(Connection& conn) override { events_->Record("upstream:close"); }

 private:
  std::shared_ptr<Pair> pair_;
  EventRecorder* events_;
};

// The client side: opens the upstream when it connects, and relays to it.
class ClientSide : public Handler {
 public:
  explicit ClientSide(const std::any& options)
      : config_(std::any_cast<RelayConfig>(options)), pair_(std::make_shared<Pair>()) {}
  HandlerResult HandleConnection(Connection& conn) override {
    pair_->client = conn.handle();
    pair_->client_thread = std::this_thread::get_id();
    const bool first = config_.opened->fetch_add(1) < config_.to_upstream;
    absl::StatusOr<ConnectionHandle> upstream = conn.Open(
        {.endpoint = config_.then.has_value() && !first ? *config_.then : config_.upstream,
         .connect_timeout = config_.connect_timeout,
         .handler = std::make_unique<UpstreamSide>(pair_, config_.events)});
    if (!upstream.ok()) return HandlerResult::Error(upstream.status());
    pair_->upstream = *upstream;
    conn.PauseReading();  // until the upstream is there
    return HandlerResult::Continue();
  }
  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    Connection* upstream = conn.Sibling(pair_->upstream);
    if (upstream == nullptr) return HandlerResult::Close();
    absl::Status sent = upstream->Send(data);
    return sent.ok() ? HandlerResult::Continue() : HandlerResult::Error(sent);
  }
  void HandleClose(Connection& conn) override {
    if (Connection* upstream = conn.Sibling(pair_->upstream)) upstream->Close();
  }

 private:
  RelayConfig config_;
  std::shared_ptr<Pair> pair_;
};

class OutboundTest : public testutil::ServerFixture {
 protected:
  // The relay's handlers record into events_: the relay stops before it goes.
  ~OutboundTest() override { server_.reset(); }

  void StartUpstream() {
    ServerOptions options = testutil::LoopbackOptions(HandlerFactoryOf<EchoHandler>());
    options.name = testutil::UniqueName("upstream");
    upstream_ = testutil::MustStart(std::move(options));
    ASSERT_NE(upstream_, nullptr);
  }
  bool StartRelay(RelayConfig config, int workers = 1) {
    config.events = &events_;
    ServerOptions options = testutil::LoopbackOptions(HandlerFactoryOf<ClientSide>());
    options.handler_options = config;
    options.num_workers = workers;
    return Start(std::move(options));
  }
  uint16_t UpstreamPort() { return upstream_->ListenerInfo()->port; }

  EventRecorder events_;
  std::unique_ptr<Server> upstream_;
};

TEST_F(OutboundTest, AHandlerRelaysThroughAnOutboundConnectionOnItsOwnWorker) {
  ASSERT_NO_FATAL_FAILURE(StartUpstream());
  ASSERT_TRUE(StartRelay({.upstream = Loopback(UpstreamPort())}));
  std::unique_ptr<TcpSocket> client = MustConnect(*server_);
  ASSERT_NE(client, nullptr);
  // Sent before the upstream is connected: held (reading paused), then relayed.
  ASSERT_TRUE(client->Send("early ").ok());
  EXPECT_THAT(client->Recv(6, kWait), IsOkAndHolds(std::string("early ")));
  testutil::ExpectEcho(*client, std::string(256 << 10, 'x'));
  EXPECT_TRUE(events_.Contains("upstream:connected"));

  // The outbound connection's span hangs under the client connection's.
  std::vector<testutil::RecordedEvent> starts =
      telemetry_->Events(TelemetryEventType::kConnectionStart);
  ASSERT_EQ(starts.size(), 2u);
  EXPECT_EQ(starts[1].parent_span_id, starts[0].span_id);
  ASSERT_TRUE(starts[1].remote.has_value());
  EXPECT_EQ(starts[1].remote->port, UpstreamPort());

  // Closing the client closes the upstream (the handler's choice), in order.
  client.reset();
  EXPECT_TRUE(events_.WaitFor("upstream:close"));
}

TEST_F(OutboundTest, BothSidesOfAPairRunOnOneThread) {
  ASSERT_NO_FATAL_FAILURE(StartUpstream());
  ASSERT_TRUE(StartRelay({.upstream = Loopback(UpstreamPort())}, /*workers=*/2));
  // Several clients: whichever worker each lands on, its upstream is on the same one
  // (Sibling finds it; a pair split over two threads would find nothing and close).
  for (int i = 0; i < 6; ++i) {
    std::unique_ptr<TcpSocket> client = MustConnect(*server_);
    ASSERT_NE(client, nullptr);
    testutil::ExpectEcho(*client, absl::StrCat("client ", i));
  }
  EXPECT_EQ(events_.Count("upstream:connected"), 6);
  EXPECT_FALSE(events_.Contains("split"));
}

TEST_F(OutboundTest, ARefusedConnectEndsInHandleErrorWithTheReason) {
  uint16_t closed_port;
  {
    TcpTransport transport;
    ListenOptions options;
    options.address = "127.0.0.1";
    absl::StatusOr<std::unique_ptr<Listener>> l = transport.Listen(0, options);
    ASSERT_TRUE(l.ok());
    closed_port = (*l)->LocalInfo()->port;
  }
  ASSERT_TRUE(StartRelay({.upstream = Loopback(closed_port)}));
  std::unique_ptr<TcpSocket> client = MustConnect(*server_);
  ASSERT_NE(client, nullptr);
  absl::StatusOr<std::string> rest = testutil::ReadToEof(*client);
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(*rest, "upstream failed");
  std::vector<std::string> seen = events_.Events();
  ASSERT_FALSE(seen.empty());
  EXPECT_TRUE(absl::StrContains(seen.front(), "upstream:error:"));
  EXPECT_TRUE(absl::StrContains(seen.front(), absl::StrCat("127.0.0.1:", closed_port)))
      << seen.front();
}

TEST_F(OutboundTest, ASilentUpstreamIsCutAtTheConnectTimeoutWhileTheWorkerServesOthers) {
  // A listener whose backlog is full drops further SYNs: a connect to it neither
  // succeeds nor fails.
  TcpTransport transport;
  ListenOptions listen;
  listen.address = "127.0.0.1";
  listen.backlog = 1;
  absl::StatusOr<std::unique_ptr<Listener>> silent = transport.Listen(0, listen);
  ASSERT_TRUE(silent.ok());
  const uint16_t silent_port = (*silent)->LocalInfo()->port;
  std::vector<std::unique_ptr<TcpSocket>> fillers;  // connects never waited for
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<std::unique_ptr<TcpSocket>> filler =
        TcpSocket::StartConnect(Loopback(silent_port));
    ASSERT_TRUE(filler.ok()) << filler.status();
    fillers.push_back(*std::move(filler));
  }

  ASSERT_NO_FATAL_FAILURE(StartUpstream());
  // The first four clients are relayed to the silent upstream, the next to a real one.
  ASSERT_TRUE(StartRelay({.upstream = Loopback(silent_port),
                          .connect_timeout = absl::Seconds(2),
                          .then = Loopback(UpstreamPort()),
                          .to_upstream = 4}));
  // Four clients wait on the silent upstream...
  std::vector<std::unique_ptr<TcpSocket>> waiting;
  for (int i = 0; i < 4; ++i) {
    waiting.push_back(MustConnect(*server_));
    ASSERT_NE(waiting.back(), nullptr);
  }
  // ...while the same (only) worker relays another client: a connect never blocks it.
  std::unique_ptr<TcpSocket> other = MustConnect(*server_);
  ASSERT_NE(other, nullptr);
  testutil::ExpectEcho(*other, "not held up");
  EXPECT_EQ(events_.Count("upstream:connected"), 1);
  // Each is cut at its connect timeout, with the reason.
  for (auto& client : waiting) {
    absl::StatusOr<std::string> rest = testutil::ReadToEof(*client);
    ASSERT_TRUE(rest.ok()) << rest.status();
    EXPECT_EQ(*rest, "upstream failed");
  }
  std::vector<std::string> seen = events_.Events();
  std::erase(seen, "upstream:connected");
  ASSERT_EQ(seen.size(), 4u);
  for (const std::string& e : seen) {
    EXPECT_TRUE(absl::StartsWith(e, "upstream:error:DEADLINE_EXCEEDED:")) << e;
    EXPECT_TRUE(absl::StrContains(e, "not connected within 2s")) << e;
  }
}

TEST_F(OutboundTest, StopDrainsOutboundConnectionsToo) {
  ASSERT_NO_FATAL_FAILURE(StartUpstream());
  ASSERT_TRUE(StartRelay({.upstream = Loopback(UpstreamPort())}));
  std::unique_ptr<TcpSocket> client = MustConnect(*server_);
  ASSERT_NE(client, nullptr);
  testutil::ExpectEcho(*client, "before the stop");
  EXPECT_TRUE(server_->Stop(absl::Seconds(5)).ok());
  EXPECT_TRUE(events_.Contains("upstream:shutdown"));
  EXPECT_EQ(server_->active_connections(), 0);
}

// A client the server opens itself: it says hello, and records what comes back.
class Greeter : public Handler {
 public:
  explicit Greeter(EventRecorder* events) : events_(events) {}
  HandlerResult HandleConnection(Connection& conn) override {
    absl::Status sent = conn.Send("hello");
    return sent.ok() ? HandlerResult::Continue() : HandlerResult::Error(sent);
  }
  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    events_->Record(absl::StrCat("got:", data));
    return HandlerResult::Continue();
  }
  HandlerResult HandleMessage(std::any& message, Connection& conn) override {
    absl::Status sent = conn.Send(std::any_cast<std::string>(message));
    return sent.ok() ? HandlerResult::Continue() : HandlerResult::Error(sent);
  }

 private:
  EventRecorder* events_;
};

TEST_F(OutboundTest, TheServerOpensAClientNotTiedToAnyConnection) {
  ASSERT_NO_FATAL_FAILURE(StartUpstream());
  ASSERT_TRUE(StartRelay({.upstream = Loopback(UpstreamPort())}));
  absl::StatusOr<ConnectionHandle> greeter =
      server_->Open({.endpoint = Loopback(UpstreamPort()),
                     .handler = std::make_unique<Greeter>(&events_)});
  ASSERT_TRUE(greeter.ok()) << greeter.status();
  EXPECT_TRUE(events_.WaitFor("got:hello"));
  // Its handle reaches it like any connection's.
  ASSERT_TRUE(greeter->Post(std::string("again")).ok());
  EXPECT_TRUE(events_.WaitFor("got:again"));

  // Bad requests fail at once, naming what is wrong.
  EXPECT_TRUE(absl::IsInvalidArgument(
      server_->Open({.endpoint = Loopback(UpstreamPort())}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      server_->Open({.endpoint = {.family = AddressFamily::kIpv4, .address = "nowhere", .port = 1},
                     .handler = std::make_unique<Greeter>(&events_)})
          .status()));
  ASSERT_TRUE(server_->Stop().ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(
      server_->Open({.endpoint = Loopback(UpstreamPort()),
                     .handler = std::make_unique<Greeter>(&events_)})
          .status()));
}

// A unix socket's connect fails at once, in Open, whose error names the path: a
// socket file nobody listens on any more (refused), and no file at all.
TEST_F(OutboundTest, AFailedUnixConnectFailsOpenNamingThePath) {
  ASSERT_NO_FATAL_FAILURE(StartUpstream());
  ASSERT_TRUE(StartRelay({.upstream = Loopback(UpstreamPort())}));
  // Not TEST_TMPDIR: a unix socket's path must fit in 108 bytes.
  const std::string dir = absl::StrCat("/tmp/islet-outbound-", ::getpid());
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0) << errno;
  const std::string stale = absl::StrCat(dir, "/stale.sock");
  ::unlink(stale.c_str());
  {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::snprintf(address.sun_path, sizeof(address.sun_path), "%s", stale.c_str());
    ASSERT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  }
  const std::string missing = absl::StrCat(dir, "/missing.sock");
  for (const std::string& path : {stale, missing}) {
    absl::StatusOr<ConnectionHandle> opened =
        server_->Open({.endpoint = {.family = AddressFamily::kUnix, .address = path},
                       .handler = std::make_unique<Greeter>(&events_)});
    ASSERT_FALSE(opened.ok()) << path;
    EXPECT_TRUE(absl::StrContains(opened.status().message(), path)) << opened.status();
  }
  ::unlink(stale.c_str());
  ::rmdir(dir.c_str());
}

}  // namespace
}  // namespace islet
