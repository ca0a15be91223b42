// TelemetryLogger: a logger built on telemetry events. The library never logs inline;
// attach one of these (the harness does) to see what a server is doing. The level can
// change at any time from any thread.
//
//   islet::TelemetryLogger logger(islet::LogLevel::kInfo);   // attaches to stderr
//   logger.set_level(islet::LogLevel::kDebug);               // every event from now on
//
// Levels say whose doing an event is: error is kept for the server's own faults, so
// that a hostile or broken client cannot fill the error log. A peer's doing is an error
// whose code is Aborted (reset, broken pipe, TLS garbage), OutOfRange (closed early, as
// in mid-handshake), DeadlineExceeded (idle, handshake or send timeout),
// Unauthenticated (a client certificate refused), or one marked MarkPeerCaused
// (transport/errors.h): the ResourceExhausted of a peer that reads nothing, over
// send_queue_limit or its share of the output budget. Any other code is the server's,
// ResourceExhausted unmarked (out of memory or descriptors) included.
//
//   error    acceptor.accept_error (a failing listener included), acceptor.emfile;
//            connection.stop, recv_error, send_error, sendfile_error with an error of
//            the server's (a handler's Error, an internal failure, a missing file)
//   warning  acceptor.spawn_error (num_connections turned a client away)
//   info     listener and acceptor start and stop; acceptor.econnaborted;
//            connection.stop with an error of the peer's (one line per reset, timeout,
//            failed handshake or peer that stopped reading)
//   debug    everything else: connection.start, ready, stop without an error, traffic,
//            socket_shutdown, and recv/send/sendfile errors of the peer's (the stop
//            that follows says it once, at info)
// A handler's Error is judged by its code like any other: return Aborted (say) for a
// client that broke the protocol, Internal for a bug of your own.
//
// Formats: text (the default) is one line per event, "<time> <level> <event> key=value
// ...". JSON is one object per line, for log shippers, with these stable names (a
// field is left out where the event has nothing for it):
//   time (RFC 3339, UTC, milliseconds), level, event, server, span, parent_span,
//   acceptor, connection, worker, local, remote, detail, bytes, connections,
//   duration_seconds (a number), recv_bytes, send_bytes, error (the message),
//   error_code ("DEADLINE_EXCEEDED", ...), and for server.overload: state, was,
//   resource, pressure, timeout_scale; a rate limit's summary: suppressed (the count).
//   {"time":"2026-01-02T03:04:05.678Z","level":"info","event":"connection.stop",
//    "server":"harness","span":7,"parent_span":2,"acceptor":0,"connection":3,
//    "worker":1,"remote":"127.0.0.1:50000","detail":"timeout","duration_seconds":60.001,
//    "recv_bytes":5,"send_bytes":5,"error":"recv: no data within the read timeout",
//    "error_code":"DEADLINE_EXCEEDED"}
// Strings are escaped as JSON requires; bytes that are not UTF-8 become U+FFFD.
//
// Rate limit: at most `lines_per_second` lines of one kind (event type and level) in
// any second; the rest are counted, and when the second is over one line says
// "<level> <event> ... and K more like it in the last second". It is written before the
// next line of any kind, or when the logger is destroyed.
#ifndef ISLET_SERVER_TELEMETRY_LOGGER_H_
#define ISLET_SERVER_TELEMETRY_LOGGER_H_

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/telemetry.h"

namespace islet {

enum class LogLevel : uint8_t { kDebug, kInfo, kWarning, kError, kOff };
enum class LogFormat : uint8_t { kText, kJson };

// "debug", "info", "warning" (or "warn"), "error", "off"; InvalidArgument otherwise.
absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view text);
absl::string_view LogLevelName(LogLevel level);
// "text" or "json"; InvalidArgument otherwise.
absl::StatusOr<LogFormat> ParseLogFormat(absl::string_view text);

class TelemetryLogger {
 public:
  struct Options {
    LogLevel level = LogLevel::kInfo;
    LogFormat format = LogFormat::kText;
    FILE* out = stderr;
    // Per kind and second; 0 writes every line.
    int lines_per_second = 10;
    // The time of the lines and of the rate limit (absl::Now when empty); tests pass a
    // fake. Called on the emitting threads.
    std::function<absl::Time()> clock;
  };

  // Attaches to Telemetry and writes one line per event at the level or above.
  explicit TelemetryLogger(Options options);
  explicit TelemetryLogger(LogLevel level, FILE* out = stderr);
  // Detaches (waiting for lines being written on other threads), then writes the
  // count of lines the rate limit left out.
  ~TelemetryLogger();
  TelemetryLogger(const TelemetryLogger&) = delete;
  TelemetryLogger& operator=(const TelemetryLogger&) = delete;

  // Also narrows what telemetry builds: events below the level cost nothing.
  void set_level(LogLevel level);
  LogLevel level() const { return level_.load(std::memory_order_relaxed); }

  // The level an event is logged at, and its line (without the timestamp and newline).
  static LogLevel LevelOf(const TelemetryEvent& event);
  static std::string Format(const TelemetryEvent& event);
  // The JSON line (without the newline) of an event logged at `level` at `when`.
  static std::string FormatJson(const TelemetryEvent& event, absl::Time when, LogLevel level);
  // The event types that can be logged at `level`.
  static TelemetryMask InterestAt(LogLevel level);

 private:
  static constexpr int kTypes = static_cast<int>(TelemetryEventType::kServerOverload) + 1;
  static constexpr int kLevels = static_cast<int>(LogLevel::kOff);

  // One kind's current second: the lines written in it and those left out.
  struct Window {
    absl::Time start = absl::InfinitePast();
    int written = 0;
    int64_t left_out = 0;
  };

  void Write(const TelemetryEvent& event);
  void WriteLine(absl::Time when, LogLevel level, absl::string_view text)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteRaw(std::string line) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes the summary of every window with lines left out that has ended by `now`
  // (every one, when `all`), and works out when the next is due.
  void WriteSummaries(absl::Time now, bool all) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::atomic<LogLevel> level_;
  const LogFormat format_;
  FILE* const out_;
  const int lines_per_second_;
  const std::function<absl::Time()> clock_;
  absl::Mutex mu_;
  Window windows_[kTypes][kLevels] ABSL_GUARDED_BY(mu_);
  absl::Time summaries_due_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  uint64_t attachment_;
};

}  // namespace islet

#endif  // ISLET_SERVER_TELEMETRY_LOGGER_H_
