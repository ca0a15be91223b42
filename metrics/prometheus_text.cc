#include "metrics/prometheus_text.h"

#include <dirent.h>
#include <sys/resource.h>

#include <cmath>
#include <cstdlib>
#include <functional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace islet {
namespace {

// A sample value: integers as such, others in the fewest digits that read back the
// same (0.05, not 0.050000000000000003).
std::string Value(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return absl::StrFormat("%.0f", v);
  for (int digits = 15; digits < 17; ++digits) {
    std::string text = absl::StrFormat("%.*g", digits, v);
    if (std::strtod(text.c_str(), nullptr) == v) return text;
  }
  return absl::StrFormat("%.17g", v);
}

// Writes one family: HELP and TYPE, then whatever `samples` appends.
class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}

  void Family(absl::string_view name, absl::string_view type, absl::string_view help,
              const std::function<void()>& samples) {
    absl::StrAppend(&out_, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
    samples();
  }

  // `labels` is `key="value"` pairs, already escaped, comma-separated.
  void Sample(absl::string_view name, absl::string_view labels, double value) {
    absl::StrAppend(&out_, name);
    if (!labels.empty()) absl::StrAppend(&out_, "{", labels, "}");
    absl::StrAppend(&out_, " ", Value(value), "\n");
  }

 private:
  std::string& out_;
};

std::string ServerLabel(const ServerScrape& s) {
  return absl::StrCat("server=\"", EscapeLabelValue(s.metrics.server), "\"");
}

std::string With(const std::string& server, absl::string_view key, absl::string_view value) {
  return absl::StrCat(server, ",", key, "=\"", EscapeLabelValue(value), "\"");
}

void Histogram(Writer& w, absl::string_view name, const std::string& labels,
               const HistogramSnapshot& h) {
  const std::string bucket = absl::StrCat(name, "_bucket");
  for (size_t i = 0; i < h.bounds.size() && i < h.cumulative.size(); ++i) {
    w.Sample(bucket, With(labels, "le", Value(h.bounds[i])), static_cast<double>(h.cumulative[i]));
  }
  w.Sample(bucket, With(labels, "le", "+Inf"), static_cast<double>(h.count));
  w.Sample(absl::StrCat(name, "_sum"), labels, h.sum);
  w.Sample(absl::StrCat(name, "_count"), labels, static_cast<double>(h.count));
}

absl::string_view StatusName(const ServerScrape& s) {
  if (s.draining) return "draining";
  switch (s.info->status) {
    case ServerStatus::kRunning: return "running";
    case ServerStatus::kSuspended: return "suspended";
    case ServerStatus::kStopped: return "stopped";
  }
  return "stopped";
}

}  // namespace

std::string EscapeLabelValue(absl::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

ProcessDescriptors ReadProcessDescriptors() {
  ProcessDescriptors p;
  if (DIR* dir = ::opendir("/proc/self/fd"); dir != nullptr) {
    int64_t n = 0;
    while (const dirent* entry = ::readdir(dir)) {
      if (entry->d_name[0] != '.') ++n;
    }
    ::closedir(dir);
    p.open = n - 1;  // less the directory's own descriptor
  }
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
    p.max = static_cast<int64_t>(limit.rlim_cur);
  }
  return p;
}

std::string PrometheusText(absl::Span<const ServerScrape> servers,
                           const ProcessDescriptors& process) {
  std::string out;
  Writer w(out);
  auto each = [&](const std::function<void(const ServerScrape&, const std::string&)>& f) {
    return [&servers, f] {
      for (const ServerScrape& s : servers) f(s, ServerLabel(s));
    };
  };
  auto counter = [](uint64_t n) { return static_cast<double>(n); };

  w.Family("islet_connections_accepted_total", "counter", "Connections accepted.",
           each([&](const ServerScrape& s, const std::string& l) {
             w.Sample("islet_connections_accepted_total", l, counter(s.metrics.accepted));
           }));
  w.Family("islet_connections_closed_total", "counter",
           "Connections closed, by how they ended (a failed handshake is an error).",
           each([&](const ServerScrape& s, const std::string& l) {
             for (int k = 0; k < kConnectionEndings; ++k) {
               w.Sample("islet_connections_closed_total",
                        With(l, "ending", ConnectionEndingName(static_cast<ConnectionEnding>(k))),
                        counter(s.metrics.closed[k]));
             }
           }));
  w.Family("islet_accept_errors_total", "counter",
           "Accept failures and connections the acceptor closed at once, by kind.",
           each([&](const ServerScrape& s, const std::string& l) {
             for (int k = 0; k < kAcceptErrorKinds; ++k) {
               w.Sample("islet_accept_errors_total",
                        With(l, "kind", AcceptErrorKindName(static_cast<AcceptErrorKind>(k))),
                        counter(s.metrics.accept_errors[k]));
             }
           }));
  w.Family("islet_handshake_failures_total", "counter", "Failed handshakes, by reason.",
           each([&](const ServerScrape& s, const std::string& l) {
             for (int k = 0; k < kHandshakeFailures; ++k) {
               w.Sample("islet_handshake_failures_total",
                        With(l, "reason", HandshakeFailureName(static_cast<HandshakeFailure>(k))),
                        counter(s.metrics.handshake_failures[k]));
             }
           }));
  w.Family("islet_received_bytes_total", "counter",
           "Application bytes received (plaintext over TLS).",
           each([&](const ServerScrape& s, const std::string& l) {
             w.Sample("islet_received_bytes_total", l, counter(s.metrics.received_bytes));
           }));
  w.Family("islet_sent_bytes_total", "counter",
           "Application bytes handed to Send and Sendfile (plaintext over TLS).",
           each([&](const ServerScrape& s, const std::string& l) {
             w.Sample("islet_sent_bytes_total", l, counter(s.metrics.sent_bytes));
           }));
  w.Family("islet_overload_shed_connections_total", "counter",
           "Connections shed because the server's output budget was spent.",
           each([&](const ServerScrape& s, const std::string& l) {
             w.Sample("islet_overload_shed_connections_total", l,
                      counter(s.metrics.output_sheds));
           }));
  w.Family("islet_active_connections", "gauge", "Live connections, by listening address.",
           each([&](const ServerScrape& s, const std::string& l) {
             std::string listener = s.metrics.listener;
             if (s.info.has_value() && s.info->local.has_value()) {
               listener = s.info->local->family == AddressFamily::kUnix
                              ? s.info->local->address
                              : s.info->local->ToString();
             }
             w.Sample("islet_active_connections", With(l, "listener", listener),
                      static_cast<double>(s.metrics.live));
           }));
  w.Family("islet_worker_active_connections", "gauge",
           "Live connections per worker (each worker that has had one).",
           each([&](const ServerScrape& s, const std::string& l) {
             for (size_t i = 0; i < s.metrics.live_per_worker.size(); ++i) {
               w.Sample("islet_worker_active_connections", With(l, "worker", absl::StrCat(i)),
                        static_cast<double>(s.metrics.live_per_worker[i]));
             }
           }));
  w.Family("islet_connection_duration_seconds", "histogram",
           "How long connections lived, observed when they close.",
           each([&](const ServerScrape& s, const std::string& l) {
             Histogram(w, "islet_connection_duration_seconds", l, s.metrics.connection_duration);
           }));
  w.Family("islet_tls_handshake_duration_seconds", "histogram",
           "How long completed TLS handshakes took.",
           each([&](const ServerScrape& s, const std::string& l) {
             Histogram(w, "islet_tls_handshake_duration_seconds", l,
                       s.metrics.handshake_duration);
           }));

  bool any_info = false;
  for (const ServerScrape& s : servers) any_info |= s.info.has_value();
  if (any_info) {
    auto with_info = [&](const std::function<void(const ServerScrape&, const std::string&)>& f) {
      return each([f](const ServerScrape& s, const std::string& l) {
        if (s.info.has_value()) f(s, l);
      });
    };
    w.Family("islet_server_status", "gauge",
             "1 for the server's status: running, suspended, draining or stopped.",
             with_info([&](const ServerScrape& s, const std::string& l) {
               const absl::string_view now = StatusName(s);
               for (absl::string_view status : {"running", "suspended", "draining", "stopped"}) {
                 w.Sample("islet_server_status", With(l, "status", status), status == now ? 1 : 0);
               }
             }));
    w.Family("islet_queued_output_bytes", "gauge",
             "Output queued for peers over every connection.",
             with_info([&](const ServerScrape& s, const std::string& l) {
               w.Sample("islet_queued_output_bytes", l, counter(s.info->queued_output_bytes));
             }));
    w.Family("islet_output_budget_bytes", "gauge", "The output budget queued output is held to.",
             with_info([&](const ServerScrape& s, const std::string& l) {
               w.Sample("islet_output_budget_bytes", l, counter(s.info->output_budget));
             }));
    w.Family("islet_overload_state", "gauge",
             "1 for the overload state: normal, scaling (timeouts shrink) or saturated.",
             with_info([&](const ServerScrape& s, const std::string& l) {
               for (OverloadState state :
                    {OverloadState::kNormal, OverloadState::kScaling, OverloadState::kSaturated}) {
                 w.Sample("islet_overload_state", With(l, "state", OverloadStateName(state)),
                          s.info->overload.state == state ? 1 : 0);
               }
             }));
    w.Family("islet_overload_pressure", "gauge",
             "Use of the resource nearest its cap over that cap (1 at the cap).",
             with_info([&](const ServerScrape& s, const std::string& l) {
               w.Sample("islet_overload_pressure", l, s.info->overload.pressure);
             }));
    w.Family("islet_overload_timeout_scale", "gauge",
             "How much of each shrinkable timeout above its floor is kept (1: all).",
             with_info([&](const ServerScrape& s, const std::string& l) {
               w.Sample("islet_overload_timeout_scale", l, s.info->overload.timeout_scale);
             }));
  }
  if (process.open >= 0) {
    w.Family("process_open_fds", "gauge", "Number of open file descriptors.",
             [&] { w.Sample("process_open_fds", "", static_cast<double>(process.open)); });
  }
  if (process.max >= 0) {
    w.Family("process_max_fds", "gauge", "Maximum number of open file descriptors.",
             [&] { w.Sample("process_max_fds", "", static_cast<double>(process.max)); });
  }
  return out;
}

}  // namespace islet
