// What the server's threads share: the options, the live-connection count Stop waits
// on, and each acceptor's connection budget. Internal to the server.
#ifndef ISLET_SERVER_SERVER_CONTEXT_H_
#define ISLET_SERVER_SERVER_CONTEXT_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "server/server_options.h"

namespace islet {

// Output queued over every connection, against ServerOptions::output_budget.
struct OutputBudget {
  size_t limit = 0;
  std::atomic<int64_t> used{0};

  bool Spent() const { return used.load(std::memory_order_relaxed) > static_cast<int64_t>(limit); }
  // What one of `connections` may hold while the budget is spent.
  size_t FairShare(int64_t connections) const {
    return limit / static_cast<size_t>(std::max<int64_t>(connections, 1));
  }
};

// Options are immutable once the server starts.
struct ServerContext {
  explicit ServerContext(ServerOptions o) : options(std::move(o)) {}

  const ServerOptions options;
  // Resume replaces it while the acceptors may be emitting events that carry it.
  std::atomic<uint64_t> listener_span_id{0};

  // Live connections across all workers; Stop waits on it.
  absl::Mutex mu;
  int64_t live_connections ABSL_GUARDED_BY(mu) = 0;
  // The same count as the acceptors see it, for max_connections: taken when an
  // acceptor hands a connection over, given back when it closes. No lock.
  std::atomic<int64_t> admitted{0};
  OutputBudget output_budget;
};

// An acceptor's connection budget, shared with the connections it accepted: a
// connection gives its place back when it closes (Release).
struct AcceptorSlot {
  int index = 0;
  uint64_t span_id = 0;
  std::atomic<int64_t> live{0};
  std::atomic<uint64_t> accepted{0};
  std::atomic<int64_t>* server_admitted = nullptr;  // ServerContext::admitted

  void Take() {
    live.fetch_add(1, std::memory_order_acq_rel);
    server_admitted->fetch_add(1, std::memory_order_acq_rel);
  }
  void Release() {
    live.fetch_sub(1, std::memory_order_acq_rel);
    server_admitted->fetch_sub(1, std::memory_order_acq_rel);
  }
};

}  // namespace islet

#endif  // ISLET_SERVER_SERVER_CONTEXT_H_
