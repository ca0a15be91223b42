#include "server/server_context.h"

#include <sys/resource.h>

#include <algorithm>

#include "server/telemetry.h"
#include "transport/io_wait.h"

namespace islet {

ServerContext::ServerContext(ServerOptions o)
    : options(std::move(o)),
      peer_limiter(options.max_connections_per_peer),
      overload(options.overload_scale_from, options.overload_timeout_floor,
               [this](const OverloadChange& change) {
                 if (!Telemetry::Enabled(TelemetryEventType::kServerOverload)) return;
                 TelemetryEvent e{TelemetryEventType::kServerOverload};
                 e.monotonic_time = MonotonicNow();
                 e.server = options.name;
                 e.span_id = listener_span_id.load(std::memory_order_relaxed);
                 e.overload = &change;
                 Telemetry::Emit(e);
               }) {}

int64_t DescriptorLimit() {
  rlimit limit;
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY ||
      limit.rlim_cur > static_cast<rlim_t>(INT64_MAX)) {
    return kNoDescriptorLimit;
  }
  return static_cast<int64_t>(limit.rlim_cur);
}

bool InDescriptorReserve(int fd, int reserve, int64_t limit) {
  if (reserve <= 0 || fd < 0 || limit == kNoDescriptorLimit) return false;
  return int64_t{fd} + reserve >= limit;
}

bool InDescriptorReserve(int fd, int reserve) {
  if (reserve <= 0 || fd < 0) return false;
  return InDescriptorReserve(fd, reserve, DescriptorLimit());
}

OverloadInputs ServerContext::ReadOverloadInputs() const {
  OverloadInputs in;
  in.connections = admitted.load(std::memory_order_relaxed);
  // The nearest connection cap: the server's, or every acceptor's budget together
  // (the acceptors share the connections about evenly).
  int64_t cap = 0;
  if (options.max_connections != ServerOptions::kUnlimited) cap = options.max_connections;
  if (options.num_connections != ServerOptions::kUnlimited) {
    const int64_t acceptors =
        static_cast<int64_t>(options.num_connections) * options.num_acceptors;
    cap = cap > 0 ? std::min(cap, acceptors) : acceptors;
  }
  in.connection_cap = cap;
  // Read each time: RLIMIT_NOFILE may be raised while the server runs.
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
    in.descriptor_cap = std::max<int64_t>(
        static_cast<int64_t>(limit.rlim_cur) - options.descriptor_reserve, 1);
  }
  in.output_bytes = output_budget.used.load(std::memory_order_relaxed);
  in.output_budget = static_cast<int64_t>(output_budget.limit);
  return in;
}

}  // namespace islet
