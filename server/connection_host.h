// ConnectionHost: what a connection needs from the worker that owns it, and nothing
// more. Internal to the server; Worker implements it.
#ifndef ISLET_SERVER_CONNECTION_HOST_H_
#define ISLET_SERVER_CONNECTION_HOST_H_

#include <cstdint>
#include <memory>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "server/connection.h"
#include "server/connection_handle.h"
#include "server/event_loop.h"
#include "server/handler.h"
#include "server/server_context.h"
#include "server/server_options.h"

namespace islet {

class ConnectionImpl;
class WorkerMailbox;

class ConnectionHost {
 public:
  virtual ~ConnectionHost() = default;

  // All of these are for the loop thread only.
  virtual EventLoop& loop() = 0;
  virtual const ServerOptions& options() const = 0;
  // The worker's index, as Server::Connections() reports it.
  virtual int index() const = 0;
  // Shared by every connection of the worker: valid until the callback returns.
  virtual absl::Span<char> read_buffer() = 0;
  // The way onto this worker's loop from other threads (for the connection's handles).
  virtual const std::shared_ptr<WorkerMailbox>& mailbox() const = 0;
  // Runs `action` on a later loop turn if connection `id` is still there then: a
  // connection never posts a pointer to itself, which may be gone by that turn.
  virtual void RunLater(uint64_t id, absl::AnyInvocable<void(ConnectionImpl&) &&> action) = 0;
  // The connection has closed: it is destroyed after the current batch of events.
  virtual void Retire(ConnectionImpl& connection) = 0;
  // The server has begun stopping this worker's connections (Worker::BeginShutdown).
  virtual bool shutting_down() const = 0;
  // Until when a stopping server still serves open connections (shutdown_grace): set
  // with shutting_down(), to minus infinity when there is no grace.
  virtual absl::Duration shutdown_grace_deadline() const = 0;
  // The server's output budget and its live connections (thread-safe).
  virtual OutputBudget& output_budget() = 0;
  virtual const OutputQueue::Limits& output_limits() const = 0;
  virtual int64_t live_connections() const = 0;
  // `timeout` as the server's overload state shrinks it now (see overload_state.h).
  // The worker re-times its connections when timeouts get shorter.
  virtual absl::Duration ScaledTimeout(absl::Duration timeout) const = 0;
  // Connection::Open and Connection::Sibling, on this worker.
  virtual absl::StatusOr<ConnectionHandle> Open(OutboundOptions options,
                                                uint64_t parent_span_id) = 0;
  // max_connections_per_peer's counts (thread-safe).
  virtual PeerLimiter& peer_limiter() = 0;
  virtual Connection* Sibling(uint64_t id) = 0;
};

}  // namespace islet

#endif  // ISLET_SERVER_CONNECTION_HOST_H_
