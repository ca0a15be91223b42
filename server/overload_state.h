// How near the server is to one of its caps, and what it is doing about it: the
// overload state. Server::Info() reports the current reading; a server.overload
// telemetry event marks every change of state.
//
//   pressure = the highest of: live connections / their cap (max_connections, or the
//   acceptors' num_connections together), live connections / the descriptors under
//   RLIMIT_NOFILE less descriptor_reserve, queued output / output_budget.
//
// From ServerOptions::overload_scale_from up to 1, idle timeouts shrink toward
// overload_timeout_floor (Envoy's reduce_timeouts), so that idle and trickling
// connections are shed before a cap turns good clients away.
#ifndef ISLET_SERVER_OVERLOAD_STATE_H_
#define ISLET_SERVER_OVERLOAD_STATE_H_

#include <cstdint>

#include "absl/strings/string_view.h"

namespace islet {

enum class OverloadState : uint8_t {
  kNormal,     // below overload_scale_from: every timeout as configured
  kScaling,    // timeouts shrink toward the floor as the pressure rises
  kSaturated,  // at a cap: timeouts at the floor; new connections wait in the listen
               // backlog, or output over the budget pauses reading and sheds the
               // connections holding the most
};

// The resource nearest its cap, which the pressure measures.
enum class OverloadResource : uint8_t { kNone, kConnections, kDescriptors, kOutput };

// "normal", "scaling", "saturated".
absl::string_view OverloadStateName(OverloadState state);
// "none", "connections", "descriptors", "output".
absl::string_view OverloadResourceName(OverloadResource resource);

struct OverloadReading {
  OverloadState state = OverloadState::kNormal;
  // Use of `resource` over its cap: 1 at the cap (more when a cap was lowered, or
  // output overshoots its budget).
  double pressure = 0;
  OverloadResource resource = OverloadResource::kNone;
  // How much of each shrinkable timeout's length above the floor is kept: 1 below
  // overload_scale_from, falling to 0 (the floor) at a pressure of 1.
  double timeout_scale = 1;
};

// What a server.overload event carries.
struct OverloadChange {
  OverloadReading now;
  OverloadState before = OverloadState::kNormal;
};

}  // namespace islet

#endif  // ISLET_SERVER_OVERLOAD_STATE_H_
