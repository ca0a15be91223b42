// Worker: one event-loop thread that owns its connections outright. Acceptors hand it
// sockets (Adopt); everything else about a connection happens on this thread.
// Internal to the server.
#ifndef ISLET_SERVER_WORKER_H_
#define ISLET_SERVER_WORKER_H_

#include <any>
#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "server/connection_handle.h"
#include "server/connection_host.h"
#include "server/connection_impl.h"
#include "server/event_loop.h"
#include "server/mailbox.h"
#include "server/server_context.h"
#include "server/server_options.h"
#include "transport/transport.h"

namespace islet {

class Worker final : public ConnectionHost {
 public:
  Worker(ServerContext& context, int index);
  ~Worker() override;

  absl::Status Start();

  // Thread-safe. The connection counts as live from this call (Stop waits for it); it
  // starts on the worker's loop, under the shutdown if the server has begun stopping
  // meanwhile, or is closed unstarted if CloseAll came first. `peer_slot`: its place
  // under max_connections_per_peer, if limited.
  void Adopt(std::unique_ptr<Socket> socket, std::shared_ptr<AcceptorSlot> acceptor,
             PeerLimiter::Slot peer_slot = {});
  // Every connection gets HandleShutdown and drains until `deadline`. Thread-safe.
  void BeginShutdown(absl::Duration deadline);
  // Closes every remaining connection at once, and any handed over later before it
  // starts. Thread-safe.
  void CloseAll();
  // Quits the loop and joins the thread. Not from the worker's own thread.
  void Stop();
  // Thread-safe; waits for the loop when called from another thread.
  std::vector<ConnectionSummary> Connections();
  bool IsCurrentThread() const { return loop_ && loop_->InLoopThread(); }

  // ConnectionHost (loop thread only, except RunLater, which is thread-safe).
  EventLoop& loop() override { return *loop_; }
  const ServerOptions& options() const override { return context_.options; }
  int index() const override { return index_; }
  absl::Span<char> read_buffer() override { return absl::MakeSpan(read_buffer_); }
  const std::shared_ptr<WorkerMailbox>& mailbox() const override { return mailbox_; }
  void RunLater(uint64_t id, absl::AnyInvocable<void(ConnectionImpl&) &&> action) override;
  void Retire(ConnectionImpl& connection) override;
  bool shutting_down() const override { return shutting_down_; }
  absl::Duration shutdown_grace_deadline() const override { return grace_deadline_; }
  OutputBudget& output_budget() override { return context_.output_budget; }
  PeerLimiter& peer_limiter() override { return context_.peer_limiter; }
  const OutputQueue::Limits& output_limits() const override { return context_.output_limits; }
  int64_t live_connections() const override {
    return context_.admitted.load(std::memory_order_relaxed);
  }
  absl::Duration ScaledTimeout(absl::Duration timeout) const override {
    return context_.overload.Scale(timeout, timeout_scale_);
  }
  // Thread-safe (Server::Open calls it too). The connect starts on the calling thread,
  // so a bad endpoint fails here; the connection starts on a later turn of this loop,
  // even when called from it, never inside the caller's callback. Live from this call.
  absl::StatusOr<ConnectionHandle> Open(OutboundOptions options,
                                        uint64_t parent_span_id) override;
  Connection* Sibling(uint64_t id) override;

 private:
  // One connection fewer in the server's live count (Stop waits on it).
  void DropLive();

  ServerContext& context_;
  const int index_;
  std::unique_ptr<EventLoop> loop_;
  std::thread thread_;
  // Outlives the worker (handles hold it); detached when the worker stops.
  std::shared_ptr<WorkerMailbox> mailbox_;
  std::vector<char> read_buffer_;

  // Updates the server's overload reading, and re-times the connections when their
  // timeouts got shorter; runs every kOverloadCheckInterval.
  void CheckOverload();

  absl::flat_hash_map<uint64_t, std::unique_ptr<ConnectionImpl>> connections_;
  std::vector<std::unique_ptr<ConnectionImpl>> retired_;
  bool running_ = false;
  bool shutting_down_ = false;
  // CloseAll (or Stop) was called: hand-overs close unstarted. Set off the loop.
  std::atomic<bool> closing_{false};
  absl::Duration shutdown_deadline_ = absl::InfiniteDuration();
  // The end of shutdown_grace (minus infinity without one); set with shutting_down_.
  absl::Duration grace_deadline_ = absl::InfiniteDuration();
  // The overload reading's timeout scale as this worker last applied it.
  double timeout_scale_ = 1;
};

}  // namespace islet

#endif  // ISLET_SERVER_WORKER_H_
