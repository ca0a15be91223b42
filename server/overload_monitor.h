// OverloadMonitor: turns the server's counters into an overload reading (see
// overload_state.h), keeps the current one, and reports each change of state. The
// workers update it on a timer; internal to the server.
//
// States rise at once and fall with hysteresis (kHysteresis below the threshold), so a
// server sitting at a cap, where each close lets one connection in, does not report a
// change for every connection. The timeout scale follows the pressure without
// hysteresis: it is not reported, only applied.
#ifndef ISLET_SERVER_OVERLOAD_MONITOR_H_
#define ISLET_SERVER_OVERLOAD_MONITOR_H_

#include <cstdint>
#include <functional>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/overload_state.h"

namespace islet {

// One look at the counters. A cap of 0 or less means there is none.
struct OverloadInputs {
  int64_t connections = 0;
  int64_t connection_cap = 0;  // max_connections, or the acceptors' budgets together
  int64_t descriptor_cap = 0;  // RLIMIT_NOFILE less descriptor_reserve
  int64_t output_bytes = 0;
  int64_t output_budget = 0;
};

class OverloadMonitor {
 public:
  // How far below a state's threshold the pressure must fall to leave it.
  static constexpr double kHysteresis = 0.05;

  // `scale_from` and `floor`: ServerOptions::overload_scale_from and
  // overload_timeout_floor. `on_change` runs on the updating thread, outside the lock
  // Current() takes, one change at a time and in order.
  OverloadMonitor(double scale_from, absl::Duration floor,
                  std::function<void(const OverloadChange&)> on_change);

  // Takes a reading of `inputs` and makes it current. Thread-safe.
  OverloadReading Update(const OverloadInputs& inputs);
  OverloadReading Current() const;

  // `timeout` shrunk as `timeout_scale` says: the part above the floor, scaled. An
  // infinite timeout, and one already at or below the floor, stay as they are.
  absl::Duration Scale(absl::Duration timeout, double timeout_scale) const;

 private:
  const double scale_from_;
  const absl::Duration floor_;
  const std::function<void(const OverloadChange&)> on_change_;
  // Held across a whole update, reporting included, so changes are reported in order.
  absl::Mutex update_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  OverloadReading current_ ABSL_GUARDED_BY(mu_);
};

}  // namespace islet

#endif  // ISLET_SERVER_OVERLOAD_MONITOR_H_
