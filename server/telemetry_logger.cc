#include "server/telemetry_logger.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace islet {

absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view text) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "debug") return LogLevel::kDebug;
  if (lower == "info") return LogLevel::kInfo;
  if (lower == "warning" || lower == "warn") return LogLevel::kWarning;
  if (lower == "error") return LogLevel::kError;
  if (lower == "off" || lower == "none") return LogLevel::kOff;
  return absl::InvalidArgumentError(
      absl::StrCat("log level: \"", text, "\" is not one of debug, info, warning, error, off"));
}

absl::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kError: return "error";
    case LogLevel::kOff: return "off";
  }
  return "unknown";
}

TelemetryLogger::TelemetryLogger(LogLevel level, FILE* out) : level_(level), out_(out) {
  attachment_ =
      Telemetry::Attach([this](const TelemetryEvent& e) { Write(e); }, InterestAt(level));
}

void TelemetryLogger::set_level(LogLevel level) {
  level_.store(level, std::memory_order_relaxed);
  Telemetry::SetInterest(attachment_, InterestAt(level));
}

TelemetryMask TelemetryLogger::InterestAt(LogLevel level) {
  // connection.stop can be an error, so it stays wanted at every level but off.
  TelemetryMask mask = 0;
  for (int t = 0; t <= static_cast<int>(TelemetryEventType::kConnectionSocketShutdown); ++t) {
    const auto type = static_cast<TelemetryEventType>(t);
    TelemetryEvent probe{type};
    const absl::Status error = absl::UnknownError("probe");
    if (type == TelemetryEventType::kConnectionStop) probe.error = &error;
    if (level != LogLevel::kOff && LevelOf(probe) >= level) mask |= TelemetryBit(type);
  }
  return mask;
}

TelemetryLogger::~TelemetryLogger() { Telemetry::Detach(attachment_); }

LogLevel TelemetryLogger::LevelOf(const TelemetryEvent& e) {
  switch (e.type) {
    case TelemetryEventType::kListenerStart:
    case TelemetryEventType::kListenerStop:
    case TelemetryEventType::kAcceptorStart:
    case TelemetryEventType::kAcceptorStop:
      return LogLevel::kInfo;
    case TelemetryEventType::kAcceptorEmfile:
    case TelemetryEventType::kAcceptorSpawnError:
    case TelemetryEventType::kAcceptorEconnaborted:
      return LogLevel::kWarning;
    case TelemetryEventType::kAcceptorAcceptError:
    case TelemetryEventType::kConnectionRecvError:
    case TelemetryEventType::kConnectionSendError:
    case TelemetryEventType::kConnectionSendfileError:
      return LogLevel::kError;
    case TelemetryEventType::kConnectionStop:
      return e.error != nullptr ? LogLevel::kError : LogLevel::kDebug;
    default:
      return LogLevel::kDebug;
  }
}

std::string TelemetryLogger::Format(const TelemetryEvent& e) {
  std::string line = absl::StrCat(TelemetryEventName(e.type), " server=", e.server,
                                  " span=", e.span_id);
  if (e.acceptor >= 0) absl::StrAppend(&line, " acceptor=", e.acceptor);
  if (e.connection_id != 0) absl::StrAppend(&line, " connection=", e.connection_id);
  if (e.local != nullptr) absl::StrAppend(&line, " local=", e.local->ToString());
  if (e.remote != nullptr) absl::StrAppend(&line, " remote=", e.remote->ToString());
  if (!e.detail.empty()) absl::StrAppend(&line, " detail=", e.detail);
  if (e.bytes != 0) absl::StrAppend(&line, " bytes=", e.bytes);
  if (e.type == TelemetryEventType::kAcceptorStop) {
    absl::StrAppend(&line, " connections=", e.connections);
  }
  if (e.duration != absl::ZeroDuration()) {
    absl::StrAppend(&line, " duration=", absl::FormatDuration(e.duration));
  }
  if (e.stats != nullptr) {
    absl::StrAppend(&line, " recv_bytes=", e.stats->bytes_received,
                    " send_bytes=", e.stats->bytes_sent);
  }
  if (e.error != nullptr) absl::StrAppend(&line, " error=\"", e.error->ToString(), "\"");
  return line;
}

void TelemetryLogger::Write(const TelemetryEvent& e) {
  const LogLevel at = LevelOf(e);
  if (at < level()) return;
  const std::string line =
      absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()),
                   " ", LogLevelName(at), " ", Format(e), "\n");
  absl::MutexLock lock(&mu_);
  std::fwrite(line.data(), 1, line.size(), out_);
  std::fflush(out_);
}

}  // namespace islet
