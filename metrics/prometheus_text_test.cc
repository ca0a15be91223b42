#include "metrics/prometheus_text.h"

#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace islet {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

MetricsSnapshot Sample(const std::string& server) {
  MetricsSnapshot s;
  s.server = server;
  s.accepted = 12;
  s.closed = {5, 2, 1, 0};
  s.accept_errors = {0, 0, 0, 3};
  s.handshake_failures = {1, 0, 1, 0, 0};
  s.received_bytes = 1000;
  s.sent_bytes = 2000;
  s.live = 4;
  s.live_per_worker = {3, 1};
  s.listener = "127.0.0.1:4000";
  s.connection_duration.bounds = {0.05, 1};
  s.connection_duration.cumulative = {6, 7};
  s.connection_duration.count = 8;
  s.connection_duration.sum = 12.25;
  s.handshake_duration.bounds = {0.001};
  s.handshake_duration.cumulative = {0};
  return s;
}

int Count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(PrometheusTextTest, SamplesWithConventionalNamesAndLabels) {
  ServerScrape scrape{.metrics = Sample("harness")};
  const std::string text = PrometheusText({scrape}, {.open = 17, .max = 1024});
  EXPECT_THAT(text, HasSubstr("# TYPE islet_connections_accepted_total counter\n"
                              "islet_connections_accepted_total{server=\"harness\"} 12\n"));
  EXPECT_THAT(text, HasSubstr("islet_connections_closed_total{server=\"harness\",ending=\"close\"} 5\n"));
  EXPECT_THAT(text, HasSubstr("islet_connections_closed_total{server=\"harness\",ending=\"timeout\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("islet_accept_errors_total{server=\"harness\",kind=\"emfile\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("islet_handshake_failures_total{server=\"harness\",reason=\"certificate\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("islet_received_bytes_total{server=\"harness\"} 1000\n"));
  EXPECT_THAT(text, HasSubstr("islet_sent_bytes_total{server=\"harness\"} 2000\n"));
  EXPECT_THAT(text, HasSubstr(
      "islet_active_connections{server=\"harness\",listener=\"127.0.0.1:4000\"} 4\n"));
  EXPECT_THAT(text, HasSubstr("islet_worker_active_connections{server=\"harness\",worker=\"0\"} 3\n"
                              "islet_worker_active_connections{server=\"harness\",worker=\"1\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE islet_connection_duration_seconds histogram\n"
                              "islet_connection_duration_seconds_bucket{server=\"harness\",le=\"0.05\"} 6\n"
                              "islet_connection_duration_seconds_bucket{server=\"harness\",le=\"1\"} 7\n"
                              "islet_connection_duration_seconds_bucket{server=\"harness\",le=\"+Inf\"} 8\n"
                              "islet_connection_duration_seconds_sum{server=\"harness\"} 12.25\n"
                              "islet_connection_duration_seconds_count{server=\"harness\"} 8\n"));
  EXPECT_THAT(text, HasSubstr("islet_tls_handshake_duration_seconds_bucket{server=\"harness\",le=\"0.001\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("process_open_fds 17\n"));
  EXPECT_THAT(text, HasSubstr("process_max_fds 1024\n"));
  // Without a ServerInfo there is no status to report.
  EXPECT_THAT(text, Not(HasSubstr("islet_server_status")));
  // Every line is a comment or a sample, and the text ends with a newline.
  ASSERT_TRUE(absl::EndsWith(text, "\n"));
  for (absl::string_view line : absl::StrSplit(absl::string_view(text).substr(0, text.size() - 1), '\n')) {
    EXPECT_TRUE(absl::StartsWith(line, "# HELP ") || absl::StartsWith(line, "# TYPE ") ||
                absl::StartsWith(line, "islet_") || absl::StartsWith(line, "process_"))
        << line;
  }
}

TEST(PrometheusTextTest, OneFamilyHeaderForSeveralServers) {
  std::vector<ServerScrape> scrapes = {{.metrics = Sample("a")}, {.metrics = Sample("b")}};
  const std::string text = PrometheusText(scrapes, {});
  EXPECT_EQ(Count(text, "# TYPE islet_connections_accepted_total "), 1);
  EXPECT_EQ(Count(text, "islet_connections_accepted_total{server="), 2);
  // A family's samples follow its header, uninterrupted by another family.
  const size_t a = text.find("islet_connections_accepted_total{server=\"a\"}");
  const size_t b = text.find("islet_connections_accepted_total{server=\"b\"}");
  const size_t next = text.find("# HELP islet_connections_closed_total");
  EXPECT_LT(a, b);
  EXPECT_LT(b, next);
  EXPECT_THAT(text, Not(HasSubstr("process_open_fds")));  // unknown: left out
}

TEST(PrometheusTextTest, ServerStateWithInfo) {
  ServerInfo info;
  info.status = ServerStatus::kSuspended;
  info.queued_output_bytes = 4096;
  info.output_budget = 1 << 20;
  info.overload.state = OverloadState::kScaling;
  info.overload.pressure = 0.875;
  info.overload.timeout_scale = 0.5;
  ServerScrape scrape{.metrics = Sample("s"), .info = info};
  std::string text = PrometheusText({scrape}, {});
  EXPECT_THAT(text, HasSubstr("islet_server_status{server=\"s\",status=\"running\"} 0\n"
                              "islet_server_status{server=\"s\",status=\"suspended\"} 1\n"
                              "islet_server_status{server=\"s\",status=\"draining\"} 0\n"
                              "islet_server_status{server=\"s\",status=\"stopped\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("islet_queued_output_bytes{server=\"s\"} 4096\n"));
  EXPECT_THAT(text, HasSubstr("islet_output_budget_bytes{server=\"s\"} 1048576\n"));
  EXPECT_THAT(text, HasSubstr("islet_overload_state{server=\"s\",state=\"scaling\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("islet_overload_state{server=\"s\",state=\"normal\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("islet_overload_pressure{server=\"s\"} 0.875\n"));
  EXPECT_THAT(text, HasSubstr("islet_overload_timeout_scale{server=\"s\"} 0.5\n"));
  // Draining overrides the status the server reports.
  scrape.info->status = ServerStatus::kRunning;
  scrape.draining = true;
  text = PrometheusText({scrape}, {});
  EXPECT_THAT(text, HasSubstr("islet_server_status{server=\"s\",status=\"running\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("islet_server_status{server=\"s\",status=\"draining\"} 1\n"));
}

TEST(PrometheusTextTest, LabelValuesAreEscaped) {
  EXPECT_EQ(EscapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  ServerScrape scrape{.metrics = Sample("we\"ird\nname")};
  const std::string text = PrometheusText({scrape}, {});
  EXPECT_THAT(text, HasSubstr("islet_connections_accepted_total{server=\"we\\\"ird\\nname\"} 12\n"));
}

TEST(PrometheusTextTest, ReadsThisProcesssDescriptors) {
  const ProcessDescriptors before = ReadProcessDescriptors();
  ASSERT_GT(before.open, 0);
  ASSERT_GT(before.max, 0);
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const ProcessDescriptors after = ReadProcessDescriptors();
  ::close(fds[0]);
  ::close(fds[1]);
  EXPECT_EQ(after.open, before.open + 2);
}

}  // namespace
}  // namespace islet
