// ServerMetrics: a telemetry sink that aggregates one server's events into counters,
// gauges and histograms, for an exposition such as Prometheus's (prometheus_text.h).
//
//   islet::ServerMetrics metrics("harness");   // ServerOptions::name of the server
//   ... the server runs ...
//   islet::MetricsSnapshot now = metrics.Snapshot();   // any thread, any time
//
// Cost: recording takes no lock and allocates nothing. Each worker has a shard of its
// own (a connection's events all come from its worker's loop), on cache lines of its
// own, updated with relaxed atomic additions; events with no worker (the acceptors')
// share one more shard. Snapshot adds the shards up. Workers past the 64th share shards
// (worker index mod 64), which keeps the totals exact and merges their live counts.
//
// Interest: connection start, stop, ready, async_recv, recv, send, sendfile, and the
// acceptor's four failures. The byte counters count application bytes (the plaintext
// over TLS) as the handler receives them and hands them to Send or Sendfile.
#ifndef ISLET_METRICS_SERVER_METRICS_H_
#define ISLET_METRICS_SERVER_METRICS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/telemetry.h"

namespace islet {

// How a connection ended: connection.stop's detail, with a failed handshake counted as
// an error (it is also counted by reason, below).
enum class ConnectionEnding : uint8_t { kClose, kError, kTimeout, kShutdown };
inline constexpr int kConnectionEndings = 4;
// "close", "error", "timeout", "shutdown".
absl::string_view ConnectionEndingName(ConnectionEnding ending);

// The acceptor's failures, by their event.
enum class AcceptErrorKind : uint8_t { kSpawnError, kEconnaborted, kAcceptError, kEmfile };
inline constexpr int kAcceptErrorKinds = 4;
// "spawn_error", "econnaborted", "accept_error", "emfile".
absl::string_view AcceptErrorKindName(AcceptErrorKind kind);

// Why a handshake failed, from its error's code: DeadlineExceeded is a timeout,
// OutOfRange the peer closing mid-handshake, Unauthenticated a client certificate
// refused, Aborted a TLS alert, bad bytes or a reset; anything else is other.
enum class HandshakeFailure : uint8_t { kTimeout, kPeerClosed, kCertificate, kProtocol, kOther };
inline constexpr int kHandshakeFailures = 5;
// "timeout", "peer_closed", "certificate", "protocol", "other".
absl::string_view HandshakeFailureName(HandshakeFailure reason);

// Upper bounds (seconds) of the histograms' buckets; +Inf follows.
// Connection lifetimes span a health check's milliseconds to a long poll's hours:
// roughly a factor of 3 to 5 apart from 10 ms, up to an hour.
inline constexpr std::array<double, 12> kConnectionDurationBuckets = {
    0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600};
// A TLS handshake costs about a millisecond of CPU on loopback and one or two round
// trips (10 to 300 ms) elsewhere; the last bound is the default handshake_timeout.
inline constexpr std::array<double, 12> kHandshakeDurationBuckets = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};

// A histogram as Prometheus has it: cumulative counts per upper bound.
struct HistogramSnapshot {
  std::vector<double> bounds;       // seconds, ascending, without +Inf
  std::vector<uint64_t> cumulative;  // one per bound: observations <= it
  uint64_t count = 0;                // all observations (the +Inf bucket)
  double sum = 0;                    // seconds
};

struct MetricsSnapshot {
  std::string server;
  uint64_t accepted = 0;  // connection.start
  std::array<uint64_t, kConnectionEndings> closed{};
  std::array<uint64_t, kAcceptErrorKinds> accept_errors{};
  std::array<uint64_t, kHandshakeFailures> handshake_failures{};
  uint64_t received_bytes = 0;
  uint64_t sent_bytes = 0;
  // Connections the output budget shed (connection.stop with ResourceExhausted).
  uint64_t output_sheds = 0;
  // Live connections (started, not yet stopped), in all and per worker index, for
  // every worker that has had a connection.
  int64_t live = 0;
  std::vector<int64_t> live_per_worker;
  // The listening address ("127.0.0.1:4000"), from the last listener.start seen.
  std::string listener;
  HistogramSnapshot connection_duration;
  HistogramSnapshot handshake_duration;
};

class ServerMetrics {
 public:
  // Attaches to Telemetry and counts the events of the servers named `server_name`
  // (ServerOptions::name) from now on.
  explicit ServerMetrics(std::string server_name);
  // Detaches: no event is being recorded once it returns.
  ~ServerMetrics();
  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;

  const std::string& server_name() const { return server_name_; }
  // The sum of the shards now. Thread-safe. Each counter is exact at some instant
  // during the call, not all at the same instant.
  MetricsSnapshot Snapshot() const;

  // The event types recorded.
  static TelemetryMask Interest();

 private:
  static constexpr int kWorkerShards = 64;

  template <size_t N>
  struct Histogram {
    std::atomic<uint64_t> buckets[N + 1] = {};  // the last: above every bound
    std::atomic<uint64_t> sum_nanos{0};
  };
  struct alignas(64) Shard {
    std::atomic<uint64_t> started{0};
    std::atomic<uint64_t> closed[kConnectionEndings] = {};
    std::atomic<uint64_t> accept_errors[kAcceptErrorKinds] = {};
    std::atomic<uint64_t> handshake_failures[kHandshakeFailures] = {};
    std::atomic<uint64_t> received_bytes{0};
    std::atomic<uint64_t> sent_bytes{0};
    std::atomic<uint64_t> output_sheds{0};
    Histogram<kConnectionDurationBuckets.size()> connection_duration;
    Histogram<kHandshakeDurationBuckets.size()> handshake_duration;
  };

  void Record(const TelemetryEvent& e);
  void RecordStop(const TelemetryEvent& e, Shard& shard);

  const std::string server_name_;
  // kWorkerShards for the workers, then the one for events without a worker.
  const std::unique_ptr<Shard[]> shards_;
  mutable absl::Mutex listener_mu_;
  std::string listener_ ABSL_GUARDED_BY(listener_mu_);
  uint64_t attachment_ = 0;
};

}  // namespace islet

#endif  // ISLET_METRICS_SERVER_METRICS_H_
