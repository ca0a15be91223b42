// TelemetryLogger: a logger built on telemetry events. The library never logs inline;
// attach one of these (the harness does) to see what a server is doing. The level can
// change at any time from any thread.
//
//   islet::TelemetryLogger logger(islet::LogLevel::kInfo);   // attaches to stderr
//   logger.set_level(islet::LogLevel::kDebug);               // every event from now on
//
// Levels: error (a connection ended in error; recv/send/sendfile and accept errors),
// warning (emfile, spawn_error, econnaborted), info (listener and acceptor start/stop),
// debug (everything, including each connection's start, stop and traffic).
#ifndef ISLET_SERVER_TELEMETRY_LOGGER_H_
#define ISLET_SERVER_TELEMETRY_LOGGER_H_

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "server/telemetry.h"

namespace islet {

enum class LogLevel : uint8_t { kDebug, kInfo, kWarning, kError, kOff };

// "debug", "info", "warning" (or "warn"), "error", "off"; InvalidArgument otherwise.
absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view text);
absl::string_view LogLevelName(LogLevel level);

class TelemetryLogger {
 public:
  // Attaches to Telemetry and writes one line per event at `level` or above to `out`.
  explicit TelemetryLogger(LogLevel level, FILE* out = stderr);
  ~TelemetryLogger();
  TelemetryLogger(const TelemetryLogger&) = delete;
  TelemetryLogger& operator=(const TelemetryLogger&) = delete;

  // Also narrows what telemetry builds: events below the level cost nothing.
  void set_level(LogLevel level);
  LogLevel level() const { return level_.load(std::memory_order_relaxed); }

  // The level an event is logged at, and its line (without the timestamp and newline).
  static LogLevel LevelOf(const TelemetryEvent& event);
  static std::string Format(const TelemetryEvent& event);
  // The event types that can be logged at `level`.
  static TelemetryMask InterestAt(LogLevel level);

 private:
  void Write(const TelemetryEvent& event);

  std::atomic<LogLevel> level_;
  FILE* out_;
  absl::Mutex mu_;
  uint64_t attachment_;
};

}  // namespace islet

#endif  // ISLET_SERVER_TELEMETRY_LOGGER_H_
