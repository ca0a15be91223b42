// What the server's threads share: the options, the live-connection count Stop waits
// on, and each acceptor's connection budget. Internal to the server.
#ifndef ISLET_SERVER_SERVER_CONTEXT_H_
#define ISLET_SERVER_SERVER_CONTEXT_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"

#include "absl/synchronization/mutex.h"
#include "server/output_queue.h"
#include "server/overload_monitor.h"
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

// ServerOptions::max_connections_per_peer: live connections per peer address.
class PeerLimiter {
 public:
  // A place taken for one connection; given back when destroyed. Empty (false) when
  // the address had no room, or when no limit is set.
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& other) noexcept
        : limiter_(std::exchange(other.limiter_, nullptr)), address_(std::move(other.address_)) {}
    Slot& operator=(Slot&& other) noexcept {
      if (this != &other) {
        Reset();
        limiter_ = std::exchange(other.limiter_, nullptr);
        address_ = std::move(other.address_);
      }
      return *this;
    }
    ~Slot() { Reset(); }
    explicit operator bool() const { return limiter_ != nullptr; }
    void Reset() {
      if (limiter_ != nullptr) std::exchange(limiter_, nullptr)->Release(address_);
    }

   private:
    friend class PeerLimiter;
    Slot(PeerLimiter* limiter, std::string address)
        : limiter_(limiter), address_(std::move(address)) {}
    PeerLimiter* limiter_ = nullptr;
    std::string address_;
  };

  explicit PeerLimiter(int limit) : limit_(limit) {}
  bool enabled() const { return limit_ > 0; }
  int limit() const { return limit_; }
  Slot TryTake(const std::string& address) {
    absl::MutexLock lock(&mu_);
    int& count = counts_[address];
    if (count >= limit_) return Slot();
    ++count;
    return Slot(this, address);
  }

 private:
  void Release(const std::string& address) {
    absl::MutexLock lock(&mu_);
    auto it = counts_.find(address);
    if (it != counts_.end() && --it->second <= 0) counts_.erase(it);
  }

  const int limit_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, int> counts_ ABSL_GUARDED_BY(mu_);
};

// RLIMIT_NOFILE's soft limit now, or kNoDescriptorLimit (unlimited, or unknown).
inline constexpr int64_t kNoDescriptorLimit = -1;
int64_t DescriptorLimit();

// Whether descriptor `fd` falls within `reserve` of `limit` (a DescriptorLimit()): the
// kernel hands out the lowest free descriptor, so one this high means the table is
// nearly full. False when `reserve` is 0. Without `limit`, reads it (it may be raised).
bool InDescriptorReserve(int fd, int reserve, int64_t limit);
bool InDescriptorReserve(int fd, int reserve);

// Options are immutable once the server starts.
struct ServerContext {
  explicit ServerContext(ServerOptions o);

  // The counters the overload state is read from, now (see overload_state.h).
  OverloadInputs ReadOverloadInputs() const;

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
  PeerLimiter peer_limiter;
  // Every connection's OutputQueue limits, from the options (set by Server::Start).
  OutputQueue::Limits output_limits;
  // Updated by the workers on a timer (Worker::CheckOverload); reports changes as
  // server.overload events.
  OverloadMonitor overload;
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
