// The harness's metrics endpoint checked with the real tools: `promtool check metrics`
// accepts the exposition, and a real Prometheus server, started here from a generated
// config on a loopback port, scrapes the harness; a query through its HTTP API returns
// the accepted-connection count the test made. Also the SIGTERM drain's lines.
//
// promtool and prometheus come with Debian's `prometheus` package (tools/setup.sh
// installs it). When missing, these tests fail rather than skip: a skip would let CI
// pass without ever having checked the exposition with the real tools.
//
// Every process is bounded and killed by pid at the end of its test (Subprocess).
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/subprocess.h"
#include "testing/temp_file.h"
#include "tools/harness/harness_test_util.h"
#include "transport/tcp_transport.h"
#include "transport/unique_fd.h"

namespace islet::harness {
namespace {

using ::testing::HasSubstr;

SocketInfo Loopback(uint16_t port) {
  return SocketInfo{.family = AddressFamily::kIpv4, .address = "127.0.0.1", .port = port};
}

// Polls `condition` every 200 ms until it holds (true) or `timeout` passes (false).
bool Until(const std::function<bool()>& condition, absl::Duration timeout = absl::Seconds(60)) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    if (condition()) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(200));
  }
}

// The path of `name` (promtool, prometheus), or a failure saying how to install it.
std::string MustFind(const std::string& name) {
  const std::string path = FindProgram(name);
  EXPECT_FALSE(path.empty()) << name
                             << " is missing: apt-get install prometheus (tools/setup.sh "
                                "installs it); this test fails rather than skip";
  return path;
}

// One HTTP/1.0 GET to 127.0.0.1:port: the whole response, or the failure.
absl::StatusOr<std::string> HttpGet(uint16_t port, absl::string_view target) {
  absl::StatusOr<std::unique_ptr<TcpSocket>> client = TcpSocket::Connect(Loopback(port), kIoTimeout);
  if (!client.ok()) return client.status();
  absl::Status sent = (*client)->Send(absl::StrCat("GET ", target, " HTTP/1.0\r\n\r\n"));
  if (!sent.ok()) return sent;
  std::string all;
  const absl::Time deadline = absl::Now() + kIoTimeout;
  for (;;) {
    absl::StatusOr<std::string> got = (*client)->Recv(0, deadline - absl::Now());
    if (!got.ok()) {
      if (absl::IsOutOfRange(got.status())) return all;
      return got.status();
    }
    all += *got;
  }
}

std::string Body(const std::string& response) {
  const size_t end = response.find("\r\n\r\n");
  return end == std::string::npos ? "" : response.substr(end + 4);
}

// A harness serving metrics on a port of its own, parsed from its second line.
struct MetricsHarness {
  Harness harness;
  uint16_t metrics_port = 0;
};

void StartWithMetrics(std::vector<std::string> flags, MetricsHarness* out) {
  flags.push_back("--metrics_port=0");
  ASSERT_NO_FATAL_FAILURE(StartHarness(flags, &out->harness));
  Subprocess& child = *out->harness.process;
  const std::string marker = "metrics on 127.0.0.1:";
  ASSERT_TRUE(child.WaitForStdout(
      [&](absl::string_view s) { return absl::StrContains(s, marker) && absl::StrContains(s.substr(s.find(marker)), "\n"); },
      kStartTimeout))
      << Describe(child);
  const std::string text = child.Stdout();
  const size_t at = text.find(marker) + marker.size();
  int port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(text.substr(at, text.find(' ', at) - at), &port)) << text;
  out->metrics_port = static_cast<uint16_t>(port);
}

// Makes `n` connections to the harness, each echoing once, and closes them.
void Connect(const Harness& h, int n) {
  for (int i = 0; i < n; ++i) {
    absl::StatusOr<std::unique_ptr<TcpSocket>> client = TcpSocket::Connect(Loopback(h.port), kIoTimeout);
    ASSERT_TRUE(client.ok()) << client.status();
    ASSERT_TRUE((*client)->Send("ping\n").ok());
    ASSERT_TRUE((*client)->Recv(5, kIoTimeout).ok());
  }
}

// A port nobody listens on now (the kernel's pick, released): for Prometheus's web
// listener, which cannot report the port it chose.
uint16_t FreePort() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) return 0;
  socklen_t len = sizeof(a);
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) return 0;
  return ntohs(a.sin_port);
}

TEST(HarnessMetricsTest, PromtoolAcceptsTheExposition) {
  const std::string promtool = MustFind("promtool");
  ASSERT_FALSE(promtool.empty());
  MetricsHarness h;
  ASSERT_NO_FATAL_FAILURE(StartWithMetrics({"--port=0", "--num_workers=2"}, &h));
  ASSERT_NO_FATAL_FAILURE(Connect(h.harness, 3));
  absl::StatusOr<std::string> response = HttpGet(h.metrics_port, "/metrics");
  ASSERT_TRUE(response.ok()) << response.status();
  const std::string body = Body(*response);
  ASSERT_THAT(body, HasSubstr("islet_connections_accepted_total{server=\"harness\"} 3\n"));

  const CommandResult check = RunCommand({promtool, "check", "metrics"}, {.input = body});
  EXPECT_EQ(check.exit_code, 0) << check.output << "\n" << body;
  EXPECT_EQ(check.output, "") << "lint findings";
  StopAndExpectExit0(*h.harness.process);
}

TEST(HarnessMetricsTest, PrometheusScrapesTheAcceptedConnections) {
  const std::string prometheus = MustFind("prometheus");
  ASSERT_FALSE(prometheus.empty());
  MetricsHarness h;
  ASSERT_NO_FATAL_FAILURE(StartWithMetrics({"--port=0", "--num_workers=2", "--log=off"}, &h));
  constexpr int kConnections = 7;
  ASSERT_NO_FATAL_FAILURE(Connect(h.harness, kConnections));

  const std::string dir = TestTempPath("prometheus");
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0) << dir;
  const std::string config = absl::StrCat(dir, "/prometheus.yml");
  ASSERT_TRUE(WriteFileAt(config, absl::StrCat("global:\n"
                                             "  scrape_interval: 1s\n"
                                             "  scrape_timeout: 1s\n"
                                             "scrape_configs:\n"
                                             "  - job_name: islet\n"
                                             "    static_configs:\n"
                                             "      - targets: ['127.0.0.1:",
                                             h.metrics_port, "']\n")));
  // The web port is picked, released, then taken by Prometheus: another process could
  // take it in between, so a few attempts.
  std::unique_ptr<Subprocess> server;
  uint16_t web_port = 0;
  for (int attempt = 0; attempt < 3 && server == nullptr; ++attempt) {
    web_port = FreePort();
    ASSERT_NE(web_port, 0);
    absl::StatusOr<std::unique_ptr<Subprocess>> started = Subprocess::Start(
        {prometheus, absl::StrCat("--config.file=", config),
         absl::StrCat("--storage.tsdb.path=", dir, "/data"),
         absl::StrCat("--web.listen-address=127.0.0.1:", web_port), "--log.level=warn"},
        SubprocessOptions{.stderr_to_stdout = true});
    ASSERT_TRUE(started.ok()) << started.status();
    const bool up = Until([&] {
      absl::StatusOr<std::string> ready = HttpGet(web_port, "/-/ready");
      return (ready.ok() && absl::StrContains(*ready, " 200 ")) || !(*started)->Running();
    });
    if (up && (*started)->Running()) server = *std::move(started);
  }
  ASSERT_NE(server, nullptr) << "prometheus did not start on a loopback port";

  // Scraped every second: the count appears within a few scrapes.
  const std::string query =
      "/api/v1/query?query=islet_connections_accepted_total%7Bjob%3D%22islet%22%7D";
  std::string last;
  const bool counted = Until([&] {
    absl::StatusOr<std::string> answer = HttpGet(web_port, query);
    last = answer.ok() ? Body(*answer) : answer.status().ToString();
    return absl::StrContains(last, absl::StrCat("\"", kConnections, "\"]"));
  });
  EXPECT_TRUE(counted) << "last answer: " << last << "\nprometheus: " << server->Stdout();
  EXPECT_THAT(last, HasSubstr("\"server\":\"harness\""));
  // The target is healthy: Prometheus parsed every scrape.
  absl::StatusOr<std::string> targets = HttpGet(web_port, "/api/v1/targets");
  ASSERT_TRUE(targets.ok()) << targets.status();
  EXPECT_THAT(Body(*targets), HasSubstr("\"health\":\"up\""));
  server->Signal(SIGTERM);
  EXPECT_TRUE(server->Wait(kExitTimeout).has_value());
  StopAndExpectExit0(*h.harness.process);
}

// SIGTERM: /readyz fails at once (through --drain_delay), a progress line each second
// while a connection holds the drain open, then the summary.
TEST(HarnessMetricsTest, DrainFailsReadinessAndReportsProgress) {
  MetricsHarness h;
  ASSERT_NO_FATAL_FAILURE(StartWithMetrics(
      {"--port=0", "--num_workers=1", "--drain_delay=1s", "--shutdown_timeout=2500ms",
       "--linger_timeout=10s"},
      &h));
  absl::StatusOr<std::string> ready = HttpGet(h.metrics_port, "/readyz");
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_TRUE(absl::StartsWith(*ready, "HTTP/1.1 200 ")) << *ready;
  // A client that never closes: the echo handler's shutdown half-closes, and the
  // lingering close waits for the client's end until the drain's deadline.
  absl::StatusOr<std::unique_ptr<TcpSocket>> client =
      TcpSocket::Connect(Loopback(h.harness.port), kIoTimeout);
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_TRUE((*client)->Send("x").ok());
  ASSERT_TRUE((*client)->Recv(1, kIoTimeout).ok());

  Subprocess& child = *h.harness.process;
  ASSERT_TRUE(child.Signal(SIGTERM));
  ASSERT_TRUE(child.WaitForStderr(
      [](absl::string_view s) { return absl::StrContains(s, "draining (up to"); }, kIoTimeout));
  ready = HttpGet(h.metrics_port, "/readyz");
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_TRUE(absl::StartsWith(*ready, "HTTP/1.1 503 ")) << *ready;
  EXPECT_THAT(Body(*ready), HasSubstr("draining"));

  std::optional<Subprocess::Exit> exit = child.Wait(kExitTimeout);
  ASSERT_TRUE(exit.has_value()) << Describe(child);
  EXPECT_TRUE(exit->ExitedWith(0)) << exit->ToString();
  const std::string err = child.Stderr();
  EXPECT_THAT(err, HasSubstr("harness: draining: 1 connection open, "));
  EXPECT_THAT(err, HasSubstr(": 0 connections finished, 1 forced closed at the deadline\n"))
      << err;
}

}  // namespace
}  // namespace islet::harness

namespace islet::harness {
namespace {

// --log_format=json: the events are one JSON object per line, with the stable names.
TEST(HarnessLogFormatTest, JsonLinesCarryTheEventsFields) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(StartHarness({"--port=0", "--log=debug", "--log_format=json"}, &h));
  {
    absl::StatusOr<std::unique_ptr<TcpSocket>> client =
        TcpSocket::Connect(Loopback(h.port), kIoTimeout);
    ASSERT_TRUE(client.ok()) << client.status();
    ASSERT_TRUE((*client)->Send("x").ok());
    ASSERT_TRUE((*client)->Recv(1, kIoTimeout).ok());
  }
  Subprocess& child = *h.process;
  ASSERT_TRUE(child.WaitForStderr(
      [](absl::string_view s) { return absl::StrContains(s, "\"event\":\"connection.stop\""); },
      kIoTimeout))
      << Describe(child);
  StopAndExpectExit0(child);
  int events = 0;
  for (absl::string_view line : absl::StrSplit(child.Stderr(), '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, "harness: ")) continue;  // the harness's own lines
    ++events;
    EXPECT_TRUE(absl::StartsWith(line, "{\"time\":\"") && absl::EndsWith(line, "}")) << line;
    EXPECT_THAT(line, HasSubstr("\"server\":\"harness\"")) << line;
    if (absl::StrContains(line, "\"event\":\"connection.stop\"")) {
      EXPECT_THAT(line, HasSubstr("\"level\":\"debug\""));
      EXPECT_THAT(line, HasSubstr("\"detail\":\"close\""));
      EXPECT_THAT(line, HasSubstr("\"recv_bytes\":1,\"send_bytes\":1"));
      EXPECT_THAT(line, HasSubstr("\"duration_seconds\":"));
    }
  }
  EXPECT_GE(events, 5) << child.Stderr();  // listener, acceptor, connection start/stop, ...
}

TEST(HarnessLogFormatTest, AnUnknownFormatIsAUsageError) {
  EXPECT_THAT(ExpectUsageError({"--log_format=xml"}), HasSubstr("--log_format"));
  EXPECT_THAT(ExpectUsageError({"--metrics_port=70000"}), HasSubstr("--metrics_port"));
  EXPECT_THAT(ExpectUsageError({"--drain_delay=-1s"}), HasSubstr("--drain_delay"));
}

}  // namespace
}  // namespace islet::harness
