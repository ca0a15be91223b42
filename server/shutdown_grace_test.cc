// ServerOptions::shutdown_grace over real loopback sockets: while a stopping server's
// grace runs, an open connection is still read, its handler sees stopping() and may
// answer and close; when the grace passes, HandleShutdown ends what is left.
#include <any>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/connection.h"
#include "server/handler.h"
#include "server/handler_test_fixture.h"
#include "server/scripted_handler.h"
#include "server/server.h"
#include "server/server_options.h"
#include "server/test_util.h"
#include "transport/proxy_protocol.h"
#include "transport/tcp_transport.h"

namespace islet {
namespace {

using ::testing::ElementsAre;
using testutil::Ctx;
using testutil::HandlerTest;
using testutil::IsOkAndHolds;
using testutil::kDeadline;

// Answers a posted message with whether the server is stopping; answers data while it
// stops with "LAST:<data>" and closes, and echoes it before.
void ScriptStoppingAware(testutil::Script& script) {
  script.message = [](const Ctx&, std::any&, Connection& conn) {
    EXPECT_TRUE(conn.Send(conn.stopping() ? "STOPPING" : "RUNNING!").ok());
    return HandlerResult::Continue();
  };
  script.data = [](const Ctx&, absl::string_view data, Connection& conn) {
    if (conn.stopping()) {
      EXPECT_TRUE(conn.Send(absl::StrCat("LAST:", data)).ok());
      return HandlerResult::Close();
    }
    EXPECT_TRUE(conn.Send(data).ok());
    return HandlerResult::Continue();
  };
}

// The request a keep-alive client sends just after the stop began: without a grace it
// would meet a closed connection.
TEST_F(HandlerTest, DuringTheGraceARequestArrivingAfterTheStopIsAnswered) {
  ScriptStoppingAware(script_);
  ServerOptions options = Options();
  options.shutdown_grace = absl::Seconds(20);
  options.shutdown_timeout = absl::Seconds(30);
  ASSERT_TRUE(Start(std::move(options)));
  std::unique_ptr<TcpSocket> client = ConnectAs(1);
  ASSERT_NE(client, nullptr);
  std::thread stopper([this] { EXPECT_TRUE(server_->Stop().ok()); });
  // Until the worker has begun the stop (a posted message is answered on the worker,
  // after the stop's urgent task once that is queued).
  std::string answer;
  const absl::Time give_up = absl::Now() + kDeadline;
  while (answer != "STOPPING" && absl::Now() < give_up) {
    ASSERT_TRUE(HandleOf(1).Post(std::string("probe")).ok());
    absl::StatusOr<std::string> got = client->Recv(8, kDeadline);
    ASSERT_TRUE(got.ok()) << "the connection ended as the stop began: " << got.status();
    answer = *got;
  }
  ASSERT_EQ(answer, "STOPPING");
  ASSERT_TRUE(client->Send("request").ok());
  EXPECT_THAT(testutil::ReadToEof(*client, kDeadline), IsOkAndHolds("LAST:request"));
  stopper.join();
  EXPECT_THAT(Endings(1), ElementsAre("close"));
}

// Puts a PROXY protocol transport (headers trusted from 127.0.0.1) in `options`: a
// transport whose handshake waits for the client to speak.
void UseProxyProtocolFromLoopback(ServerOptions& options) {
  ProxyProtocolOptions proxy;
  proxy.trusted_networks = {"127.0.0.1/32"};
  absl::StatusOr<std::shared_ptr<ProxyProtocolTransport>> transport =
      ProxyProtocolTransport::Create(std::make_shared<TcpTransport>(), proxy);
  ASSERT_TRUE(transport.ok()) << transport.status();
  options.transport = *transport;
}

// A connection accepted before the stop but still in its transport handshake (here the
// PROXY header not read yet) is served within the grace too: a balancer's connection
// brings the header and the request together, and closing it unread would drop the
// request (seen behind HAProxy in a rolling restart).
TEST_F(HandlerTest, DuringTheGraceAConnectionStillInItsHandshakeIsServed) {
  ScriptStoppingAware(script_);
  ServerOptions options = Options();
  options.shutdown_grace = absl::Seconds(20);
  options.shutdown_timeout = absl::Seconds(30);
  ASSERT_NO_FATAL_FAILURE(UseProxyProtocolFromLoopback(options));
  ASSERT_TRUE(Start(std::move(options)));
  constexpr absl::string_view kHeader = "PROXY TCP4 192.0.2.1 192.0.2.2 40000 80\r\n";
  std::unique_ptr<TcpSocket> open = Connect();
  ASSERT_NE(open, nullptr);
  ASSERT_TRUE(open->Send(kHeader).ok());
  ASSERT_TRUE(WaitFor(1, "connection"));
  std::unique_ptr<TcpSocket> handshaking = Connect();  // connection 2: no header yet
  ASSERT_NE(handshaking, nullptr);
  ASSERT_TRUE(testutil::WaitFor([&] { return server_->active_connections() == 2; }));

  std::thread stopper([this] { EXPECT_TRUE(server_->Stop().ok()); });
  // Until the worker has begun the stop (connection 1 answers a posted message).
  std::string answer;
  const absl::Time give_up = absl::Now() + kDeadline;
  while (answer != "STOPPING" && absl::Now() < give_up) {
    ASSERT_TRUE(HandleOf(1).Post(std::string("probe")).ok());
    absl::StatusOr<std::string> got = open->Recv(8, kDeadline);
    ASSERT_TRUE(got.ok()) << got.status();
    answer = *got;
  }
  ASSERT_EQ(answer, "STOPPING");
  ASSERT_TRUE(handshaking->Send(absl::StrCat(kHeader, "request")).ok());
  EXPECT_THAT(testutil::ReadToEof(*handshaking, kDeadline), IsOkAndHolds("LAST:request"));
  ASSERT_TRUE(open->Send("bye").ok());
  EXPECT_THAT(testutil::ReadToEof(*open, kDeadline), IsOkAndHolds("LAST:bye"));
  stopper.join();
  EXPECT_THAT(Endings(2), ElementsAre("close"));
}

// When the grace passes first, the handshake is not waited for.
TEST_F(HandlerTest, WhenTheGracePassesAConnectionStillInItsHandshakeIsClosed) {
  ServerOptions options = Options();
  options.shutdown_grace = absl::Milliseconds(200);
  options.shutdown_timeout = absl::Seconds(30);
  options.handshake_timeout = absl::Seconds(60);
  ASSERT_NO_FATAL_FAILURE(UseProxyProtocolFromLoopback(options));
  ASSERT_TRUE(Start(std::move(options)));
  std::unique_ptr<TcpSocket> handshaking = Connect();
  ASSERT_NE(handshaking, nullptr);
  ASSERT_TRUE(testutil::WaitFor([&] { return server_->active_connections() == 1; }));
  const absl::Time start = absl::Now();
  EXPECT_TRUE(server_->Stop().ok());
  // Ended by the grace, not by the 60 s handshake timeout nor the 30 s shutdown timeout.
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
  EXPECT_EQ(server_->active_connections(), 0);
  EXPECT_THAT(testutil::ReadToEof(*handshaking, kDeadline), IsOkAndHolds(""));
}

TEST_F(HandlerTest, WhenTheGracePassesHandleShutdownEndsAnIdleConnection) {
  ScriptStoppingAware(script_);
  script_.shutdown = [](const Ctx&, Connection& conn) { EXPECT_TRUE(conn.Send("BYE").ok()); };
  ServerOptions options = Options();
  options.shutdown_grace = absl::Milliseconds(200);
  options.shutdown_timeout = absl::Seconds(60);
  ASSERT_TRUE(Start(std::move(options)));
  std::unique_ptr<TcpSocket> client = ConnectAs(1);
  ASSERT_NE(client, nullptr);
  const absl::Time started = absl::Now();
  ASSERT_TRUE(server_->Stop().ok());
  // Generous: only that Stop did not wait for shutdown_timeout.
  EXPECT_LT(absl::Now() - started, absl::Seconds(30));
  EXPECT_THAT(testutil::ReadToEof(*client, kDeadline), IsOkAndHolds("BYE"));
  EXPECT_THAT(Endings(1), ElementsAre("shutdown"));
}

TEST(ShutdownGraceOptionTest, MustBeFiniteAndNotNegative) {
  ServerOptions options;
  options.handler_factory = [](const std::any&) { return std::unique_ptr<Handler>(); };
  options.shutdown_grace = absl::Milliseconds(-1);
  absl::Status s = ValidateServerOptions(options);
  EXPECT_TRUE(absl::IsInvalidArgument(s));
  EXPECT_NE(s.message().find("shutdown_grace"), absl::string_view::npos) << s;
  options.shutdown_grace = absl::InfiniteDuration();
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateServerOptions(options)));
  options.shutdown_grace = absl::Seconds(1);
  EXPECT_TRUE(ValidateServerOptions(options).ok());
}

}  // namespace
}  // namespace islet
