#include "server/telemetry_logger.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "transport/errors.h"

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

absl::StatusOr<LogFormat> ParseLogFormat(absl::string_view text) {
  if (text == "text") return LogFormat::kText;
  if (text == "json") return LogFormat::kJson;
  return absl::InvalidArgumentError(
      absl::StrCat("log format: \"", text, "\" is not one of text, json"));
}

namespace {

// `text` as a JSON string, quotes included. Bytes that do not form UTF-8 become U+FFFD.
std::string JsonString(absl::string_view text) {
  std::string out = "\"";
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
      ++i;
    } else if (c < 0x20 || c == 0x7f) {
      absl::StrAppend(&out, "\\u00", absl::Hex(c, absl::kZeroPad2));
      ++i;
    } else if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
    } else {
      // A well-formed sequence is copied as is (overlong forms and surrogates are
      // accepted: a shipper's parser copes, and nothing here needs to judge them).
      const size_t length = c >= 0xf0 && c < 0xf5 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
      bool valid = length != 0 && c < 0xf5 && i + length <= text.size();
      for (size_t k = 1; valid && k < length; ++k) {
        valid = (static_cast<unsigned char>(text[i + k]) & 0xc0) == 0x80;
      }
      if (valid) {
        out.append(text.data() + i, length);
        i += length;
      } else {
        out += "\\ufffd";
        ++i;
      }
    }
  }
  out += '"';
  return out;
}

std::string TimeText(absl::Time when) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", when, absl::UTCTimeZone());
}

// The errors a peer causes; see the header.
bool IsPeersDoing(const absl::Status* error) {
  if (error == nullptr) return true;
  // A code that may be either's (ResourceExhausted), marked where the peer caused it.
  if (IsMarkedPeerCaused(*error)) return true;
  switch (error->code()) {
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kUnauthenticated:
      return true;
    default:
      return false;
  }
}

constexpr absl::Duration kSecond = absl::Seconds(1);

}  // namespace

TelemetryLogger::TelemetryLogger(Options options)
    : level_(options.level),
      format_(options.format),
      out_(options.out),
      lines_per_second_(options.lines_per_second),
      clock_(options.clock ? std::move(options.clock) : [] { return absl::Now(); }) {
  attachment_ = Telemetry::Attach([this](const TelemetryEvent& e) { Write(e); },
                                  InterestAt(options.level));
}

TelemetryLogger::TelemetryLogger(LogLevel level, FILE* out)
    : TelemetryLogger(Options{.level = level, .out = out}) {}

TelemetryLogger::~TelemetryLogger() {
  Telemetry::Detach(attachment_);
  const absl::Time now = clock_();
  absl::MutexLock lock(&mu_);
  WriteSummaries(now, /*all=*/true);
}

void TelemetryLogger::set_level(LogLevel level) {
  level_.store(level, std::memory_order_relaxed);
  Telemetry::SetInterest(attachment_, InterestAt(level));
}

TelemetryMask TelemetryLogger::InterestAt(LogLevel level) {
  // Probed with an error of the server's, the most severe any event can be.
  const absl::Status error = absl::InternalError("probe");
  TelemetryMask mask = 0;
  for (int t = 0; t < kTypes; ++t) {
    TelemetryEvent probe{static_cast<TelemetryEventType>(t)};
    probe.error = &error;
    if (level != LogLevel::kOff && LevelOf(probe) >= level) mask |= TelemetryBit(probe.type);
  }
  return mask;
}

LogLevel TelemetryLogger::LevelOf(const TelemetryEvent& e) {
  switch (e.type) {
    case TelemetryEventType::kListenerStart:
    case TelemetryEventType::kListenerStop:
    case TelemetryEventType::kAcceptorStart:
    case TelemetryEventType::kAcceptorStop:
    case TelemetryEventType::kAcceptorEconnaborted:
      return LogLevel::kInfo;
    case TelemetryEventType::kAcceptorSpawnError:
      return LogLevel::kWarning;
    case TelemetryEventType::kAcceptorEmfile:
    case TelemetryEventType::kAcceptorAcceptError:
      return LogLevel::kError;
    case TelemetryEventType::kConnectionRecvError:
    case TelemetryEventType::kConnectionSendError:
    case TelemetryEventType::kConnectionSendfileError:
      return IsPeersDoing(e.error) ? LogLevel::kDebug : LogLevel::kError;
    case TelemetryEventType::kConnectionStop:
      if (e.error == nullptr) return LogLevel::kDebug;
      return IsPeersDoing(e.error) ? LogLevel::kInfo : LogLevel::kError;
    case TelemetryEventType::kServerOverload:
      // At a cap new clients wait or are refused: worth a warning. Entering or leaving
      // the scaling band is the server working as configured.
      return e.overload == nullptr || e.overload->now.state == OverloadState::kSaturated
                 ? LogLevel::kWarning
                 : LogLevel::kInfo;
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
  if (e.overload != nullptr) {
    const OverloadReading& now = e.overload->now;
    absl::StrAppend(&line, " state=", OverloadStateName(now.state),
                    " was=", OverloadStateName(e.overload->before),
                    " resource=", OverloadResourceName(now.resource),
                    " pressure=", absl::StrFormat("%.2f", now.pressure),
                    " timeout_scale=", absl::StrFormat("%.2f", now.timeout_scale));
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

std::string TelemetryLogger::FormatJson(const TelemetryEvent& e, absl::Time when, LogLevel level) {
  std::string line = absl::StrCat("{\"time\":\"", TimeText(when), "\",\"level\":\"",
                                  LogLevelName(level), "\",\"event\":\"",
                                  TelemetryEventName(e.type), "\",\"server\":",
                                  JsonString(e.server), ",\"span\":", e.span_id);
  if (e.parent_span_id != 0) absl::StrAppend(&line, ",\"parent_span\":", e.parent_span_id);
  if (e.acceptor >= 0) absl::StrAppend(&line, ",\"acceptor\":", e.acceptor);
  if (e.connection_id != 0) absl::StrAppend(&line, ",\"connection\":", e.connection_id);
  if (e.worker >= 0) absl::StrAppend(&line, ",\"worker\":", e.worker);
  if (e.local != nullptr) absl::StrAppend(&line, ",\"local\":", JsonString(e.local->ToString()));
  if (e.remote != nullptr) {
    absl::StrAppend(&line, ",\"remote\":", JsonString(e.remote->ToString()));
  }
  if (!e.detail.empty()) absl::StrAppend(&line, ",\"detail\":", JsonString(e.detail));
  if (e.bytes != 0) absl::StrAppend(&line, ",\"bytes\":", e.bytes);
  if (e.type == TelemetryEventType::kAcceptorStop) {
    absl::StrAppend(&line, ",\"connections\":", e.connections);
  }
  if (e.overload != nullptr) {
    const OverloadReading& now = e.overload->now;
    absl::StrAppend(&line, ",\"state\":\"", OverloadStateName(now.state), "\",\"was\":\"",
                    OverloadStateName(e.overload->before), "\",\"resource\":\"",
                    OverloadResourceName(now.resource), "\",\"pressure\":",
                    absl::StrFormat("%.4g", now.pressure), ",\"timeout_scale\":",
                    absl::StrFormat("%.4g", now.timeout_scale));
  }
  if (e.duration != absl::ZeroDuration()) {
    absl::StrAppend(&line, ",\"duration_seconds\":",
                    absl::StrFormat("%.9g", absl::ToDoubleSeconds(e.duration)));
  }
  if (e.stats != nullptr) {
    absl::StrAppend(&line, ",\"recv_bytes\":", e.stats->bytes_received,
                    ",\"send_bytes\":", e.stats->bytes_sent);
  }
  if (e.error != nullptr) {
    absl::StrAppend(&line, ",\"error\":", JsonString(e.error->message()), ",\"error_code\":\"",
                    absl::StatusCodeToString(e.error->code()), "\"");
  }
  line += '}';
  return line;
}

void TelemetryLogger::Write(const TelemetryEvent& e) {
  const LogLevel at = LevelOf(e);
  if (at < level()) return;
  const absl::Time now = clock_();
  absl::MutexLock lock(&mu_);
  if (now >= summaries_due_) WriteSummaries(now, /*all=*/false);
  if (lines_per_second_ > 0) {
    Window& w = windows_[static_cast<int>(e.type)][static_cast<int>(at)];
    if (now >= w.start + kSecond || now < w.start) {
      // A clock that stepped back ends the window too; what it left out is said first.
      if (w.left_out > 0) WriteSummaries(now, /*all=*/true);
      w = Window{.start = now};
    }
    if (w.written >= lines_per_second_) {
      if (w.left_out++ == 0) summaries_due_ = std::min(summaries_due_, w.start + kSecond);
      return;
    }
    ++w.written;
  }
  if (format_ == LogFormat::kJson) {
    WriteRaw(FormatJson(e, now, at));
  } else {
    WriteLine(now, at, Format(e));
  }
}

void TelemetryLogger::WriteLine(absl::Time when, LogLevel level, absl::string_view text) {
  WriteRaw(absl::StrCat(TimeText(when), " ", LogLevelName(level), " ", text));
}

void TelemetryLogger::WriteRaw(std::string line) {
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), out_);
  std::fflush(out_);
}

void TelemetryLogger::WriteSummaries(absl::Time now, bool all) {
  summaries_due_ = absl::InfiniteFuture();
  for (int t = 0; t < kTypes; ++t) {
    for (int l = 0; l < kLevels; ++l) {
      Window& w = windows_[t][l];
      if (w.left_out == 0) continue;
      const absl::Time end = w.start + kSecond;
      if (all || now >= end) {
        // Stamped with the end of its second (or now, if sooner), so that "the last
        // second" is the one it counts.
        const absl::Time when = std::min(end, now);
        const auto level = static_cast<LogLevel>(l);
        const absl::string_view event = TelemetryEventName(static_cast<TelemetryEventType>(t));
        if (format_ == LogFormat::kJson) {
          WriteRaw(absl::StrCat("{\"time\":\"", TimeText(when), "\",\"level\":\"",
                                LogLevelName(level), "\",\"event\":\"", event,
                                "\",\"suppressed\":", w.left_out, "}"));
        } else {
          WriteLine(when, level,
                    absl::StrCat(event, " ... and ", w.left_out, " more like it in the last second"));
        }
        w.left_out = 0;
      } else {
        summaries_due_ = std::min(summaries_due_, end);
      }
    }
  }
}

}  // namespace islet
