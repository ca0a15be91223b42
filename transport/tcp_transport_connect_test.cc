// TcpSocket::StartConnect: a connect that never waits, finished by HandshakeStep on
// writability (as an event loop drives it): to a listener, refused, and to a listener
// whose backlog is full (the connect stays under way).
#include <poll.h>
#include <sys/socket.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"
#include "transport/errors.h"
#include "transport/tcp_transport.h"
#include "transport/tcp_transport_test_util.h"
#include "transport/transport.h"

namespace islet {
namespace {


std::unique_ptr<Listener> ListenOnLoopback(int backlog = 16) {
  TcpTransport transport;
  ListenOptions options;
  options.address = "127.0.0.1";
  options.backlog = backlog;
  absl::StatusOr<std::unique_ptr<Listener>> listener = transport.Listen(0, options);
  EXPECT_TRUE(listener.ok()) << listener.status();
  return listener.ok() ? *std::move(listener) : nullptr;
}

SocketInfo Loopback(uint16_t port) {
  return SocketInfo{.family = AddressFamily::kIpv4, .address = "127.0.0.1", .port = port};
}

// Drives HandshakeStep as a loop would, polling for what it asks, until it is done,
// fails, or `bound` passes (DeadlineExceeded).
absl::Status FinishConnect(TcpSocket& socket, absl::Duration bound) {
  const absl::Time give_up = absl::Now() + bound;
  for (;;) {
    absl::StatusOr<IoInterest> step = socket.HandshakeStep();
    if (!step.ok()) return step.status();
    if (*step == IoInterest::kNone) return absl::OkStatus();
    EXPECT_EQ(*step, IoInterest::kWrite);
    const absl::Duration left = give_up - absl::Now();
    if (left <= absl::ZeroDuration()) return absl::DeadlineExceededError("still connecting");
    pollfd p = {socket.fd(), POLLOUT, 0};
    ::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
  }
}

TEST(TcpStartConnectTest, ConnectsWithoutWaitingAndCarriesBytes) {
  std::unique_ptr<Listener> listener = ListenOnLoopback();
  ASSERT_NE(listener, nullptr);
  const uint16_t port = listener->LocalInfo()->port;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TcpSocket> client,
                       TcpSocket::StartConnect(Loopback(port)));
  ASSERT_THAT(FinishConnect(*client, kGenerous), IsOk());
  ASSERT_OK_AND_ASSIGN(SocketInfo peer, client->PeerInfo());
  EXPECT_EQ(peer.port, port);
  // Done is done: the next step has nothing left to do.
  EXPECT_THAT(client->HandshakeStep(), IsOkAndHolds(IoInterest::kNone));

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Socket> server, listener->Accept());
  ASSERT_THAT(client->Send("ping"), IsOk());
  EXPECT_THAT(server->Recv(4, kGenerous), IsOkAndHolds(std::string("ping")));
}

TEST(TcpStartConnectTest, ARefusedConnectFailsItsStepNamingThePeer) {
  uint16_t port;
  {
    std::unique_ptr<Listener> closed = ListenOnLoopback();
    ASSERT_NE(closed, nullptr);
    port = closed->LocalInfo()->port;
  }  // nobody listens there now
  absl::StatusOr<std::unique_ptr<TcpSocket>> client = TcpSocket::StartConnect(Loopback(port));
  absl::Status outcome = client.ok() ? FinishConnect(**client, kGenerous) : client.status();
  EXPECT_FALSE(outcome.ok());
  EXPECT_FALSE(absl::IsDeadlineExceeded(outcome)) << outcome;
  EXPECT_NE(outcome.message().find("127.0.0.1:" + std::to_string(port)), std::string::npos)
      << outcome;
}

TEST(TcpStartConnectTest, AConnectToAFullBacklogStaysUnderWay) {
  // A backlog of 1: the kernel keeps a connection or two waiting and drops further SYNs, so the
  // next connect neither succeeds nor fails while we watch.
  std::unique_ptr<Listener> listener = ListenOnLoopback(/*backlog=*/1);
  ASSERT_NE(listener, nullptr);
  const uint16_t port = listener->LocalInfo()->port;
  std::vector<std::unique_ptr<TcpSocket>> fillers;
  absl::Status last = absl::OkStatus();
  // Fill the backlog until a connect stays under way.
  for (int i = 0; i < 8 && last.ok(); ++i) {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<TcpSocket> c, TcpSocket::StartConnect(Loopback(port)));
    last = FinishConnect(*c, absl::Milliseconds(300));
    fillers.push_back(std::move(c));
  }
  EXPECT_TRUE(absl::IsDeadlineExceeded(last)) << last;
}

TEST(TcpStartConnectTest, ABadEndpointFailsAtOnce) {
  EXPECT_THAT(TcpSocket::StartConnect(SocketInfo{.family = AddressFamily::kIpv4,
                                                 .address = "not an address",
                                                 .port = 80})
                  .status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace islet
