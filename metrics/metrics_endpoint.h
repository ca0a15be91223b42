// MetricsEndpoint: a small HTTP/1.1 server, built on Islet itself (a Server with a
// handler of its own), that serves a server's metrics and its health to Prometheus and
// to Kubernetes-style probes, on an address and port of its own.
//
//   GET /metrics   200, the Prometheus text format (prometheus_text.h)
//   GET /healthz   200 "ok": the process is alive and serving
//   GET /readyz    200 "ready" while the server runs; 503 once it is suspended, stopped
//                  or draining (MarkDraining), so that a balancer stops sending it new
//                  clients before Stop closes its listener
//   anything else  404; a method other than GET or HEAD 405; a request with a body, a
//                  malformed head or one over 8 KiB 400 (or 431) and a close
//
// Keep-alive and pipelining as HTTP/1.1 has them; "Connection: close" and HTTP/1.0
// close after the response.
//
//   islet::ServerMetrics metrics("harness");
//   ... start the server named "harness" ...
//   auto endpoint = islet::MetricsEndpoint::Start({.port = 9464}, metrics, server.get());
//   ... on SIGTERM: (*endpoint)->MarkDraining(); wait; server->Stop(); ...
#ifndef ISLET_METRICS_METRICS_ENDPOINT_H_
#define ISLET_METRICS_METRICS_ENDPOINT_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "metrics/server_metrics.h"
#include "server/server.h"

namespace islet {

class MetricsEndpoint {
 public:
  struct Options {
    std::string address = "127.0.0.1";
    // OpenTelemetry's Prometheus exporters use 9464 too; 0 picks a free port.
    uint16_t port = 9464;
    // The endpoint's own server name in telemetry: not the served server's, so that
    // scrapes are not counted as its traffic.
    std::string name = "islet-metrics";
  };

  // Listens and serves `metrics` and, when `server` is not null, its status and
  // output gauges and readiness. Both must outlive the endpoint. InvalidArgument for
  // a bad address; listen errors as they come.
  static absl::StatusOr<std::unique_ptr<MetricsEndpoint>> Start(Options options,
                                                                const ServerMetrics& metrics,
                                                                Server* server);
  // Stops serving (Stop with a short drain).
  ~MetricsEndpoint();
  MetricsEndpoint(const MetricsEndpoint&) = delete;
  MetricsEndpoint& operator=(const MetricsEndpoint&) = delete;

  // /readyz answers 503 from now on, and the status gauge says "draining".
  void MarkDraining();
  // Where it listens (the port resolved).
  const SocketInfo& local() const { return local_; }

  // What the handler serves; shared with it (internal).
  struct State {
    const ServerMetrics* metrics = nullptr;
    Server* server = nullptr;
    std::atomic<bool> draining{false};
  };

 private:
  MetricsEndpoint() = default;

  std::shared_ptr<State> state_;
  std::unique_ptr<Server> http_;
  SocketInfo local_;
};

}  // namespace islet

#endif  // ISLET_METRICS_METRICS_ENDPOINT_H_
