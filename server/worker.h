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
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/connection.h"
#include "server/event_loop.h"
#include "server/server_options.h"

namespace islet {

// What the server's threads share. Options are immutable once the server starts.
struct ServerContext {
  explicit ServerContext(ServerOptions o) : options(std::move(o)) {}

  const ServerOptions options;
  // Resume replaces it while the acceptors may be emitting events that carry it.
  std::atomic<uint64_t> listener_span_id{0};

  // Live connections across all workers; Stop waits on it.
  absl::Mutex mu;
  int64_t live_connections ABSL_GUARDED_BY(mu) = 0;
};

// An acceptor's connection budget, shared with the connections it accepted.
struct AcceptorSlot {
  int index = 0;
  uint64_t span_id = 0;
  std::atomic<int64_t> live{0};
  std::atomic<uint64_t> accepted{0};
};

// Where a ConnectionHandle posts; outlives the worker so stale handles stay safe.
struct WorkerMailbox {
  absl::Mutex mu;
  Worker* worker ABSL_GUARDED_BY(mu) = nullptr;
};

class Worker {
 public:
  Worker(ServerContext& context, int index);
  ~Worker();

  absl::Status Start();

  // Thread-safe.
  void Adopt(std::unique_ptr<Socket> socket, std::shared_ptr<AcceptorSlot> acceptor);
  // Every connection gets HandleShutdown and drains until `deadline`.
  void BeginShutdown(absl::Duration deadline);
  // Closes every remaining connection at once.
  void CloseAll();
  // Quits the loop and joins the thread. Not from the worker's own thread.
  void Stop();
  std::vector<ConnectionSummary> Connections();
  bool IsCurrentThread() const { return loop_ && loop_->InLoopThread(); }

  // Loop thread only.
  EventLoop& loop() { return *loop_; }
  ServerContext& context() { return context_; }
  int index() const { return index_; }
  absl::Span<char> read_buffer() { return absl::MakeSpan(read_buffer_); }
  const std::shared_ptr<WorkerMailbox>& mailbox() const { return mailbox_; }
  void DeliverMessage(uint64_t id, std::any message);
  void CloseConnection(uint64_t id);
  // Reads input a transport holds that epoll cannot see (see PostReadIfBuffered).
  void ReadBuffered(uint64_t id);
  // Called by a connection that has closed: it is destroyed after the current batch.
  void Retire(Connection* connection);

 private:
  ServerContext& context_;
  const int index_;
  std::unique_ptr<EventLoop> loop_;
  std::thread thread_;
  std::shared_ptr<WorkerMailbox> mailbox_;
  std::vector<char> read_buffer_;

  absl::flat_hash_map<uint64_t, std::unique_ptr<Connection>> connections_;
  std::vector<std::unique_ptr<Connection>> retired_;
  bool running_ = false;
  bool shutting_down_ = false;
  absl::Duration shutdown_deadline_ = absl::InfiniteDuration();
};

}  // namespace islet

#endif  // ISLET_SERVER_WORKER_H_
