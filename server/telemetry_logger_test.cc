#include "server/telemetry_logger.h"

#include <cstdio>
#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "server/test_util.h"
#include "transport/tcp_transport.h"

namespace islet {
namespace {

// Everything the logger wrote so far.
std::string Contents(FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  return out;
}

TEST(LogLevelTest, ParsesNamesAndRefusesOthers) {
  EXPECT_EQ(*ParseLogLevel("debug"), LogLevel::kDebug);
  EXPECT_EQ(*ParseLogLevel("INFO"), LogLevel::kInfo);
  EXPECT_EQ(*ParseLogLevel("warn"), LogLevel::kWarning);
  EXPECT_EQ(*ParseLogLevel("error"), LogLevel::kError);
  EXPECT_EQ(*ParseLogLevel("off"), LogLevel::kOff);
  EXPECT_TRUE(absl::IsInvalidArgument(ParseLogLevel("loud").status()));
}

TEST(TelemetryLoggerTest, LevelDecidesWhatIsWrittenAndCanChangeWhileRunning) {
  FILE* out = std::tmpfile();
  ASSERT_NE(out, nullptr);
  TelemetryLogger logger(LogLevel::kInfo, out);

  ServerOptions options;
  options.port = 0;
  options.name = "logger-test";
  options.transport_options.address = "127.0.0.1";
  options.handler_factory = HandlerFactoryOf<testutil::EchoHandler>();
  auto server = Server::Start(std::move(options));
  ASSERT_TRUE(server.ok()) << server.status();
  const SocketInfo where = *(*server)->ListenerInfo();

  auto exchange = [&] {
    auto client = TcpSocket::Connect(where, absl::Seconds(10));
    ASSERT_TRUE(client.ok());
    ASSERT_TRUE((*client)->Send("ping").ok());
    ASSERT_TRUE((*client)->Recv(4, absl::Seconds(10)).ok());
  };
  exchange();
  // At info, the listener is logged and connection traffic is not.
  std::string text = Contents(out);
  EXPECT_NE(text.find("info listener.start server=logger-test"), std::string::npos) << text;
  EXPECT_NE(text.find("local=" + where.ToString()), std::string::npos) << text;
  EXPECT_EQ(text.find("connection.async_recv"), std::string::npos) << text;

  logger.set_level(LogLevel::kDebug);
  exchange();
  // A connection's stop is logged by its worker after the client hangs up.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (Contents(out).find("connection.stop server=logger-test") == std::string::npos &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  text = Contents(out);
  EXPECT_NE(text.find("debug connection.async_recv server=logger-test"), std::string::npos)
      << text;
  EXPECT_NE(text.find("bytes=4"), std::string::npos) << text;
  EXPECT_NE(text.find("debug connection.stop server=logger-test"), std::string::npos) << text;

  logger.set_level(LogLevel::kOff);
  const size_t before = Contents(out).size();
  exchange();
  ASSERT_TRUE((*server)->Stop().ok());
  EXPECT_EQ(Contents(out).size(), before);
  std::fclose(out);
}

TEST(TelemetryLoggerTest, FormatsErrorsAndLevels) {
  const absl::Status error = absl::AbortedError("recv: Connection reset by peer (ECONNRESET)");
  TelemetryEvent e{TelemetryEventType::kConnectionRecvError};
  e.server = "s";
  e.connection_id = 7;
  e.error = &error;
  EXPECT_EQ(TelemetryLogger::LevelOf(e), LogLevel::kError);
  EXPECT_NE(TelemetryLogger::Format(e).find("connection=7"), std::string::npos);
  EXPECT_NE(TelemetryLogger::Format(e).find("ECONNRESET"), std::string::npos);
  TelemetryEvent emfile{TelemetryEventType::kAcceptorEmfile};
  EXPECT_EQ(TelemetryLogger::LevelOf(emfile), LogLevel::kWarning);
  TelemetryEvent stop{TelemetryEventType::kConnectionStop};
  EXPECT_EQ(TelemetryLogger::LevelOf(stop), LogLevel::kDebug);
  stop.error = &error;
  EXPECT_EQ(TelemetryLogger::LevelOf(stop), LogLevel::kError);
}

}  // namespace
}  // namespace islet
