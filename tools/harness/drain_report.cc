#include "tools/harness/drain_report.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/telemetry.h"
#include "transport/io_wait.h"

namespace islet::harness {
namespace {

std::string Connections(uint64_t n) {
  return absl::StrCat(n, n == 1 ? " connection" : " connections");
}

void WriteLine(FILE* out, const std::string& line) {
  std::fprintf(out, "harness: %s\n", line.c_str());
  std::fflush(out);
}

}  // namespace

DrainReport::DrainReport(const Server& server, std::string server_name, absl::Duration timeout,
                         FILE* out, absl::Duration every)
    : server_(server),
      server_name_(std::move(server_name)),
      out_(out),
      every_(every),
      started_(MonotonicNow()),
      deadline_(started_ + timeout) {
  attachment_ = Telemetry::Attach(
      [this](const TelemetryEvent& e) {
        if (e.server != server_name_) return;
        (e.monotonic_time < deadline_ ? finished_ : forced_).fetch_add(1, std::memory_order_relaxed);
      },
      TelemetryBit(TelemetryEventType::kConnectionStop));
  progress_ = std::thread([this] { Progress(); });
}

DrainReport::~DrainReport() { Finish(); }

void DrainReport::Progress() {
  absl::MutexLock lock(&mu_);
  for (;;) {
    const absl::Time wake = absl::Now() + every_;
    auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_; };
    if (mu_.AwaitWithDeadline(absl::Condition(&done), wake)) return;
    const int64_t open = server_.active_connections();
    const absl::Duration left = std::max(deadline_ - MonotonicNow(), absl::ZeroDuration());
    WriteLine(out_, absl::StrCat("draining: ", Connections(static_cast<uint64_t>(open)), " open, ",
                                 absl::FormatDuration(absl::Ceil(left, absl::Seconds(1))),
                                 " left"));
  }
}

void DrainReport::Finish() {
  {
    absl::MutexLock lock(&mu_);
    if (done_) return;
    done_ = true;
  }
  progress_.join();
  Telemetry::Detach(attachment_);
  const absl::Duration took = MonotonicNow() - started_;
  WriteLine(out_, absl::StrCat("drained in ", absl::FormatDuration(absl::Trunc(took, absl::Milliseconds(1))),
                               ": ", Connections(finished_.load()), " finished, ",
                               forced_.load(), " forced closed at the deadline"));
}

}  // namespace islet::harness
