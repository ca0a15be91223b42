#include "metrics/server_metrics.h"

#include <algorithm>
#include <utility>

namespace islet {
namespace {

constexpr auto kRelaxed = std::memory_order_relaxed;

void Add(std::atomic<uint64_t>& counter, uint64_t n) { counter.fetch_add(n, kRelaxed); }

// The bucket of `d` among `bounds` (seconds): the first bound it does not exceed, or
// bounds.size() above them all. Compared in nanoseconds, as the sum is kept.
template <size_t N>
size_t BucketOf(absl::Duration d, const std::array<double, N>& bounds) {
  const double seconds = absl::ToDoubleSeconds(d);
  size_t i = 0;
  while (i < N && seconds > bounds[i]) ++i;
  return i;
}

template <typename Histogram, size_t N>
void Observe(Histogram& h, absl::Duration d, const std::array<double, N>& bounds) {
  Add(h.buckets[BucketOf(d, bounds)], 1);
  Add(h.sum_nanos, static_cast<uint64_t>(std::max<int64_t>(absl::ToInt64Nanoseconds(d), 0)));
}

template <size_t N>
void MergeInto(HistogramSnapshot& out, const std::atomic<uint64_t> (&buckets)[N + 1],
               const std::atomic<uint64_t>& sum_nanos, const std::array<double, N>& bounds,
               std::vector<uint64_t>& per_bucket, uint64_t& sum) {
  if (out.bounds.empty()) out.bounds.assign(bounds.begin(), bounds.end());
  per_bucket.resize(N + 1);
  for (size_t i = 0; i <= N; ++i) per_bucket[i] += buckets[i].load(kRelaxed);
  sum += sum_nanos.load(kRelaxed);
}

// Makes the per-bucket counts cumulative. The count is their total, so that the +Inf
// bucket and _count agree even while observations land during the snapshot.
void Finish(HistogramSnapshot& out, const std::vector<uint64_t>& per_bucket, uint64_t sum_nanos) {
  uint64_t running = 0;
  out.cumulative.clear();
  for (size_t i = 0; i + 1 < per_bucket.size(); ++i) {
    running += per_bucket[i];
    out.cumulative.push_back(running);
  }
  out.count = running + (per_bucket.empty() ? 0 : per_bucket.back());
  out.sum = static_cast<double>(sum_nanos) / 1e9;
}

HandshakeFailure ReasonOf(const absl::Status* error) {
  if (error == nullptr) return HandshakeFailure::kOther;
  switch (error->code()) {
    case absl::StatusCode::kDeadlineExceeded: return HandshakeFailure::kTimeout;
    case absl::StatusCode::kOutOfRange: return HandshakeFailure::kPeerClosed;
    case absl::StatusCode::kUnauthenticated: return HandshakeFailure::kCertificate;
    case absl::StatusCode::kAborted: return HandshakeFailure::kProtocol;
    default: return HandshakeFailure::kOther;
  }
}

}  // namespace

absl::string_view ConnectionEndingName(ConnectionEnding ending) {
  switch (ending) {
    case ConnectionEnding::kClose: return "close";
    case ConnectionEnding::kError: return "error";
    case ConnectionEnding::kTimeout: return "timeout";
    case ConnectionEnding::kShutdown: return "shutdown";
  }
  return "unknown";
}

absl::string_view AcceptErrorKindName(AcceptErrorKind kind) {
  switch (kind) {
    case AcceptErrorKind::kSpawnError: return "spawn_error";
    case AcceptErrorKind::kEconnaborted: return "econnaborted";
    case AcceptErrorKind::kAcceptError: return "accept_error";
    case AcceptErrorKind::kEmfile: return "emfile";
  }
  return "unknown";
}

absl::string_view HandshakeFailureName(HandshakeFailure reason) {
  switch (reason) {
    case HandshakeFailure::kTimeout: return "timeout";
    case HandshakeFailure::kPeerClosed: return "peer_closed";
    case HandshakeFailure::kCertificate: return "certificate";
    case HandshakeFailure::kProtocol: return "protocol";
    case HandshakeFailure::kOther: return "other";
  }
  return "unknown";
}

TelemetryMask ServerMetrics::Interest() {
  TelemetryMask mask = 0;
  for (TelemetryEventType t :
       {TelemetryEventType::kListenerStart, TelemetryEventType::kAcceptorSpawnError,
        TelemetryEventType::kAcceptorEconnaborted, TelemetryEventType::kAcceptorAcceptError,
        TelemetryEventType::kAcceptorEmfile, TelemetryEventType::kConnectionStart,
        TelemetryEventType::kConnectionStop, TelemetryEventType::kConnectionReady,
        TelemetryEventType::kConnectionAsyncRecv, TelemetryEventType::kConnectionRecv,
        TelemetryEventType::kConnectionSend, TelemetryEventType::kConnectionSendfile}) {
    mask |= TelemetryBit(t);
  }
  return mask;
}

ServerMetrics::ServerMetrics(std::string server_name)
    : server_name_(std::move(server_name)),
      shards_(std::make_unique<Shard[]>(kWorkerShards + 1)) {
  attachment_ = Telemetry::Attach([this](const TelemetryEvent& e) { Record(e); }, Interest());
}

ServerMetrics::~ServerMetrics() { Telemetry::Detach(attachment_); }

void ServerMetrics::Record(const TelemetryEvent& e) {
  if (e.server != server_name_) return;
  Shard& shard = shards_[e.worker >= 0 ? e.worker % kWorkerShards : kWorkerShards];
  switch (e.type) {
    case TelemetryEventType::kConnectionAsyncRecv:
    case TelemetryEventType::kConnectionRecv:
      Add(shard.received_bytes, e.bytes);
      return;
    case TelemetryEventType::kConnectionSend:
    case TelemetryEventType::kConnectionSendfile:
      Add(shard.sent_bytes, e.bytes);
      return;
    case TelemetryEventType::kConnectionStart:
      Add(shard.started, 1);
      return;
    case TelemetryEventType::kConnectionStop:
      RecordStop(e, shard);
      return;
    case TelemetryEventType::kConnectionReady:
      if (e.duration > absl::ZeroDuration()) {
        Observe(shard.handshake_duration, e.duration, kHandshakeDurationBuckets);
      }
      return;
    case TelemetryEventType::kAcceptorSpawnError:
      Add(shard.accept_errors[static_cast<int>(AcceptErrorKind::kSpawnError)], 1);
      return;
    case TelemetryEventType::kAcceptorEconnaborted:
      Add(shard.accept_errors[static_cast<int>(AcceptErrorKind::kEconnaborted)], 1);
      return;
    case TelemetryEventType::kAcceptorAcceptError:
      Add(shard.accept_errors[static_cast<int>(AcceptErrorKind::kAcceptError)], 1);
      return;
    case TelemetryEventType::kAcceptorEmfile:
      Add(shard.accept_errors[static_cast<int>(AcceptErrorKind::kEmfile)], 1);
      return;
    case TelemetryEventType::kListenerStart:
      if (e.local != nullptr) {
        // Once per Start or Resume, not per connection: a lock and a string are fine.
        absl::MutexLock lock(&listener_mu_);
        listener_ = e.local->family == AddressFamily::kUnix ? e.local->address
                                                            : e.local->ToString();
      }
      return;
    default:
      return;
  }
}

void ServerMetrics::RecordStop(const TelemetryEvent& e, Shard& shard) {
  ConnectionEnding ending = ConnectionEnding::kError;
  if (e.detail == "close") {
    ending = ConnectionEnding::kClose;
  } else if (e.detail == "timeout") {
    ending = ConnectionEnding::kTimeout;
  } else if (e.detail == "shutdown") {
    ending = ConnectionEnding::kShutdown;
  } else if (e.detail == "handshake") {
    Add(shard.handshake_failures[static_cast<int>(ReasonOf(e.error))], 1);
  }
  if (e.error != nullptr && e.error->code() == absl::StatusCode::kResourceExhausted) {
    Add(shard.output_sheds, 1);
  }
  Observe(shard.connection_duration, e.duration, kConnectionDurationBuckets);
  // Released, and after the start on this worker: a snapshot that sees the stop (with
  // acquire) sees the start too.
  shard.closed[static_cast<int>(ending)].fetch_add(1, std::memory_order_release);
}

MetricsSnapshot ServerMetrics::Snapshot() const {
  MetricsSnapshot s;
  s.server = server_name_;
  {
    absl::MutexLock lock(&listener_mu_);
    s.listener = listener_;
  }
  std::vector<uint64_t> duration_buckets, handshake_buckets;
  uint64_t duration_sum = 0, handshake_sum = 0;
  for (int i = 0; i <= kWorkerShards; ++i) {
    const Shard& shard = shards_[i];
    // The stops before the starts: a connection counted as stopped is surely counted
    // as started too, so live is never below the truth for long, nor negative.
    uint64_t closed = 0;
    for (int k = 0; k < kConnectionEndings; ++k) {
      const uint64_t n = shard.closed[k].load(std::memory_order_acquire);
      s.closed[k] += n;
      closed += n;
    }
    const uint64_t started = shard.started.load(std::memory_order_acquire);
    s.accepted += started;
    const int64_t live = started >= closed ? static_cast<int64_t>(started - closed) : 0;
    s.live += live;
    if (i < kWorkerShards && started > 0) {
      if (s.live_per_worker.size() <= static_cast<size_t>(i)) s.live_per_worker.resize(i + 1);
      s.live_per_worker[i] = live;
    }
    for (int k = 0; k < kAcceptErrorKinds; ++k) s.accept_errors[k] += shard.accept_errors[k].load(kRelaxed);
    for (int k = 0; k < kHandshakeFailures; ++k) {
      s.handshake_failures[k] += shard.handshake_failures[k].load(kRelaxed);
    }
    s.received_bytes += shard.received_bytes.load(kRelaxed);
    s.sent_bytes += shard.sent_bytes.load(kRelaxed);
    s.output_sheds += shard.output_sheds.load(kRelaxed);
    MergeInto(s.connection_duration, shard.connection_duration.buckets,
              shard.connection_duration.sum_nanos, kConnectionDurationBuckets, duration_buckets,
              duration_sum);
    MergeInto(s.handshake_duration, shard.handshake_duration.buckets,
              shard.handshake_duration.sum_nanos, kHandshakeDurationBuckets, handshake_buckets,
              handshake_sum);
  }
  Finish(s.connection_duration, duration_buckets, duration_sum);
  Finish(s.handshake_duration, handshake_buckets, handshake_sum);
  return s;
}

}  // namespace islet
