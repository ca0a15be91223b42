// ServerOptions validation: every invalid option makes Server::Start fail with
// InvalidArgument naming the option, before anything listens; a port in use fails
// with AlreadyExists (config_test.exs and listener_test.exs of Thousand Island).
#include "server/server_options.h"

#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "server/test_util.h"

namespace islet {
namespace {

using ::testing::HasSubstr;
using testutil::EchoHandler;
using testutil::ThreadCount;

ServerOptions ValidOptions() {
  ServerOptions options = testutil::LoopbackOptions(HandlerFactoryOf<EchoHandler>());
  options.num_workers = 1;
  return options;
}

struct InvalidCase {
  std::string label;
  std::function<void(ServerOptions&)> mutate;
  std::string option;  // what the message must name
};

class InvalidOptionTest : public ::testing::TestWithParam<InvalidCase> {};

TEST_P(InvalidOptionTest, StartFailsWithInvalidArgumentNamingTheOption) {
  const InvalidCase& c = GetParam();
  ServerOptions options = ValidOptions();
  c.mutate(options);

  const absl::Status direct = ValidateServerOptions(options);
  EXPECT_TRUE(absl::IsInvalidArgument(direct)) << direct;
  EXPECT_THAT(std::string(direct.message()), HasSubstr(c.option));

  const int threads_before = ThreadCount();
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(std::move(options));
  ASSERT_FALSE(server.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(server.status())) << server.status();
  EXPECT_THAT(std::string(server.status().message()), HasSubstr(c.option));
  // Nothing was started: validation comes before any thread or socket.
  EXPECT_EQ(ThreadCount(), threads_before);
}

INSTANTIATE_TEST_SUITE_P(
    Options, InvalidOptionTest,
    ::testing::Values(
        InvalidCase{"NumAcceptorsZero", [](ServerOptions& o) { o.num_acceptors = 0; },
                    "num_acceptors"},
        InvalidCase{"NumAcceptorsNegative", [](ServerOptions& o) { o.num_acceptors = -3; },
                    "num_acceptors"},
        InvalidCase{"ListenSocketsExceedAcceptors",
                    [](ServerOptions& o) {
                      o.num_acceptors = 3;
                      o.num_listen_sockets = 5;
                    },
                    "num_listen_sockets"},
        InvalidCase{"ListenSocketsZero", [](ServerOptions& o) { o.num_listen_sockets = 0; },
                    "num_listen_sockets"},
        InvalidCase{"NegativeWorkers", [](ServerOptions& o) { o.num_workers = -1; },
                    "num_workers"},
        InvalidCase{"NumConnectionsZero", [](ServerOptions& o) { o.num_connections = 0; },
                    "num_connections"},
        InvalidCase{"NumConnectionsNegative",
                    [](ServerOptions& o) { o.num_connections = -2; }, "num_connections"},
        InvalidCase{"NegativeRetryCount",
                    [](ServerOptions& o) { o.max_connections_retry_count = -1; },
                    "max_connections_retry_count"},
        InvalidCase{"NegativeRetryWait",
                    [](ServerOptions& o) {
                      o.max_connections_retry_wait = absl::Milliseconds(-1);
                    },
                    "max_connections_retry_wait"},
        InvalidCase{"InfiniteRetryWait",
                    [](ServerOptions& o) {
                      o.max_connections_retry_wait = absl::InfiniteDuration();
                    },
                    "max_connections_retry_wait"},
        InvalidCase{"ZeroReadTimeout",
                    [](ServerOptions& o) { o.read_timeout = absl::ZeroDuration(); },
                    "read_timeout"},
        InvalidCase{"NegativeReadTimeout",
                    [](ServerOptions& o) { o.read_timeout = absl::Seconds(-1); },
                    "read_timeout"},
        InvalidCase{"ZeroHandshakeTimeout",
                    [](ServerOptions& o) { o.handshake_timeout = absl::ZeroDuration(); },
                    "handshake_timeout"},
        InvalidCase{"InfiniteHandshakeTimeout",
                    [](ServerOptions& o) { o.handshake_timeout = absl::InfiniteDuration(); },
                    "handshake_timeout"},
        InvalidCase{"NegativeShutdownTimeout",
                    [](ServerOptions& o) { o.shutdown_timeout = absl::Milliseconds(-1); },
                    "shutdown_timeout"},
        InvalidCase{"InfiniteShutdownTimeout",
                    [](ServerOptions& o) { o.shutdown_timeout = absl::InfiniteDuration(); },
                    "shutdown_timeout"},
        InvalidCase{"ZeroSendTimeout",
                    [](ServerOptions& o) { o.send_timeout = absl::ZeroDuration(); },
                    "send_timeout"},
        InvalidCase{"HighWaterZero", [](ServerOptions& o) { o.send_queue_high_water = 0; },
                    "send_queue_high_water"},
        InvalidCase{"LimitBelowHighWater",
                    [](ServerOptions& o) {
                      o.send_queue_high_water = 1 << 20;
                      o.send_queue_limit = (1 << 20) - 1;
                    },
                    "send_queue_limit"},
        InvalidCase{"ScaleFromZero", [](ServerOptions& o) { o.overload_scale_from = 0; },
                    "overload_scale_from"},
        InvalidCase{"ScaleFromAboveOne",
                    [](ServerOptions& o) { o.overload_scale_from = 1.5; },
                    "overload_scale_from"},
        InvalidCase{"ScaleFromNaN",
                    [](ServerOptions& o) {
                      o.overload_scale_from = std::numeric_limits<double>::quiet_NaN();
                    },
                    "overload_scale_from"},
        InvalidCase{"ZeroTimeoutFloor",
                    [](ServerOptions& o) { o.overload_timeout_floor = absl::ZeroDuration(); },
                    "overload_timeout_floor"},
        InvalidCase{"MissingHandlerFactory",
                    [](ServerOptions& o) { o.handler_factory = nullptr; }, "handler_factory"},
        InvalidCase{"BacklogZero", [](ServerOptions& o) { o.transport_options.backlog = 0; },
                    "backlog"},
        InvalidCase{"ListenSocketsOnUnixPath",
                    [](ServerOptions& o) {
                      o.num_acceptors = 2;
                      o.num_listen_sockets = 2;
                      o.transport_options.unix_path = "/tmp/islet-never-created.sock";
                    },
                    "num_listen_sockets"}),
    [](const ::testing::TestParamInfo<InvalidCase>& info) { return info.param.label; });

TEST(ServerOptionsTest, DefaultsAreValid) {
  ServerOptions options;
  options.handler_factory = HandlerFactoryOf<EchoHandler>();
  EXPECT_TRUE(ValidateServerOptions(options).ok());
  // Thousand Island's defaults.
  EXPECT_EQ(options.port, 4000);
  EXPECT_EQ(options.num_listen_sockets, 1);
  EXPECT_EQ(options.num_connections, 16384);
  EXPECT_EQ(options.max_connections_retry_count, 5);
  EXPECT_EQ(options.max_connections_retry_wait, absl::Seconds(1));
  EXPECT_EQ(options.read_timeout, absl::Seconds(60));
  EXPECT_EQ(options.handshake_timeout, absl::Seconds(5));
  EXPECT_EQ(options.shutdown_timeout, absl::Seconds(15));
}

TEST(ServerOptionsTest, BoundaryValuesAreAccepted) {
  ServerOptions options = ValidOptions();
  options.num_acceptors = 5;
  options.num_listen_sockets = 5;  // equal is fine
  options.num_connections = ServerOptions::kUnlimited;
  options.max_connections_retry_count = 0;
  options.max_connections_retry_wait = absl::ZeroDuration();
  options.read_timeout = absl::InfiniteDuration();
  options.shutdown_timeout = absl::ZeroDuration();
  options.send_queue_high_water = 1;
  options.send_queue_limit = 1;
  EXPECT_TRUE(ValidateServerOptions(options).ok()) << ValidateServerOptions(options);

  ServerOptions three_of_ten = ValidOptions();
  three_of_ten.num_acceptors = 10;
  three_of_ten.num_listen_sockets = 3;
  EXPECT_TRUE(ValidateServerOptions(three_of_ten).ok());
}

TEST(ServerOptionsTest, ZeroWorkersMeansOnePerCore) {
  ServerOptions options = ValidOptions();
  options.num_workers = 0;
  std::unique_ptr<Server> server = testutil::MustStart(std::move(options));
  ASSERT_NE(server, nullptr);
  ASSERT_NE(testutil::ConnectAndEcho(*server, "ping"), nullptr);
  EXPECT_TRUE(server->Stop().ok());
}

TEST(ServerOptionsTest, PortInUseFailsWithAlreadyExists) {
  std::unique_ptr<Server> first = testutil::MustStart(ValidOptions());
  ASSERT_NE(first, nullptr);
  absl::StatusOr<SocketInfo> where = first->ListenerInfo();
  ASSERT_TRUE(where.ok()) << where.status();

  ServerOptions options = ValidOptions();
  options.port = where->port;
  const int threads_before = ThreadCount();
  absl::StatusOr<std::unique_ptr<Server>> second = Server::Start(std::move(options));
  ASSERT_FALSE(second.ok());
  EXPECT_TRUE(absl::IsAlreadyExists(second.status())) << second.status();
  EXPECT_EQ(ThreadCount(), threads_before);

  // Several listen sockets (SO_REUSEPORT) cannot share a port the first server holds
  // without it either.
  ServerOptions reuse = ValidOptions();
  reuse.port = where->port;
  reuse.num_acceptors = 2;
  reuse.num_listen_sockets = 2;
  absl::StatusOr<std::unique_ptr<Server>> third = Server::Start(std::move(reuse));
  ASSERT_FALSE(third.ok());
  EXPECT_TRUE(absl::IsAlreadyExists(third.status())) << third.status();

  // The first server is undisturbed.
  ASSERT_NE(testutil::ConnectAndEcho(*first, "still here"), nullptr);
  EXPECT_TRUE(first->Stop().ok());

  // Once it has stopped, the port is free again.
  ServerOptions again = ValidOptions();
  again.port = where->port;
  std::unique_ptr<Server> fourth = testutil::MustStart(std::move(again));
  ASSERT_NE(fourth, nullptr);
  EXPECT_EQ(fourth->ListenerInfo()->port, where->port);
}

}  // namespace
}  // namespace islet
