#include "server/telemetry_logger.h"

#include <sys/socket.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "server/test_util.h"
#include "transport/errors.h"
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

// The lines written so far.
std::vector<std::string> Lines(FILE* f) {
  return absl::StrSplit(Contents(f), '\n', absl::SkipEmpty());
}

int CountContaining(const std::vector<std::string>& lines, absl::string_view text) {
  int n = 0;
  for (const std::string& line : lines) n += absl::StrContains(line, text) ? 1 : 0;
  return n;
}

// Takes every connection and waits: the peer decides how it ends.
class Waiting : public Handler {};

// The machine's count of connections a full listen backlog dropped (TcpExt
// ListenOverflows in /proc/net/netstat), or -1.
int64_t ListenOverflows() {
  std::ifstream netstat("/proc/net/netstat");
  std::string names;
  std::string values;
  while (std::getline(netstat, names) && std::getline(netstat, values)) {
    if (names.rfind("TcpExt:", 0) != 0) continue;
    std::istringstream n(names);
    std::istringstream v(values);
    std::string name;
    std::string value;
    while (n >> name && v >> value) {
      if (name == "ListenOverflows") return std::stoll(value);
    }
  }
  return -1;
}

// Connects to 127.0.0.1:`port`, sends a byte and resets the connection (SO_LINGER 0).
bool ConnectAndReset(uint16_t port) {
  UniqueFd fd = testutil::RawConnect(port);
  if (!fd) return false;
  if (::send(fd.get(), "x", 1, MSG_NOSIGNAL) != 1) return false;
  const linger reset = {1, 0};
  return ::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &reset, sizeof(reset)) == 0;
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
  // The stop seen may be the first exchange's, which can end after the switch to debug:
  // both connections' stops are written (a connection is live until its stop has been
  // emitted) before the switch to off, so nothing from them can land after it.
  const absl::Time gone = absl::Now() + absl::Seconds(10);
  while ((*server)->active_connections() != 0 && absl::Now() < gone) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_EQ((*server)->active_connections(), 0);

  logger.set_level(LogLevel::kOff);
  const size_t before = Contents(out).size();
  exchange();
  ASSERT_TRUE((*server)->Stop().ok());
  EXPECT_EQ(Contents(out).size(), before);
  std::fclose(out);
}

TEST(TelemetryLoggerTest, FormatsErrors) {
  const absl::Status error = absl::AbortedError("recv: Connection reset by peer (ECONNRESET)");
  TelemetryEvent e{TelemetryEventType::kConnectionRecvError};
  e.server = "s";
  e.connection_id = 7;
  e.error = &error;
  EXPECT_NE(TelemetryLogger::Format(e).find("connection=7"), std::string::npos);
  EXPECT_NE(TelemetryLogger::Format(e).find("ECONNRESET"), std::string::npos);
}

TEST(TelemetryLoggerTest, OverloadChangesAreWarningsAtTheCapAndInfoOtherwise) {
  OverloadChange change;
  change.before = OverloadState::kNormal;
  change.now = {.state = OverloadState::kSaturated,
                .pressure = 1,
                .resource = OverloadResource::kDescriptors,
                .timeout_scale = 0};
  TelemetryEvent e{TelemetryEventType::kServerOverload};
  e.server = "s";
  e.overload = &change;
  EXPECT_EQ(TelemetryLogger::LevelOf(e), LogLevel::kWarning);
  EXPECT_NE(TelemetryLogger::Format(e).find("server.overload server=s"), std::string::npos);
  EXPECT_NE(TelemetryLogger::Format(e).find(
                "state=saturated was=normal resource=descriptors pressure=1.00 timeout_scale=0.00"),
            std::string::npos)
      << TelemetryLogger::Format(e);

  change.before = OverloadState::kSaturated;
  change.now = {.state = OverloadState::kScaling, .pressure = 0.9,
                .resource = OverloadResource::kOutput, .timeout_scale = 0.4};
  EXPECT_EQ(TelemetryLogger::LevelOf(e), LogLevel::kInfo);
  change.now.state = OverloadState::kNormal;
  EXPECT_EQ(TelemetryLogger::LevelOf(e), LogLevel::kInfo);
}

LogLevel LevelOf(TelemetryEventType type, const absl::Status* error = nullptr) {
  TelemetryEvent e{type};
  e.error = error;
  return TelemetryLogger::LevelOf(e);
}

// The table in telemetry_logger.h: a peer's doing is never an error.
TEST(TelemetryLoggerTest, LevelsSayWhoseDoingAnEventIs) {
  using T = TelemetryEventType;
  const absl::Status reset = absl::AbortedError("recv: Connection reset by peer (ECONNRESET)");
  const absl::Status idle = absl::DeadlineExceededError("recv: no data within the read timeout");
  const absl::Status early = absl::OutOfRangeError("handshake: peer closed the connection");
  const absl::Status refused = absl::UnauthenticatedError("handshake: certificate verify failed");
  const absl::Status bug = absl::InternalError("the handler broke");
  const absl::Status missing = absl::NotFoundError("sendfile: No such file (ENOENT)");
  const absl::Status emfile = absl::ResourceExhaustedError("accept: Too many open files");

  for (const absl::Status* peer : {&reset, &idle, &early, &refused}) {
    EXPECT_EQ(LevelOf(T::kConnectionStop, peer), LogLevel::kInfo) << *peer;
    EXPECT_EQ(LevelOf(T::kConnectionRecvError, peer), LogLevel::kDebug) << *peer;
    EXPECT_EQ(LevelOf(T::kConnectionSendError, peer), LogLevel::kDebug) << *peer;
    EXPECT_EQ(LevelOf(T::kConnectionSendfileError, peer), LogLevel::kDebug) << *peer;
  }
  EXPECT_EQ(LevelOf(T::kConnectionStop), LogLevel::kDebug);
  EXPECT_EQ(LevelOf(T::kConnectionStop, &bug), LogLevel::kError);
  // ResourceExhausted is either's: a peer that reads nothing (marked so where the
  // server makes the error), or the machine out of memory, which stays an error.
  const absl::Status not_reading =
      MarkPeerCaused(absl::ResourceExhaustedError("send: over send_queue_limit"));
  const absl::Status enomem = absl::ResourceExhaustedError("send: Cannot allocate memory");
  EXPECT_EQ(LevelOf(T::kConnectionStop, &not_reading), LogLevel::kInfo);
  EXPECT_EQ(LevelOf(T::kConnectionSendError, &not_reading), LogLevel::kDebug);
  EXPECT_EQ(LevelOf(T::kConnectionStop, &enomem), LogLevel::kError);
  EXPECT_EQ(LevelOf(T::kConnectionSendError, &enomem), LogLevel::kError);
  EXPECT_EQ(LevelOf(T::kConnectionRecvError, &bug), LogLevel::kError);
  EXPECT_EQ(LevelOf(T::kConnectionSendfileError, &missing), LogLevel::kError);
  EXPECT_EQ(LevelOf(T::kAcceptorEmfile, &emfile), LogLevel::kError);
  EXPECT_EQ(LevelOf(T::kAcceptorAcceptError, &bug), LogLevel::kError);
  EXPECT_EQ(LevelOf(T::kAcceptorSpawnError, &emfile), LogLevel::kWarning);
  EXPECT_EQ(LevelOf(T::kAcceptorEconnaborted, &reset), LogLevel::kInfo);
  EXPECT_EQ(LevelOf(T::kListenerStart), LogLevel::kInfo);
  EXPECT_EQ(LevelOf(T::kAcceptorStop), LogLevel::kInfo);
  EXPECT_EQ(LevelOf(T::kConnectionAsyncRecv), LogLevel::kDebug);
  EXPECT_EQ(LevelOf(T::kConnectionSocketShutdown, &bug), LogLevel::kDebug);

  // What a level asks telemetry for: every type that can reach it.
  const TelemetryMask at_info = TelemetryLogger::InterestAt(LogLevel::kInfo);
  EXPECT_NE(at_info & TelemetryBit(T::kConnectionStop), 0u);
  EXPECT_NE(at_info & TelemetryBit(T::kConnectionRecvError), 0u);
  EXPECT_EQ(at_info & TelemetryBit(T::kConnectionAsyncRecv), 0u);
  const TelemetryMask at_error = TelemetryLogger::InterestAt(LogLevel::kError);
  EXPECT_EQ(at_error & TelemetryBit(T::kAcceptorEconnaborted), 0u);
  EXPECT_NE(at_error & TelemetryBit(T::kAcceptorEmfile), 0u);
  EXPECT_EQ(TelemetryLogger::InterestAt(LogLevel::kOff), 0u);
}

// A clock the test moves by hand.
class FakeClock {
 public:
  absl::Time Now() const {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }
  std::function<absl::Time()> AsFunction() {
    return [this] { return Now(); };
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_) = absl::FromUnixSeconds(1700000000);  // 22:13:20Z
};

// The K of a "... and K more like it in the last second" line; -1 if there is none.
int64_t LeftOut(const std::vector<std::string>& lines, absl::string_view prefix) {
  for (const std::string& line : lines) {
    if (!absl::StrContains(line, prefix)) continue;
    const size_t at = line.find(" ... and ");
    if (at == std::string::npos) continue;
    int64_t k = -1;
    if (absl::SimpleAtoi(absl::string_view(line).substr(at + 9, line.find(' ', at + 9) - at - 9),
                         &k)) {
      return k;
    }
  }
  return -1;
}

void EmitAcceptError(const absl::Status& error) {
  TelemetryEvent e{TelemetryEventType::kAcceptorAcceptError};
  e.server = "limited";
  e.error = &error;
  Telemetry::Emit(e);
}

TEST(TelemetryLoggerTest, RateLimitCountsWhatItLeavesOut) {
  FILE* out = std::tmpfile();
  ASSERT_NE(out, nullptr);
  FakeClock clock;
  auto logger = std::make_unique<TelemetryLogger>(TelemetryLogger::Options{
      .level = LogLevel::kInfo, .out = out, .lines_per_second = 3, .clock = clock.AsFunction()});
  const absl::Status error = absl::InternalError("accept: the listener broke");

  for (int i = 0; i < 10; ++i) EmitAcceptError(error);
  clock.Advance(absl::Milliseconds(500));
  for (int i = 0; i < 2; ++i) EmitAcceptError(error);
  std::vector<std::string> lines = Lines(out);
  EXPECT_EQ(lines.size(), 3u) << Contents(out);  // the rest wait for the second to end
  EXPECT_EQ(CountContaining(lines, "2023-11-14T22:13:20.000Z error acceptor.accept_error "
                                   "server=limited"),
            3)
      << Contents(out);

  // Once the second is over, the next line of any kind is preceded by the count,
  // stamped with the second's end.
  clock.Advance(absl::Milliseconds(700));
  TelemetryEvent start{TelemetryEventType::kListenerStart};
  start.server = "limited";
  Telemetry::Emit(start);
  lines = Lines(out);
  ASSERT_EQ(lines.size(), 5u) << Contents(out);
  EXPECT_EQ(lines[3],
            "2023-11-14T22:13:21.000Z error acceptor.accept_error ... and 9 more like it in the "
            "last second");
  EXPECT_TRUE(absl::StartsWith(lines[4], "2023-11-14T22:13:21.200Z info listener.start"))
      << lines[4];

  // A new second for accept errors: three more lines, then what is left out is counted
  // when the logger goes.
  for (int i = 0; i < 5; ++i) EmitAcceptError(error);
  EXPECT_EQ(Lines(out).size(), 8u) << Contents(out);
  logger.reset();
  lines = Lines(out);
  ASSERT_EQ(lines.size(), 9u) << Contents(out);
  EXPECT_EQ(LeftOut(lines, "acceptor.accept_error"), 9);  // the first summary
  EXPECT_EQ(lines[8],
            "2023-11-14T22:13:21.200Z error acceptor.accept_error ... and 2 more like it in the "
            "last second");
  std::fclose(out);
}

TEST(TelemetryLoggerTest, NoRateLimitWhenAskedForNone) {
  FILE* out = std::tmpfile();
  ASSERT_NE(out, nullptr);
  FakeClock clock;
  auto logger = std::make_unique<TelemetryLogger>(TelemetryLogger::Options{
      .level = LogLevel::kError, .out = out, .lines_per_second = 0, .clock = clock.AsFunction()});
  const absl::Status error = absl::InternalError("accept: the listener broke");
  for (int i = 0; i < 100; ++i) EmitAcceptError(error);
  logger.reset();
  EXPECT_EQ(Lines(out).size(), 100u);
  std::fclose(out);
}

// A storm of peer resets is the clients' doing, not the server's: at the default level
// it writes no error line, and the rate limit bounds what it writes at all.
TEST(TelemetryLoggerTest, PeerResetStormWritesNoErrorAndFewLines) {
  FILE* out = std::tmpfile();
  ASSERT_NE(out, nullptr);
  // The default level, and the default limit; the clock stands still, so that the whole
  // storm falls in one second however long it takes.
  FakeClock clock;
  auto logger = std::make_unique<TelemetryLogger>(
      TelemetryLogger::Options{.out = out, .clock = clock.AsFunction()});
  ASSERT_EQ(logger->level(), LogLevel::kInfo);

  ServerOptions options = testutil::LoopbackOptions(HandlerFactoryOf<Waiting>());
  const std::string name = options.name;
  testutil::TelemetryRecorder recorder(
      name, TelemetryBit(TelemetryEventType::kConnectionStop) |
                TelemetryBit(TelemetryEventType::kConnectionStart) |
                TelemetryBit(TelemetryEventType::kAcceptorEconnaborted) |
                TelemetryBit(TelemetryEventType::kAcceptorAcceptError) |
                TelemetryBit(TelemetryEventType::kAcceptorEmfile) |
                TelemetryBit(TelemetryEventType::kAcceptorSpawnError));
  std::unique_ptr<Server> server = testutil::MustStart(std::move(options));
  ASSERT_NE(server, nullptr);
  const uint16_t port = server->ListenerInfo()->port;

  constexpr int kResets = 2000;
  // In bursts, each waiting for the server to have taken the one before: a client far
  // ahead of a slow server (the sanitizers, a busy machine) would overflow the listen
  // backlog (1024), and the kernel drops such connections before the server sees them.
  constexpr int kBurst = 250;
  const int64_t overflows = ListenOverflows();
  auto diagnosis = [&] {
    return absl::StrCat(
        recorder.Count(TelemetryEventType::kConnectionStart), " started, ",
        recorder.Count(TelemetryEventType::kConnectionStop), " stopped; acceptor: ",
        recorder.Count(TelemetryEventType::kAcceptorEconnaborted), " econnaborted, ",
        recorder.Count(TelemetryEventType::kAcceptorAcceptError), " errors, ",
        recorder.Count(TelemetryEventType::kAcceptorEmfile), " emfile, ",
        recorder.Count(TelemetryEventType::kAcceptorSpawnError),
        " refused; listen overflows on the machine: ", ListenOverflows() - overflows);
  };
  for (int i = 0; i < kResets; ++i) {
    ASSERT_TRUE(ConnectAndReset(port)) << i;
    if ((i + 1) % kBurst == 0) {
      ASSERT_TRUE(recorder.WaitFor(TelemetryEventType::kConnectionStart, i + 1 - kBurst))
          << diagnosis();
    }
  }
  ASSERT_TRUE(recorder.WaitFor(TelemetryEventType::kConnectionStop, kResets)) << diagnosis();
  ASSERT_TRUE(server->Stop().ok());
  logger.reset();

  int resets = 0;
  int stops_with_error = 0;
  for (const testutil::RecordedEvent& e : recorder.Events(TelemetryEventType::kConnectionStop)) {
    if (!e.error.has_value()) continue;
    ++stops_with_error;
    if (absl::IsAborted(*e.error)) ++resets;
  }
  EXPECT_GE(resets, kResets / 2) << "the storm was not one of resets";

  const std::vector<std::string> lines = Lines(out);
  EXPECT_EQ(CountContaining(lines, " error "), 0) << Contents(out);
  // Per kind: 10 lines and a count. Listener, acceptor, connection.stop, econnaborted.
  EXPECT_LE(lines.size(), 4u * 11u) << Contents(out);
  // Every stop with an error is either a line or in the count.
  const int written = CountContaining(lines, "info connection.stop server=" + name);
  EXPECT_EQ(written, 10) << Contents(out);
  EXPECT_EQ(written + LeftOut(lines, "info connection.stop"), stops_with_error) << Contents(out);
  std::fclose(out);
}

// A fault of the server's own (here a handler's Error) is still an error line.
TEST(TelemetryLoggerTest, HandlerErrorIsLoggedAtError) {
  FILE* out = std::tmpfile();
  ASSERT_NE(out, nullptr);
  auto logger = std::make_unique<TelemetryLogger>(LogLevel::kInfo, out);

  class Failing : public Handler {
    HandlerResult HandleData(absl::string_view, Connection&) override {
      return HandlerResult::Error(absl::InternalError("the handler broke"));
    }
  };
  ServerOptions options = testutil::LoopbackOptions(HandlerFactoryOf<Failing>());
  const std::string name = options.name;
  testutil::TelemetryRecorder recorder(name, TelemetryBit(TelemetryEventType::kConnectionStop));
  std::unique_ptr<Server> server = testutil::MustStart(std::move(options));
  ASSERT_NE(server, nullptr);
  std::unique_ptr<TcpSocket> client = testutil::MustConnect(*server);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Send("hello").ok());
  ASSERT_TRUE(recorder.WaitFor(TelemetryEventType::kConnectionStop));
  ASSERT_TRUE(server->Stop().ok());
  logger.reset();

  const std::vector<std::string> lines = Lines(out);
  EXPECT_EQ(CountContaining(lines, " error connection.stop server=" + name), 1) << Contents(out);
  EXPECT_EQ(CountContaining(lines, "the handler broke"), 1) << Contents(out);
  std::fclose(out);
}

// A client that connects and never reads, against a handler that keeps sending: the
// server closes the connection (ResourceExhausted), and the log blames the peer.
enum class OverWhat { kSendQueueLimit, kOutputBudget };

class PeerNeverReadsTest : public ::testing::TestWithParam<OverWhat> {};

TEST_P(PeerNeverReadsTest, ClosingItIsThePeersDoingInTheLog) {
  FILE* out = std::tmpfile();
  ASSERT_NE(out, nullptr);
  auto logger = std::make_unique<TelemetryLogger>(LogLevel::kInfo, out);

  // Sends 1 MiB blocks until Send fails: the kernel's buffers fill, then the queue.
  class Flooding : public Handler {
    HandlerResult HandleConnection(Connection& conn) override {
      const std::string block(1 << 20, 'x');
      for (int i = 0; i < 256; ++i) {
        absl::Status sent = conn.Send(block);
        if (!sent.ok()) return HandlerResult::Error(sent);
      }
      return HandlerResult::Continue();
    }
  };
  ServerOptions options = testutil::LoopbackOptions(HandlerFactoryOf<Flooding>());
  if (GetParam() == OverWhat::kSendQueueLimit) {
    options.send_queue_high_water = 64 << 10;
    options.send_queue_limit = 256 << 10;
  } else {
    options.output_budget = 256 << 10;
  }
  const std::string name = options.name;
  testutil::TelemetryRecorder recorder(name, TelemetryBit(TelemetryEventType::kConnectionStop));
  std::unique_ptr<Server> server = testutil::MustStart(std::move(options));
  ASSERT_NE(server, nullptr);
  std::unique_ptr<TcpSocket> client = testutil::MustConnect(*server);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(recorder.WaitFor(TelemetryEventType::kConnectionStop));
  const std::vector<testutil::RecordedEvent> stops =
      recorder.Events(TelemetryEventType::kConnectionStop);
  ASSERT_EQ(stops.size(), 1u);
  ASSERT_TRUE(stops[0].error.has_value());
  EXPECT_TRUE(absl::IsResourceExhausted(*stops[0].error)) << *stops[0].error;
  ASSERT_TRUE(server->Stop().ok());
  logger.reset();

  const std::vector<std::string> lines = Lines(out);
  EXPECT_EQ(CountContaining(lines, " error "), 0) << Contents(out);
  EXPECT_EQ(CountContaining(lines, " info connection.stop server=" + name), 1) << Contents(out);
  std::fclose(out);
}

INSTANTIATE_TEST_SUITE_P(Overs, PeerNeverReadsTest,
                         ::testing::Values(OverWhat::kSendQueueLimit, OverWhat::kOutputBudget),
                         [](const ::testing::TestParamInfo<OverWhat>& info) {
                           return info.param == OverWhat::kSendQueueLimit ? "SendQueueLimit"
                                                                          : "OutputBudget";
                         });

}  // namespace
}  // namespace islet

namespace islet {
namespace {

TEST(LogFormatTest, ParsesNamesAndRefusesOthers) {
  EXPECT_EQ(*ParseLogFormat("text"), LogFormat::kText);
  EXPECT_EQ(*ParseLogFormat("json"), LogFormat::kJson);
  EXPECT_TRUE(absl::IsInvalidArgument(ParseLogFormat("xml").status()));
}

// One object per line with the documented names; strings escaped, numbers as numbers.
TEST(TelemetryLoggerTest, JsonIsOneObjectPerLineWithStableNames) {
  FILE* out = std::tmpfile();
  ASSERT_NE(out, nullptr);
  FakeClock clock;
  auto logger = std::make_unique<TelemetryLogger>(
      TelemetryLogger::Options{.level = LogLevel::kInfo,
                               .format = LogFormat::kJson,
                               .out = out,
                               .lines_per_second = 1,
                               .clock = clock.AsFunction()});
  const SocketInfo peer{.family = AddressFamily::kIpv4, .address = "127.0.0.1", .port = 50000};
  const SocketStats stats{.bytes_received = 5, .bytes_sent = 7};
  const absl::Status error = absl::DeadlineExceededError("recv: \"idle\"\n\x01 caf\xc3\xa9 \xff");
  TelemetryEvent stop{TelemetryEventType::kConnectionStop};
  stop.server = "json";
  stop.span_id = 7;
  stop.parent_span_id = 2;
  stop.acceptor = 0;
  stop.connection_id = 3;
  stop.worker = 1;
  stop.remote = &peer;
  stop.detail = "timeout";
  stop.duration = absl::Milliseconds(1500);
  stop.stats = &stats;
  stop.error = &error;
  Telemetry::Emit(stop);
  Telemetry::Emit(stop);  // over the rate limit: counted
  logger.reset();
  const std::vector<std::string> lines = Lines(out);
  ASSERT_EQ(lines.size(), 2u) << Contents(out);
  EXPECT_EQ(lines[0],
            "{\"time\":\"2023-11-14T22:13:20.000Z\",\"level\":\"info\","
            "\"event\":\"connection.stop\",\"server\":\"json\",\"span\":7,\"parent_span\":2,"
            "\"acceptor\":0,\"connection\":3,\"worker\":1,\"remote\":\"127.0.0.1:50000\","
            "\"detail\":\"timeout\",\"duration_seconds\":1.5,\"recv_bytes\":5,\"send_bytes\":7,"
            "\"error\":\"recv: \\\"idle\\\"\\u000a\\u0001 caf\xc3\xa9 \\ufffd\","
            "\"error_code\":\"DEADLINE_EXCEEDED\"}");
  EXPECT_EQ(lines[1],
            "{\"time\":\"2023-11-14T22:13:20.000Z\",\"level\":\"info\","
            "\"event\":\"connection.stop\",\"suppressed\":1}");
  std::fclose(out);
}

}  // namespace
}  // namespace islet
