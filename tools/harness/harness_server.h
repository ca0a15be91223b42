// The harness's server, built from a HarnessConfig (the flags, parsed). A library so
// tests and the benchmarks can start exactly what the harness binary starts.
#ifndef ISLET_TOOLS_HARNESS_HARNESS_SERVER_H_
#define ISLET_TOOLS_HARNESS_HARNESS_SERVER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "metrics/metrics_endpoint.h"
#include "metrics/server_metrics.h"
#include "server/server.h"
#include "server/telemetry_logger.h"
#include "tls/tls_transport.h"

namespace islet::harness {

struct HarnessConfig {
  std::string handler = "echo";
  std::string ip = "127.0.0.1";
  uint16_t port = 4000;
  std::string unix_socket;
  std::string transport = "tcp";
  std::string certfile;
  std::string keyfile;
  std::string cacertfile;
  std::string verify_peer = "none";
  std::vector<std::string> alpn;
  // The PROXY protocol in front of the transport: off, v1, v2 or any; the balancers'
  // networks (CIDR); and whether a header from them is optional rather than required.
  std::string proxy_protocol = "off";
  std::vector<std::string> proxy_trusted;
  bool proxy_optional = false;
  int num_acceptors = 1;
  int num_listen_sockets = 1;
  int num_workers = 0;
  EventLoopKind event_loop = EventLoopKind::kDefault;
  int num_connections = 16384;
  absl::Duration max_connections_retry_wait = absl::Seconds(1);
  int max_connections_retry_count = 5;
  absl::Duration read_timeout = absl::Seconds(60);
  absl::Duration handshake_timeout = absl::Seconds(5);
  absl::Duration shutdown_timeout = absl::Seconds(15);
  absl::Duration shutdown_grace = absl::ZeroDuration();
  int max_connections = -1;
  int descriptor_reserve = 32;
  int max_connections_per_peer = 0;
  int64_t max_pending_messages = 1024;
  int64_t output_budget = 0;
  absl::Duration linger_timeout = absl::Seconds(2);
  double overload_scale_from = 0.75;
  absl::Duration overload_timeout_floor = absl::Seconds(1);
  // The proxy's upstream, HOST:PORT.
  std::string upstream;
  // The proxy reaches its upstream over TLS, verified against upstream_cacertfile (empty:
  // the system store) and upstream_server_name (empty: the upstream's IP address).
  bool upstream_tls = false;
  std::string upstream_cacertfile;
  std::string upstream_server_name;
  // http_hello's HttpHelloOptions::head_timeout (other handlers have no request head).
  absl::Duration head_timeout = absl::Seconds(10);
  std::string log = "info";
  std::string log_format = "text";
  // Observability: the metrics endpoint (/metrics, /healthz, /readyz) on an address of
  // its own, off while metrics_port is negative (0 picks a free port).
  std::string metrics_ip = "127.0.0.1";
  int metrics_port = -1;
  // Listening sockets to serve instead of opening any (from systemd, or handed over by
  // a predecessor): they must be the ones the fields above ask for (CheckListenersMatch).
  std::vector<int> listen_fds;
};

class HarnessServer {
 public:
  // InvalidArgument for a bad handler, transport or option; the server's own errors
  // (a port in use, a missing certificate) as they come.
  static absl::StatusOr<std::unique_ptr<HarnessServer>> Start(const HarnessConfig& config);

  // "127.0.0.1:4000", "[::1]:4000" or the unix socket path.
  const std::string& listening() const { return listening_; }
  Server& server() { return *server_; }
  // Where the metrics endpoint listens ("127.0.0.1:9464"); empty when it is off.
  const std::string& metrics_listening() const { return metrics_listening_; }
  // /readyz fails from now on: called before Stop, so balancers stop sending first.
  void MarkDraining() {
    if (endpoint_ != nullptr) endpoint_->MarkDraining();
  }
  absl::Status Stop() { return server_->Stop(); }

  // Re-reads the TLS certificate, key and CA files (SIGHUP): new handshakes get the new
  // ones, live connections keep theirs; on an error the previous ones stay in force.
  // FailedPrecondition for a server without TLS.
  absl::Status ReloadCredentials();

 private:
  std::unique_ptr<TelemetryLogger> logger_;
  std::unique_ptr<ServerMetrics> metrics_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<MetricsEndpoint> endpoint_;  // destroyed first: it reads the two above
  std::shared_ptr<TlsTransport> tls_;  // the server's transport, when it is TLS
  std::string listening_;
  std::string metrics_listening_;
};

}  // namespace islet::harness

#endif  // ISLET_TOOLS_HARNESS_HARNESS_SERVER_H_
