// The Prometheus text exposition format (version 0.0.4) of ServerMetrics snapshots,
// the server's own state (Server::Info) and the process's descriptors.
//
//   std::string body = islet::PrometheusText({{.metrics = metrics.Snapshot(),
//                                               .info = server->Info()}},
//                                             islet::ReadProcessDescriptors());
//
// Every family has its HELP and TYPE lines once, then a sample per server (label
// `server`, ServerOptions::name). Names follow Prometheus's conventions: an `islet_`
// prefix, base units (`_seconds`, `_bytes`), `_total` on counters; an enumeration is one
// gauge per value, 1 for the current one (`islet_server_status{status="running"} 1`).
//
//   islet_connections_accepted_total              connection.start
//   islet_connections_closed_total{ending}        close, error, timeout, shutdown
//   islet_accept_errors_total{kind}               spawn_error, econnaborted,
//                                                 accept_error, emfile
//   islet_handshake_failures_total{reason}        timeout, peer_closed, certificate,
//                                                 protocol, other
//   islet_received_bytes_total, islet_sent_bytes_total   application bytes
//   islet_overload_shed_connections_total         shed by the output budget
//   islet_active_connections{listener}            live connections
//   islet_worker_active_connections{worker}       live connections per worker
//   islet_connection_duration_seconds             histogram, at connection.stop
//   islet_tls_handshake_duration_seconds          histogram, at connection.ready
//   with a ServerInfo:
//   islet_server_status{status}                   running, suspended, draining, stopped
//   islet_queued_output_bytes, islet_output_budget_bytes
//   islet_overload_state{state}                   normal, scaling, saturated
//   islet_overload_pressure, islet_overload_timeout_scale   ratios
//   and once: process_open_fds, process_max_fds (Prometheus's standard names).
#ifndef ISLET_METRICS_PROMETHEUS_TEXT_H_
#define ISLET_METRICS_PROMETHEUS_TEXT_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "metrics/server_metrics.h"
#include "server/server.h"

namespace islet {

// What an HTTP response carrying PrometheusText should say it is.
inline constexpr absl::string_view kPrometheusContentType =
    "text/plain; version=0.0.4; charset=utf-8";

struct ServerScrape {
  MetricsSnapshot metrics;
  // Server::Info(), when the server itself is at hand: its status and output gauges.
  std::optional<ServerInfo> info;
  // Its owner is draining it (readiness failed, Stop under way or coming): reported as
  // the status "draining" whatever info.status says.
  bool draining = false;
};

// Descriptors open in this process and RLIMIT_NOFILE's soft limit; -1 when unknown.
struct ProcessDescriptors {
  int64_t open = -1;
  int64_t max = -1;
};
// Counts /proc/self/fd and reads the limit. Allocates: call it at scrape time.
ProcessDescriptors ReadProcessDescriptors();

// The exposition of `servers` (one sample set each) and `process` (when known).
std::string PrometheusText(absl::Span<const ServerScrape> servers,
                           const ProcessDescriptors& process);

// A label value escaped for the text format: backslash, double quote and newline.
std::string EscapeLabelValue(absl::string_view value);

}  // namespace islet

#endif  // ISLET_METRICS_PROMETHEUS_TEXT_H_
