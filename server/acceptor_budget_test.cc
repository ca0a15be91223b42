// The per-acceptor connection budget (num_connections) and its retry window: a
// connection over budget is closed when the window ends, or served when a slot frees in
// time, and every acceptor has a budget of its own. The counterpart of the
// num_connections part of Thousand Island's server_test.exs.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "server/test_util.h"
#include "transport/unique_fd.h"
#include "transport/tcp_transport.h"

namespace islet {
namespace {

using testutil::ConnectAndEcho;
using testutil::EchoHandler;
using testutil::ExpectEcho;
using testutil::kWait;
using testutil::MustConnect;
using testutil::WaitFor;

class AcceptorBudgetTest : public testutil::ServerFixture {
 protected:
  ServerOptions Options() {
    ServerOptions options = testutil::LoopbackOptions(HandlerFactoryOf<EchoHandler>());
    options.num_acceptors = 1;
    options.num_connections = 1;
    options.max_connections_retry_wait = absl::Milliseconds(100);
    options.max_connections_retry_count = 2;
    return options;
  }
};

TEST_F(AcceptorBudgetTest, OverBudgetConnectionIsClosedAfterTheRetryWindow) {
  ASSERT_TRUE(Start(Options()));

  std::unique_ptr<TcpSocket> first = ConnectAndEcho(*server_, "first");
  ASSERT_NE(first, nullptr);

  // The second connects (the kernel completes it) but is never served: after the
  // retry window (2 x 100 ms) the acceptor closes it.
  std::unique_ptr<TcpSocket> second = MustConnect(*server_);
  ASSERT_NE(second, nullptr);
  ASSERT_TRUE(second->Send("second").ok());
  absl::StatusOr<std::string> rest = testutil::ReadToEof(*second);
  // Closed with our bytes unread, the kernel may reset rather than end in order.
  EXPECT_TRUE(rest.ok() || absl::IsAborted(rest.status())) << rest.status();
  if (rest.ok()) {
    EXPECT_EQ(*rest, "");
  }
  ASSERT_TRUE(telemetry_->WaitFor(TelemetryEventType::kAcceptorSpawnError));
  std::vector<testutil::RecordedEvent> spawn_errors =
      telemetry_->Events(TelemetryEventType::kAcceptorSpawnError);
  ASSERT_EQ(spawn_errors.size(), 1u);
  EXPECT_EQ(spawn_errors[0].acceptor, 0);
  EXPECT_GT(spawn_errors[0].monotonic_time, absl::ZeroDuration());
  EXPECT_NE(spawn_errors[0].span_id, 0u);
  ASSERT_TRUE(spawn_errors[0].error.has_value());
  EXPECT_TRUE(absl::IsResourceExhausted(*spawn_errors[0].error)) << *spawn_errors[0].error;
  EXPECT_EQ(telemetry_->Count(TelemetryEventType::kConnectionStart), 1);

  // The first still works; once it leaves, a third is served.
  ExpectEcho(*first, "first again");
  EXPECT_EQ(server_->active_connections(), 1);
  first->Close();
  ASSERT_TRUE(WaitFor([&] { return server_->active_connections() == 0; }));
  std::unique_ptr<TcpSocket> third = ConnectAndEcho(*server_, "third");
  ASSERT_NE(third, nullptr);
  EXPECT_TRUE(server_->Stop().ok());
  EXPECT_EQ(telemetry_->Count(TelemetryEventType::kAcceptorSpawnError), 1);
}

TEST_F(AcceptorBudgetTest, OverBudgetConnectionIsServedWhenASlotFreesInTime) {
  ServerOptions options = Options();
  // The same wait, more tries: a window wide enough for a slow machine to notice the
  // first client leave.
  options.max_connections_retry_count = 50;
  ASSERT_TRUE(Start(std::move(options)));

  std::unique_ptr<TcpSocket> first = ConnectAndEcho(*server_, "first");
  ASSERT_NE(first, nullptr);
  std::unique_ptr<TcpSocket> second = MustConnect(*server_);
  ASSERT_NE(second, nullptr);
  ASSERT_TRUE(second->Send("queued").ok());
  // Queued, not served, while the first is open.
  absl::StatusOr<std::string> nothing = second->Recv(0, absl::Milliseconds(150));
  EXPECT_TRUE(absl::IsDeadlineExceeded(nothing.status())) << nothing.status();

  first->Close();
  absl::StatusOr<std::string> got = second->Recv(6, kWait);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "queued");
  EXPECT_EQ(telemetry_->Count(TelemetryEventType::kAcceptorSpawnError), 0);
  EXPECT_TRUE(server_->Stop().ok());
}

TEST_F(AcceptorBudgetTest, EachAcceptorHasItsOwnBudget) {
  ServerOptions options = Options();
  options.num_acceptors = 2;
  options.num_listen_sockets = 2;
  options.max_connections_retry_count = 0;  // over budget: closed at once
  ASSERT_TRUE(Start(std::move(options)));
  // Clients land on either listener by a hash. Keep connecting until both acceptors
  // hold one: the server-wide limit is 2 x 1.
  std::vector<std::unique_ptr<TcpSocket>> open;
  for (int i = 0; i < 200 && server_->active_connections() < 2; ++i) {
    std::unique_ptr<TcpSocket> c = MustConnect(*server_);
    ASSERT_NE(c, nullptr);
    absl::StatusOr<std::string> echo = testutil::RoundTrip(*c, "x", absl::Seconds(5));
    if (echo.ok()) open.push_back(std::move(c));
  }
  ASSERT_EQ(server_->active_connections(), 2);
  std::set<int> acceptors;
  for (const ConnectionSummary& s : server_->Connections()) acceptors.insert(s.acceptor);
  EXPECT_EQ(acceptors, (std::set<int>{0, 1}));
  EXPECT_TRUE(server_->Stop().ok());
}

// max_connections caps the whole server, over every acceptor and listener: each
// acceptor has room in its own budget, yet once the server holds the cap a new
// connection waits through the retry window and is closed (acceptor.spawn_error); a
// connection leaving makes room for the next. Before the cap, every acceptor could fill
// its own budget.
TEST_F(AcceptorBudgetTest, MaxConnectionsCapsTheServerOverAllAcceptors) {
  ServerOptions options = Options();
  options.num_acceptors = 2;
  options.num_listen_sockets = 2;
  options.num_connections = 10;  // per acceptor: no limit here
  options.max_connections = 3;
  ASSERT_TRUE(Start(std::move(options)));
  std::vector<std::unique_ptr<TcpSocket>> served;
  for (int i = 0; i < 3; ++i) {
    served.push_back(ConnectAndEcho(*server_, absl::StrCat("served ", i)));
    ASSERT_NE(served.back(), nullptr);
  }
  // Whichever acceptor (listener) the kernel gives them to, the next ones are refused.
  for (int i = 0; i < 4; ++i) {
    std::unique_ptr<TcpSocket> over = MustConnect(*server_);
    ASSERT_NE(over, nullptr);
    over->Send("over").IgnoreError();
    absl::StatusOr<std::string> rest = testutil::ReadToEof(*over);
    if (rest.ok()) {
      EXPECT_EQ(*rest, "") << "a connection over max_connections was served";
    } else {
      EXPECT_TRUE(absl::IsAborted(rest.status())) << rest.status();
    }
  }
  EXPECT_EQ(server_->active_connections(), 3);
  EXPECT_EQ(telemetry_->Count(TelemetryEventType::kAcceptorSpawnError), 4);
  served[0]->Close();
  ASSERT_TRUE(WaitFor([&] { return server_->active_connections() == 2; }));
  std::unique_ptr<TcpSocket> next = ConnectAndEcho(*server_, "next");
  ASSERT_NE(next, nullptr);
}

// A raw client connected from `source` (another loopback address), or invalid.
UniqueFd ConnectFrom(const char* source, uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in from = {};
  from.sin_family = AF_INET;
  ::inet_pton(AF_INET, source, &from.sin_addr);
  sockaddr_in to = {};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  ::inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&from), sizeof(from)) != 0 ||
      ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&to), sizeof(to)) != 0) {
    fd.reset();
  }
  return fd;
}

// Whether `fd` echoes "ping" (false when the server closed it instead).
bool Echoes(int fd) {
  if (::send(fd, "ping", 4, MSG_NOSIGNAL) != 4) return false;
  char back[4];
  return testutil::ReadAll(fd, back, sizeof(back), kWait) && std::string(back, 4) == "ping";
}

// max_connections_per_peer: a third connection from one address is closed at once
// (acceptor.spawn_error) while another address is served; as one leaves, the address
// has room again. Off by default.
TEST_F(AcceptorBudgetTest, MaxConnectionsPerPeerLimitsOneAddress) {
  ServerOptions options = Options();
  options.num_connections = ServerOptions::kUnlimited;
  options.max_connections_per_peer = 2;
  ASSERT_TRUE(Start(std::move(options)));
  const uint16_t port = server_->ListenerInfo()->port;
  std::vector<UniqueFd> first;
  for (int i = 0; i < 2; ++i) {
    first.push_back(ConnectFrom("127.0.0.1", port));
    ASSERT_TRUE(first.back().valid());
    ASSERT_TRUE(Echoes(first.back().get()));
  }
  UniqueFd third = ConnectFrom("127.0.0.1", port);
  ASSERT_TRUE(third.valid());
  EXPECT_FALSE(Echoes(third.get())) << "a third connection from one address was served";
  ASSERT_TRUE(telemetry_->WaitFor(TelemetryEventType::kAcceptorSpawnError));
  UniqueFd other = ConnectFrom("127.0.0.2", port);
  ASSERT_TRUE(other.valid());
  EXPECT_TRUE(Echoes(other.get()));
  first[0].reset();
  ASSERT_TRUE(WaitFor([&] { return server_->active_connections() == 2; }));
  UniqueFd again = ConnectFrom("127.0.0.1", port);
  ASSERT_TRUE(again.valid());
  EXPECT_TRUE(Echoes(again.get()));
}

}  // namespace
}  // namespace islet
