#include "metrics/metrics_endpoint.h"

#include <any>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "metrics/prometheus_text.h"
#include "server/handler.h"

namespace islet {
namespace {

constexpr size_t kMaxHeadBytes = 8 * 1024;

struct Response {
  absl::string_view status;  // "200 OK"
  absl::string_view content_type = "text/plain; charset=utf-8";
  std::string body;
};

// One request's head, parsed as far as this endpoint cares.
struct Request {
  std::string method;
  std::string path;  // without the query
  bool close = false;
  bool has_body = false;
};

// Parses a complete head (without its blank line); false when malformed.
bool ParseHead(absl::string_view head, Request& request) {
  std::vector<absl::string_view> lines = absl::StrSplit(head, "\r\n");
  std::vector<absl::string_view> parts = absl::StrSplit(lines[0], ' ');
  if (parts.size() != 3 || parts[0].empty() || parts[1].empty()) return false;
  if (parts[2] != "HTTP/1.1" && parts[2] != "HTTP/1.0") return false;
  request.method = std::string(parts[0]);
  request.path = std::string(parts[1].substr(0, parts[1].find('?')));
  request.close = parts[2] == "HTTP/1.0";
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t colon = lines[i].find(':');
    if (colon == absl::string_view::npos || colon == 0) return false;
    const std::string name = absl::AsciiStrToLower(lines[i].substr(0, colon));
    const absl::string_view value = absl::StripAsciiWhitespace(lines[i].substr(colon + 1));
    if (name == "connection") {
      if (absl::EqualsIgnoreCase(value, "close")) request.close = true;
      if (absl::EqualsIgnoreCase(value, "keep-alive")) request.close = false;
    } else if (name == "transfer-encoding" || (name == "content-length" && value != "0")) {
      request.has_body = true;
    }
  }
  return true;
}

class MetricsHttpHandler : public Handler {
 public:
  explicit MetricsHttpHandler(const std::any& options)
      : state_(std::any_cast<std::shared_ptr<MetricsEndpoint::State>>(options)) {}

  HandlerResult HandleData(absl::string_view data, Connection& conn) override {
    input_.append(data.data(), data.size());
    std::string out;
    bool close = false;
    while (!close) {
      const size_t end = input_.find("\r\n\r\n");
      if (end == std::string::npos) {
        if (input_.size() > kMaxHeadBytes) {
          Append(out, {.status = "431 Request Header Fields Too Large", .body = "head too large\n"},
                 /*head_only=*/false, /*close=*/true);
          close = true;
        }
        break;
      }
      Request request;
      const bool parsed = end <= kMaxHeadBytes && ParseHead(absl::string_view(input_).substr(0, end), request);
      input_.erase(0, end + 4);
      if (!parsed || request.has_body) {
        Append(out, {.status = "400 Bad Request", .body = "bad request\n"}, false, true);
        close = true;
        break;
      }
      close = request.close;
      Append(out, Answer(request), request.method == "HEAD", close);
    }
    if (!out.empty()) {
      absl::Status sent = conn.Send(out);
      if (!sent.ok()) return HandlerResult::Error(sent);
    }
    return close ? HandlerResult::Close() : HandlerResult::Continue();
  }

 private:
  Response Answer(const Request& request) const {
    if (request.method != "GET" && request.method != "HEAD") {
      return {.status = "405 Method Not Allowed", .body = "GET or HEAD only\n"};
    }
    if (request.path == "/metrics") {
      ServerScrape scrape{.metrics = state_->metrics->Snapshot()};
      if (state_->server != nullptr) scrape.info = state_->server->Info();
      scrape.draining = state_->draining.load(std::memory_order_relaxed);
      return {.status = "200 OK",
              .content_type = kPrometheusContentType,
              .body = PrometheusText({scrape}, ReadProcessDescriptors())};
    }
    if (request.path == "/healthz") return {.status = "200 OK", .body = "ok\n"};
    if (request.path == "/readyz") {
      absl::string_view why;
      if (state_->draining.load(std::memory_order_relaxed)) {
        why = "draining";
      } else if (state_->server != nullptr) {
        switch (state_->server->status()) {
          case ServerStatus::kRunning: break;
          case ServerStatus::kSuspended: why = "suspended"; break;
          case ServerStatus::kStopped: why = "stopped"; break;
        }
      }
      if (why.empty()) return {.status = "200 OK", .body = "ready\n"};
      return {.status = "503 Service Unavailable", .body = absl::StrCat("not ready: ", why, "\n")};
    }
    return {.status = "404 Not Found", .body = "not found: try /metrics, /healthz, /readyz\n"};
  }

  static void Append(std::string& out, const Response& r, bool head_only, bool close) {
    absl::StrAppend(&out, "HTTP/1.1 ", r.status, "\r\nContent-Type: ", r.content_type,
                    "\r\nContent-Length: ", r.body.size(), "\r\n",
                    close ? "Connection: close\r\n" : "", "\r\n");
    if (!head_only) out += r.body;
  }

  std::shared_ptr<MetricsEndpoint::State> state_;
  std::string input_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Start(
    Options options, const ServerMetrics& metrics, Server* server) {
  auto endpoint = std::unique_ptr<MetricsEndpoint>(new MetricsEndpoint());
  endpoint->state_ = std::make_shared<State>();
  endpoint->state_->metrics = &metrics;
  endpoint->state_->server = server;
  ServerOptions http;
  http.name = options.name;
  http.port = options.port;
  http.transport_options.address = options.address;
  http.handler_factory = HandlerFactoryOf<MetricsHttpHandler>();
  http.handler_options = endpoint->state_;
  // A scrape or a probe every few seconds: one worker is plenty, and a connection
  // limit keeps a misbehaving scraper from holding many descriptors.
  http.num_workers = 1;
  http.num_connections = 64;
  http.max_connections_retry_count = 0;
  http.read_timeout = absl::Seconds(30);
  http.shutdown_timeout = absl::Seconds(1);
  absl::StatusOr<std::unique_ptr<Server>> started = Server::Start(std::move(http));
  if (!started.ok()) return started.status();
  endpoint->http_ = *std::move(started);
  absl::StatusOr<SocketInfo> local = endpoint->http_->ListenerInfo();
  if (!local.ok()) return local.status();
  endpoint->local_ = *local;
  return endpoint;
}

MetricsEndpoint::~MetricsEndpoint() {
  if (http_ != nullptr) http_->Stop().IgnoreError();
}

void MetricsEndpoint::MarkDraining() { state_->draining.store(true, std::memory_order_relaxed); }

}  // namespace islet
