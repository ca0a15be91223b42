#include "metrics/metrics_endpoint.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "metrics/server_metrics.h"
#include "server/server.h"
#include "server/test_util.h"
#include "transport/tcp_transport.h"

namespace islet {
namespace {

using ::testing::HasSubstr;

struct HttpResponse {
  int status = 0;
  std::string head;
  std::string body;
};

// Reads one response (framed by Content-Length, or the head alone for a HEAD request)
// from `client`, keeping what follows it in `pending`.
absl::StatusOr<HttpResponse> ReadResponse(Socket& client, std::string& pending,
                                          bool head_only = false) {
  size_t end;
  while ((end = pending.find("\r\n\r\n")) == std::string::npos) {
    absl::StatusOr<std::string> got = client.Recv(0, testutil::kWait);
    if (!got.ok()) return got.status();
    pending += *got;
  }
  HttpResponse r;
  r.head = pending.substr(0, end);
  pending.erase(0, end + 4);
  std::vector<std::string> words = absl::StrSplit(r.head, ' ');
  if (words.size() < 2 || !absl::SimpleAtoi(words[1], &r.status)) {
    return absl::DataLossError(absl::StrCat("bad status line: ", r.head));
  }
  size_t length = 0;
  for (absl::string_view line : absl::StrSplit(r.head, "\r\n")) {
    if (absl::StartsWithIgnoreCase(line, "content-length:")) {
      if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(15)), &length)) {
        return absl::DataLossError(absl::StrCat("bad length: ", line));
      }
    }
  }
  if (head_only) return r;
  while (pending.size() < length) {
    absl::StatusOr<std::string> got = client.Recv(0, testutil::kWait);
    if (!got.ok()) return got.status();
    pending += *got;
  }
  r.body = pending.substr(0, length);
  pending.erase(0, length);
  return r;
}

class MetricsEndpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions options = testutil::LoopbackOptions(HandlerFactoryOf<testutil::EchoHandler>());
    metrics_ = std::make_unique<ServerMetrics>(options.name);
    server_ = testutil::MustStart(std::move(options));
    ASSERT_NE(server_, nullptr);
    absl::StatusOr<std::unique_ptr<MetricsEndpoint>> endpoint =
        MetricsEndpoint::Start({.port = 0, .name = testutil::UniqueName("endpoint")}, *metrics_,
                               server_.get());
    ASSERT_TRUE(endpoint.ok()) << endpoint.status();
    endpoint_ = *std::move(endpoint);
  }

  std::unique_ptr<TcpSocket> Client() { return testutil::MustConnect(endpoint_->local()); }

  // One GET on a fresh connection.
  HttpResponse Get(absl::string_view path) {
    std::unique_ptr<TcpSocket> client = Client();
    if (client == nullptr) return {};
    EXPECT_TRUE(client->Send(absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: x\r\n\r\n")).ok());
    std::string pending;
    absl::StatusOr<HttpResponse> r = ReadResponse(*client, pending);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : HttpResponse{};
  }

  std::unique_ptr<ServerMetrics> metrics_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<MetricsEndpoint> endpoint_;
};

TEST_F(MetricsEndpointTest, MetricsCountTheServersConnectionsNotTheScrapes) {
  std::vector<std::unique_ptr<TcpSocket>> clients;
  for (int i = 0; i < 2; ++i) {
    clients.push_back(testutil::ConnectAndEcho(*server_, "hi"));
    ASSERT_NE(clients.back(), nullptr);
  }
  const std::string server = absl::StrCat("server=\"", metrics_->server_name(), "\"");
  for (int scrape = 0; scrape < 3; ++scrape) {
    const HttpResponse r = Get("/metrics");
    EXPECT_EQ(r.status, 200);
    EXPECT_THAT(r.head, HasSubstr("Content-Type: text/plain; version=0.0.4; charset=utf-8"));
    EXPECT_THAT(r.body, HasSubstr(absl::StrCat("islet_connections_accepted_total{", server, "} 2\n")));
    EXPECT_THAT(r.body, HasSubstr(absl::StrCat("islet_server_status{", server,
                                               ",status=\"running\"} 1\n")));
    EXPECT_THAT(r.body, HasSubstr("process_open_fds "));
  }
}

TEST_F(MetricsEndpointTest, HealthAndReadiness) {
  EXPECT_EQ(Get("/healthz").status, 200);
  HttpResponse ready = Get("/readyz");
  EXPECT_EQ(ready.status, 200);
  EXPECT_EQ(ready.body, "ready\n");

  ASSERT_TRUE(server_->Suspend().ok());
  ready = Get("/readyz");
  EXPECT_EQ(ready.status, 503);
  EXPECT_EQ(ready.body, "not ready: suspended\n");
  EXPECT_EQ(Get("/healthz").status, 200) << "suspended is not dead";

  ASSERT_TRUE(server_->Resume().ok());
  EXPECT_EQ(Get("/readyz").status, 200);

  // Draining: not ready while the server still runs, before its listener closes.
  endpoint_->MarkDraining();
  ready = Get("/readyz");
  EXPECT_EQ(ready.status, 503);
  EXPECT_EQ(ready.body, "not ready: draining\n");
  EXPECT_THAT(Get("/metrics").body, HasSubstr(absl::StrCat(
      "islet_server_status{server=\"", metrics_->server_name(), "\",status=\"draining\"} 1\n")));
  EXPECT_EQ(server_->status(), ServerStatus::kRunning);

  ASSERT_TRUE(server_->Stop().ok());
  EXPECT_EQ(Get("/readyz").status, 503);
}

TEST_F(MetricsEndpointTest, KeepAlivePipeliningAndErrors) {
  std::unique_ptr<TcpSocket> client = Client();
  ASSERT_NE(client, nullptr);
  // Three requests in one write, answered in order on the one connection.
  ASSERT_TRUE(client
                  ->Send("GET /healthz HTTP/1.1\r\n\r\nGET /nothing HTTP/1.1\r\n\r\n"
                         "POST /metrics HTTP/1.1\r\n\r\n")
                  .ok());
  std::string pending;
  absl::StatusOr<HttpResponse> r = ReadResponse(*client, pending);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  r = ReadResponse(*client, pending);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 404);
  r = ReadResponse(*client, pending);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 405);
  // HEAD: the head alone; then a request split across writes.
  ASSERT_TRUE(client->Send("HEAD /readyz HTTP/1.1\r\n\r\nGET /rea").ok());
  r = ReadResponse(*client, pending, /*head_only=*/true);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_THAT(r->head, HasSubstr("Content-Length: 6"));
  EXPECT_TRUE(pending.empty()) << pending;
  absl::SleepFor(absl::Milliseconds(20));
  ASSERT_TRUE(client->Send("dyz HTTP/1.1\r\nConnection: close\r\n\r\n").ok());
  // HEAD's response had no body, so this one is the next thing on the wire.
  pending.clear();
  absl::StatusOr<std::string> rest = testutil::ReadToEof(*client);
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_TRUE(absl::StartsWith(*rest, "HTTP/1.1 200 OK\r\n")) << *rest;
  EXPECT_THAT(*rest, HasSubstr("Connection: close\r\n"));
  EXPECT_TRUE(absl::EndsWith(*rest, "\r\n\r\nready\n")) << *rest;
}

TEST_F(MetricsEndpointTest, BadRequestsAreRefusedAndClosed) {
  for (const std::string& request :
       {std::string("GARBAGE\r\n\r\n"), std::string("GET /metrics HTTP/2.0\r\n\r\n"),
        std::string("GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"),
        std::string("GET /metrics HTTP/1.1\r\nX: ") + std::string(9000, 'x')}) {
    std::unique_ptr<TcpSocket> client = Client();
    ASSERT_NE(client, nullptr);
    ASSERT_TRUE(client->Send(request).ok());
    absl::StatusOr<std::string> all = testutil::ReadToEof(*client);
    ASSERT_TRUE(all.ok()) << all.status() << " for " << request.substr(0, 40);
    EXPECT_TRUE(absl::StartsWith(*all, "HTTP/1.1 400 ") || absl::StartsWith(*all, "HTTP/1.1 431 "))
        << *all;
  }
}

}  // namespace
}  // namespace islet
