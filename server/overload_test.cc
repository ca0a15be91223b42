// Scaled timeouts under pressure (ServerOptions::overload_scale_from and
// overload_timeout_floor): near a cap, idle timeouts and the deadlines a handler marks
// as shrinkable fall toward the floor, for connections already open too, so idle
// connections are shed; fixed deadlines are kept; each change of state is reported.
// Every timeout here is a minute long: only the shrinking can close a connection
// within the tests' wait.
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/connection.h"
#include "server/handler.h"
#include "server/overload_state.h"
#include "server/server.h"
#include "server/test_util.h"
#include "transport/unique_fd.h"

namespace islet {
namespace {

using testutil::EchoHandler;
using testutil::ExpectEcho;
using testutil::kWait;
using testutil::MustConnect;
using testutil::ReadToEof;
using testutil::WaitFor;

constexpr absl::Duration kLong = absl::Seconds(60);
constexpr absl::Duration kFloor = absl::Milliseconds(200);

ServerOptions PressureOptions(HandlerFactory factory) {
  ServerOptions options = testutil::LoopbackOptions(std::move(factory));
  options.num_workers = 1;
  options.read_timeout = kLong;
  options.overload_scale_from = 0.5;
  options.overload_timeout_floor = kFloor;
  return options;
}

// An orderly end (or the reset of one closed with our input unread) within the wait.
void ExpectClosedByServer(Socket& client) {
  absl::StatusOr<std::string> rest = ReadToEof(client, kWait);
  EXPECT_TRUE(rest.ok() || absl::IsAborted(rest.status())) << rest.status();
}

class OverloadTest : public testutil::ServerFixture {};

TEST_F(OverloadTest, IdleConnectionsAtTheCapAreShedLongBeforeTheirReadTimeout) {
  ServerOptions options = PressureOptions(HandlerFactoryOf<EchoHandler>());
  options.max_connections = 4;
  ASSERT_TRUE(Start(std::move(options)));

  // The first is served at a pressure of 1/4, below overload_scale_from: its wait was
  // timed at the full minute, and must be re-timed when the pressure comes.
  std::vector<std::unique_ptr<TcpSocket>> clients;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(MustConnect(*server_));
    ASSERT_NE(clients.back(), nullptr);
    ExpectEcho(*clients.back(), "hi");
  }
  for (auto& client : clients) ExpectClosedByServer(*client);

  EXPECT_TRUE(telemetry_->WaitFor(TelemetryEventType::kConnectionStop, 4));
  for (const auto& stop : telemetry_->Events(TelemetryEventType::kConnectionStop)) {
    ASSERT_TRUE(stop.error.has_value());
    EXPECT_TRUE(absl::IsDeadlineExceeded(*stop.error)) << *stop.error;
  }
  std::vector<testutil::RecordedEvent> changes =
      telemetry_->Events(TelemetryEventType::kServerOverload);
  ASSERT_FALSE(changes.empty());
  ASSERT_TRUE(changes.front().overload.has_value());
  EXPECT_EQ(changes.front().overload->before, OverloadState::kNormal);
  EXPECT_NE(changes.front().overload->now.state, OverloadState::kNormal);
  EXPECT_EQ(changes.front().overload->now.resource, OverloadResource::kConnections);
  // Once they are gone, the state goes back to normal, and says so.
  EXPECT_TRUE(WaitFor([&] {
    std::vector<testutil::RecordedEvent> all =
        telemetry_->Events(TelemetryEventType::kServerOverload);
    return all.back().overload->now.state == OverloadState::kNormal;
  }));
  EXPECT_EQ(server_->Info().overload.state, OverloadState::kNormal);
}

TEST_F(OverloadTest, InfoReportsTheReadingAtTheCap) {
  ServerOptions options = PressureOptions(HandlerFactoryOf<EchoHandler>());
  options.max_connections = 2;
  options.overload_timeout_floor = absl::InfiniteDuration();  // nothing is shed
  ASSERT_TRUE(Start(std::move(options)));
  std::unique_ptr<TcpSocket> a = MustConnect(*server_);
  std::unique_ptr<TcpSocket> b = MustConnect(*server_);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ExpectEcho(*a, "a");
  ExpectEcho(*b, "b");

  ASSERT_TRUE(WaitFor([&] { return server_->Info().overload.state == OverloadState::kSaturated; }));
  const OverloadReading reading = server_->Info().overload;
  EXPECT_EQ(reading.resource, OverloadResource::kConnections);
  EXPECT_DOUBLE_EQ(reading.pressure, 1.0);
  EXPECT_DOUBLE_EQ(reading.timeout_scale, 0.0);
  // With the floor infinite, nothing shrank: both are still served.
  ExpectEcho(*a, "still a");
  ExpectEcho(*b, "still b");
}

// Sets a deadline of a minute when the connection starts, shrinking or not as told by
// the first byte it receives ('s' or 'f'); waits for data without a read timeout.
class DeadlineHandler : public Handler {
 public:
  HandlerResult HandleConnection(Connection& conn) override {
    return HandlerResult::ContinueWithPersistentTimeout(absl::InfiniteDuration());
  }
  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    if (!armed_) {
      armed_ = true;
      conn.SetDeadline(kLong, data[0] == 's' ? TimeoutScaling::kShrinkUnderPressure
                                             : TimeoutScaling::kFixed);
    }
    absl::Status sent = conn.Send(data);
    if (!sent.ok()) return HandlerResult::Error(sent);
    return HandlerResult::Continue();
  }

 private:
  bool armed_ = false;
};

TEST_F(OverloadTest, ShrinkableDeadlinesShrinkAndFixedOnesAreKept) {
  ServerOptions options = PressureOptions(HandlerFactoryOf<DeadlineHandler>());
  options.max_connections = 3;
  ASSERT_TRUE(Start(std::move(options)));

  std::unique_ptr<TcpSocket> fixed = MustConnect(*server_);
  ASSERT_NE(fixed, nullptr);
  ExpectEcho(*fixed, "f");
  std::unique_ptr<TcpSocket> shrinking1 = MustConnect(*server_);
  std::unique_ptr<TcpSocket> shrinking2 = MustConnect(*server_);
  ASSERT_NE(shrinking1, nullptr);
  ASSERT_NE(shrinking2, nullptr);
  ExpectEcho(*shrinking1, "s");
  ExpectEcho(*shrinking2, "s");

  // At the cap, the shrinking deadlines fall to the floor; the fixed one, and the lack
  // of any read timeout, stay as they are.
  ExpectClosedByServer(*shrinking1);
  ExpectClosedByServer(*shrinking2);
  ExpectEcho(*fixed, "still here");
}

// Each byte received asks for a 256 KiB answer.
class BigAnswerHandler : public Handler {
 public:
  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    for (size_t i = 0; i < data.size(); ++i) {
      absl::Status sent = conn.Send(std::string(256 << 10, 'a'));
      if (!sent.ok()) return HandlerResult::Error(sent);
    }
    return HandlerResult::Continue();
  }
};

TEST_F(OverloadTest, QueuedOutputNearTheBudgetShrinksTimeoutsToo) {
  ServerOptions options = PressureOptions(HandlerFactoryOf<BigAnswerHandler>());
  options.output_budget = 1 << 20;
  options.send_queue_high_water = 4 << 20;
  options.transport_options.socket_options.push_back(SocketOption::SendBuffer(16 << 10));
  ASSERT_TRUE(Start(std::move(options)));
  const uint16_t port = server_->ListenerInfo()->port;

  // An idle client, then a reader that never reads and asks for 1 MiB: all of the
  // budget but what the kernel's small buffers took waits in our queue.
  std::unique_ptr<TcpSocket> idle = MustConnect(*server_);
  ASSERT_NE(idle, nullptr);
  UniqueFd stalled = testutil::RawConnect(port, /*recv_buffer=*/4096);
  ASSERT_TRUE(stalled.valid());
  ASSERT_TRUE(testutil::WriteAll(stalled.get(), "abcd", 4));

  ASSERT_TRUE(WaitFor([&] {
    return server_->Info().overload.resource == OverloadResource::kOutput;
  }));
  EXPECT_GT(server_->Info().overload.pressure, 0.9);
  // The idle client's minute shrank with the pressure.
  ExpectClosedByServer(*idle);
}

}  // namespace
}  // namespace islet
