#include "server/overload_monitor.h"

#include <algorithm>
#include <utility>

namespace islet {
namespace {

// The state `pressure` calls for, before hysteresis.
OverloadState StateAt(double pressure, double scale_from) {
  if (pressure >= 1) return OverloadState::kSaturated;
  if (pressure >= scale_from) return OverloadState::kScaling;
  return OverloadState::kNormal;
}

// The pressure at which `state` begins.
double Threshold(OverloadState state, double scale_from) {
  switch (state) {
    case OverloadState::kSaturated: return 1;
    case OverloadState::kScaling: return scale_from;
    case OverloadState::kNormal: return 0;
  }
  return 0;
}

}  // namespace

OverloadMonitor::OverloadMonitor(double scale_from, absl::Duration floor,
                                 std::function<void(const OverloadChange&)> on_change)
    : scale_from_(scale_from), floor_(floor), on_change_(std::move(on_change)) {}

OverloadReading OverloadMonitor::Update(const OverloadInputs& in) {
  OverloadReading next;
  auto consider = [&next](int64_t used, int64_t cap, OverloadResource resource) {
    if (cap <= 0) return;
    const double pressure = static_cast<double>(std::max<int64_t>(used, 0)) /
                            static_cast<double>(cap);
    if (pressure > next.pressure) {
      next.pressure = pressure;
      next.resource = resource;
    }
  };
  consider(in.connections, in.connection_cap, OverloadResource::kConnections);
  consider(in.connections, in.descriptor_cap, OverloadResource::kDescriptors);
  consider(in.output_bytes, in.output_budget, OverloadResource::kOutput);

  // Pressure from scale_from_ to 1 takes the scale from 1 to 0; with scale_from_ at 1,
  // timeouts keep their length until the cap, and are at the floor there.
  const double span = 1 - scale_from_;
  next.timeout_scale =
      span <= 0 ? (next.pressure >= 1 ? 0.0 : 1.0)
                : 1 - std::clamp((next.pressure - scale_from_) / span, 0.0, 1.0);

  absl::MutexLock update_lock(&update_mu_);
  OverloadChange change;
  {
    absl::MutexLock lock(&mu_);
    change.before = current_.state;
    next.state = current_.state;
    const OverloadState wanted = StateAt(next.pressure, scale_from_);
    if (wanted > next.state) next.state = wanted;
    while (next.state > wanted &&
           next.pressure < Threshold(next.state, scale_from_) - kHysteresis) {
      next.state = static_cast<OverloadState>(static_cast<int>(next.state) - 1);
    }
    current_ = next;
  }
  if (next.state != change.before && on_change_) {
    change.now = next;
    on_change_(change);
  }
  return next;
}

OverloadReading OverloadMonitor::Current() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

absl::Duration OverloadMonitor::Scale(absl::Duration timeout, double timeout_scale) const {
  if (timeout == absl::InfiniteDuration() || timeout <= floor_ || timeout_scale >= 1) {
    return timeout;
  }
  return floor_ + (timeout - floor_) * std::max(timeout_scale, 0.0);
}

}  // namespace islet
